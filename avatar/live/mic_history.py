"""The last minute of a session's microphone, addressable by stream sample index.

A turn is cut out of it by sample range once the VAD has found where the user's speech began
and ended. Appending is amortised O(chunk): the buffer has room for twice the kept length and
slides the kept tail to the front only when it fills, instead of re-concatenating the whole
minute (~4 MB) for every 20 ms chunk, which cost each session ~190 MB/s of copying.
"""

from __future__ import annotations

import numpy as np


class MicHistory:
    def __init__(self, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError("max_samples must be at least 1")
        self.max_samples = max_samples
        self._buffer = np.zeros(2 * max_samples, np.float32)
        self._length = 0  # valid samples at the front of the buffer
        self._start_sample = 0  # stream sample index of buffer[0]
        self.total_samples = 0  # samples ever appended

    def append(self, pcm: np.ndarray) -> None:
        pcm = np.asarray(pcm, np.float32)
        if len(pcm) >= self.max_samples:  # one huge chunk: only its tail can be kept
            self._buffer[: self.max_samples] = pcm[-self.max_samples :]
            self.total_samples += len(pcm)
            self._length = self.max_samples
            self._start_sample = self.total_samples - self.max_samples
            return
        if self._length + len(pcm) > len(self._buffer):
            keep = self.max_samples - len(pcm)
            self._buffer[:keep] = self._buffer[self._length - keep : self._length]
            self._start_sample += self._length - keep
            self._length = keep
        self._buffer[self._length : self._length + len(pcm)] = pcm
        self._length += len(pcm)
        self.total_samples += len(pcm)

    def slice(self, start_sample: int, end_sample: int) -> np.ndarray:
        """A copy of stream samples [start, end); parts older than the history are left out."""
        a = min(max(start_sample - self._start_sample, 0), self._length)
        b = min(max(end_sample - self._start_sample, a), self._length)
        return self._buffer[a:b].copy()

    def recent(self, start_sample: int, max_samples: int) -> np.ndarray:
        """A copy of what was heard from `start_sample` until now, at most its last `max_samples`."""
        return self.slice(max(start_sample, self.total_samples - max_samples), self.total_samples)
