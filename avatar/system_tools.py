"""System programs the toolkit drives (ffmpeg, ffprobe), found once with one clear error if missing."""

from __future__ import annotations

import shutil

from avatar.errors import EngineUnavailable


def require_tool(name: str) -> str:
    """Path of an ffmpeg-suite binary, or a one-line EngineUnavailable naming the fix."""
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailable(
            f"{name} is not installed", "install it with `sudo apt-get install ffmpeg` or run `make setup`"
        )
    return path
