"""The livestream host (`avatar live`): script, comments, outputs and its HTTP API."""
