"""Paints the inside of an opened mouth: a dark cavity, upper teeth, a hint of lower teeth and tongue.

A single photo rarely shows the inside of the mouth, so when the warp parts the lips the gap
would otherwise show stretched lip pixels. We paint over exactly the region between the moved
inner-lip contours, with colours derived from the photo so a painting gets painted teeth.
"""

from __future__ import annotations

import numpy as np

from lipsync import face_mesh_indices as fm
from lipsync.face_geometry import FaceGeometry


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class InnerMouthPainter:
    """Colours are sampled once from the photo; `paint` runs per frame on a small region."""

    def __init__(self, image_bgr: np.ndarray, geometry: FaceGeometry) -> None:
        import cv2

        lm = geometry.landmarks
        mask = np.zeros(image_bgr.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(lm[list(fm.LIPS_OUTER)]).astype(np.int32)], 255)
        lips = image_bgr[mask > 0].reshape(-1, 3).astype(np.float32)
        lip_color = np.median(lips, axis=0) if len(lips) else np.array([90, 90, 150], np.float32)
        cheek = lm[fm.NOSE_TIP] + 0.25 * (lm[fm.RIGHT_CHEEK] - lm[fm.NOSE_TIP])
        cx, cy = np.clip(np.round(cheek).astype(int), 0, [image_bgr.shape[1] - 1, image_bgr.shape[0] - 1])
        skin = image_bgr[max(cy - 3, 0) : cy + 4, max(cx - 3, 0) : cx + 4].reshape(-1, 3).mean(axis=0)
        # Cavity: lip hue, much darker. Teeth: off-white tinted by the photo's light, never brighter
        # than the skin allows (a dim painting gets dim teeth).
        self.cavity_bgr = (lip_color * 0.22 + np.array([8, 6, 12])).astype(np.float32)
        self.tongue_bgr = (lip_color * 0.55 + np.array([10, 10, 30])).astype(np.float32)
        gray = np.full(3, float(skin.mean()), np.float32)
        self.teeth_bgr = np.clip((0.45 * skin + 0.55 * gray) * 1.08 + 8.0, 0, 235).astype(np.float32)
        self.geometry = geometry
        self.enabled = True
        self.photo_gap_px = 0.0  # lips already parted in the photo: paint only beyond that opening

    def paint(self, image: np.ndarray, moved_landmarks: np.ndarray) -> np.ndarray:
        """Paint in place over the opening between the moved inner lips; returns the image."""
        g = self.geometry
        upper = moved_landmarks[list(fm.UPPER_INNER_LIP)].astype(np.float64)
        lower = moved_landmarks[list(fm.LOWER_INNER_LIP)].astype(np.float64)
        ux, uy = g.mouth.to_local(upper)
        lx, ly = g.mouth.to_local(lower)
        gap_px = float(np.max(ly - uy))
        if gap_px < 0.8 or not self.enabled:
            return image
        # Where the photo already shows a little of the inside, the stretched original is right
        # for small openings; the painted cavity fades in as the mouth opens beyond it.
        fade_in = float(np.clip((gap_px - 1.2 * self.photo_gap_px) / (0.8 * self.photo_gap_px + 1.0), 0, 1))
        if fade_in <= 0:
            return image
        polygon = np.concatenate([upper, lower[::-1]])
        x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 <= x0 or y1 <= y0:
            return image
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
        px, py = g.mouth.to_local(pts)
        top = np.interp(px, ux[np.argsort(ux)], uy[np.argsort(ux)])
        bottom = np.interp(px, lx[np.argsort(lx)], ly[np.argsort(lx)])
        span = np.maximum(bottom - top, 1e-3)
        # Anti-aliased inside test: within one pixel of either lip edge the coverage ramps.
        inside = np.clip(py - top + 0.5, 0, 1) * np.clip(bottom - py + 0.5, 0, 1)
        # The moved corners, not the photo's: a smile widens the opening.
        half_w = float(max(np.abs(ux).max(), np.abs(lx).max(), 1.0))
        corner_fade = np.clip((half_w * 0.98 - np.abs(px)) / (0.15 * half_w), 0, 1)
        inside *= np.clip(span / 1.5, 0, 1)
        depth = (py - top) / span  # 0 at the upper lip, 1 at the lower lip

        color = np.broadcast_to(self.cavity_bgr, (len(px), 3)).copy()
        shade = 0.65 + 0.35 * np.clip(np.abs(px) / half_w, 0, 1)  # darker in the middle, deeper
        color *= (1.25 - 0.5 * shade)[:, None]
        # Upper teeth: a band under the upper lip, as tall as the opening allows.
        teeth_h = min(0.4 * gap_px, 0.075 * g.mouth_width_px)
        teeth = _smoothstep((teeth_h - (py - top)) / 2.0 + 0.5) * _smoothstep(
            (0.75 * half_w - np.abs(px)) / (0.25 * half_w)
        )
        lip_shadow = 0.7 + 0.3 * _smoothstep((py - top) / max(0.5 * teeth_h, 1.0))
        teeth_shade = (0.75 + 0.25 * np.clip(1.0 - np.abs(px) / (0.75 * half_w), 0, 1)) * lip_shadow
        color = color * (1 - teeth[:, None]) + (self.teeth_bgr * teeth_shade[:, None]) * teeth[:, None]
        # Lower teeth and tongue only show when the mouth is well open.
        if gap_px > 0.12 * g.mouth_width_px:
            lower_h = 0.25 * teeth_h
            low = _smoothstep((lower_h - (bottom - py)) / 1.2 + 0.5) * _smoothstep(
                (0.45 * half_w - np.abs(px)) / (0.2 * half_w)
            )
            color = color * (1 - 0.6 * low[:, None]) + self.teeth_bgr * 0.8 * (0.6 * low[:, None])
            tongue = np.clip(1.0 - ((px / (0.5 * half_w)) ** 2 + ((depth - 1.0) / 0.45) ** 2), 0, 1)
            tongue *= 1.0 - low
            color = color * (1 - 0.7 * tongue[:, None]) + self.tongue_bgr * (0.7 * tongue[:, None])
        alpha = (fade_in * inside * corner_fade).reshape(y1 - y0, x1 - x0, 1)
        region = image[y0:y1, x0:x1].astype(np.float32)
        painted = region * (1 - alpha) + color.reshape(y1 - y0, x1 - x0, 3) * alpha
        image[y0:y1, x0:x1] = np.clip(painted + 0.5, 0, 255).astype(np.uint8)
        return image
