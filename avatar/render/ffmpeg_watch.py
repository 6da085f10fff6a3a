"""The two ways an encoder fails that it does not report itself: it hangs, or the disk fills.

A hung ffmpeg stops reading its stdin; the renderer's next frame write then blocks forever, and
a render (or a batch worker) would never end. `StallWatch` kills the encoder when one write has
been blocked for `stall_s`, so the write fails at once and the render ends with one line. The
later passes (finishing, muxing) run with a timeout of their own (`finish_timeout_s`).

A full disk shows up as a short write of the audio file or as ffmpeg's "No space left on device";
`output_failed` turns either into one line that says so and names the folder.
"""

from __future__ import annotations

import errno
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

FFMPEG_STALL_TIMEOUT_S = 60.0  # no frame taken for a minute: x264 needs well under a second a frame
# Muxing copies the video and encodes the audio: ~1/100 of the video's duration on 2 idle cores,
# but 10x that on a starved machine ended a 10-minute render as "hung" (no end within 119 s). A
# mux slower than the video plays is hung whatever the load; anything faster is left to finish.
FINISH_TIMEOUT_PER_VIDEO_S = 1.0
LOW_SPACE_BYTES = 1 << 20
DISK_FULL_MARKERS = ("No space left on device", "Disk quota exceeded")


def finish_timeout_s(stall_s: float, duration_s: float) -> float:
    """How long the passes after the last frame may take before ffmpeg is taken as hung."""
    return stall_s + FINISH_TIMEOUT_PER_VIDEO_S * duration_s


class StallWatch:
    """Kills `process` when a write inside `writing()` has been blocked for `stall_s`."""

    def __init__(self, process, stall_s: float) -> None:
        self._process = process
        self.stall_s = stall_s
        self.fired = False
        self._busy_since_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ffmpeg-stall-watch", daemon=True)
        self._thread.start()

    @contextmanager
    def writing(self):
        self._busy_since_s = time.monotonic()
        try:
            yield
        finally:
            self._busy_since_s = None

    def _watch(self) -> None:
        poll_s = min(1.0, self.stall_s / 4)
        while not self._stop.wait(poll_s):
            since_s = self._busy_since_s
            if since_s is not None and time.monotonic() - since_s > self.stall_s:
                self.fired = True
                self._process.kill()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def is_disk_full(
    error: BaseException | None = None, stderr_text: str = "", folder: Path | None = None
) -> bool:
    """ENOSPC/EDQUOT, ffmpeg saying so, or (for libraries that only say "system error") a folder
    with less than a megabyte left."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(marker in stderr_text or marker in str(error or "") for marker in DISK_FULL_MARKERS):
        return True
    if folder is not None:
        try:
            return shutil.disk_usage(folder).free < LOW_SPACE_BYTES
        except OSError:
            return False
    return False


def disk_full_message(folder: Path) -> tuple[str, str]:
    """(message, hint) of the one-line error for a full disk."""
    return (
        f"the disk is full: the video could not be written to {folder}",
        "free some space or choose another output folder; no partial file was left",
    )
