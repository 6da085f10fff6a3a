"""Face preparation and lip-sync renderers (procedural embedded tier; neural tier later)."""
