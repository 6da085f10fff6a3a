"""Talking digital-human toolkit: pipeline, sessions, CLI.

Importing this package stays cheap on purpose: engines (onnxruntime, mediapipe,
ctranslate2, torch) are imported inside the modules that use them, so `avatar --help`
and the light core never pay for them.
"""

__version__ = "0.1.0"
