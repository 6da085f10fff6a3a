"""Fit a picture into the stream's frame size without stretching it.

A livestream keeps one frame size for its whole life (the encoder was opened with it), while the
avatars it switches between may have been prepared at other sizes.
"""

from __future__ import annotations

import numpy as np


def letterbox(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`frame` scaled to fit `shape` (H, W, 3) whole, centred on black."""
    import cv2

    height, width = shape[:2]
    scale = min(width / frame.shape[1], height / frame.shape[0])
    new_w, new_h = max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)
    canvas = np.zeros(shape, np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def checked_frames(frames, count: int, shape: tuple[int, ...] | None = None) -> list[np.ndarray]:
    """The renderer's `count` frames for one batch, or EngineFailed("lip-sync") saying what came
    instead: a frame of another type or size reaching the encoder or a WebRTC track would end the
    whole stream (or session) far from its cause. `shape` (H, W, 3): the size every frame must
    have; None accepts any size that is the same for the batch."""
    from avatar.core.errors import EngineFailed

    frames = list(frames) if isinstance(frames, list | tuple) else None
    if frames is None or len(frames) != count:
        got = "no list" if frames is None else f"{len(frames)} frames"
        raise EngineFailed("lip-sync", f"the renderer returned {got} for {count} frames of audio")
    for frame in frames:
        good = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
        if not good or frame.shape[2] != 3 or frame.shape != (shape or frames[0].shape):
            what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            expected = f"{shape} uint8" if shape else "H x W x 3 uint8, one size"
            raise EngineFailed("lip-sync", f"the renderer returned a frame of {what}; {expected} expected")
    return frames
