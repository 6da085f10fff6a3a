"""Rendering videos: one job, many jobs (batch) and the MP4 writer."""
