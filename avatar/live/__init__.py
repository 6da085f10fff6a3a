"""Live conversation over WebRTC: the session loop and the `avatar serve` server."""
