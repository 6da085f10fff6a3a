"""The engines the console keeps loaded between clicks, each group behind its own lock.

Photo and voice checks share one face landmarker and one Whisper model (loaded on first use),
renders share one `EngineSet`; a lock per group keeps two browser tabs from using an engine at
the same time, while a check stays possible during a long render.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_CACHED_PHOTOS = 8  # prepared renderers kept in memory before the render engines start afresh


class ConsoleEngines:
    """Loaded on first use; `close()` frees them all (waiting for a render or check in progress)."""

    def __init__(self) -> None:
        self._check_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._landmarker = None
        self._asr = None
        self._render = None
        self._photo_stamps: dict[str, tuple[int, int]] = {}

    @contextmanager
    def landmarker(self) -> Iterator[object]:
        """The face landmarker, held for the block (shared by the photo checks)."""
        with self._check_lock:
            if self._landmarker is None:
                from lipsync.face_landmarker import FaceLandmarker

                self._landmarker = FaceLandmarker()
            yield self._landmarker

    @contextmanager
    def asr(self) -> Iterator[object]:
        """Whisper, held for the block (shared with the photo checks' lock: one check at a time)."""
        with self._check_lock:
            if self._asr is None:
                from avatar.asr.whisper import WhisperASR

                self._asr = WhisperASR().load()
            yield self._asr

    @contextmanager
    def render(self, photo: Path | None = None) -> Iterator[object]:
        """The shared EngineSet, held for the block, fresh when `photo` needs it.

        EngineSet caches a prepared renderer per photo *path* and never forgets one; in a
        long-running console an avatar can be deleted and a new one saved under the same folder
        name, and every preview has a photo path of its own. So a photo whose size or mtime
        changed since it was last rendered, or more than MAX_CACHED_PHOTOS photos, start a fresh
        set of engines (TTS and landmarker reload in ~2 s).
        """
        with self._render_lock:
            if photo is not None:
                self._forget_stale_photos(Path(photo))
            if self._render is None:
                from avatar.engines.engine_set import EngineSet

                self._render = EngineSet()
            yield self._render

    @property
    def loaded_render_engines(self):
        """The EngineSet now loaded, or None (to observe when they start afresh)."""
        return self._render

    def _forget_stale_photos(self, photo: Path) -> None:
        stat = photo.stat()
        key, stamp = str(photo.resolve()), (stat.st_mtime_ns, stat.st_size)
        changed = self._photo_stamps.get(key, stamp) != stamp
        too_many = key not in self._photo_stamps and len(self._photo_stamps) >= MAX_CACHED_PHOTOS
        if (changed or too_many) and self._render is not None:
            self._render.close()
            self._render = None
            self._photo_stamps.clear()
        self._photo_stamps[key] = stamp

    def close(self) -> None:
        with self._render_lock:
            if self._render is not None:
                self._render.close()
                self._render = None
        with self._check_lock:
            if self._landmarker is not None:
                self._landmarker.close()
                self._landmarker = None
            self._asr = None
