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
