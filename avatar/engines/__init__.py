"""Engines by name: the model registry, explicit downloads, and the one engine set a process loads."""
