"""Listening: voice activity detection and the turn detector that says when the user starts and stops."""
