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


def eye_white_bgr(image_bgr: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    """Median colour of the brightest third of both eyes' pixels (the sclera), None if too few."""
    import cv2

    mask = np.zeros(image_bgr.shape[:2], np.uint8)
    for eye in (fm.RIGHT_EYE, fm.LEFT_EYE):
        cv2.fillPoly(mask, [np.round(lm[list(eye)][:, :2]).astype(np.int32)], 255)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    pixels = image_bgr[mask > 0].reshape(-1, 3).astype(np.float32)
    if len(pixels) < 12:
        return None
    brightness = pixels.mean(axis=1)
    bright = pixels[brightness >= np.percentile(brightness, 67)]
    return np.median(bright, axis=0)


TOOTH_EDGES = (0.0, 0.34, 0.6)  # incisor boundaries in half mouth widths from the middle
TOOTH_EDGES_FROM_PX = 60.0  # below this half mouth width the edges are under a pixel: not drawn


def _tooth_gaps(x: np.ndarray, half_w_px: float) -> np.ndarray | float:
    """Faint shading where two incisors meet, so a large mouth shows teeth rather than a white strip."""
    if half_w_px < TOOTH_EDGES_FROM_PX:
        return 1.0
    width = 0.9 / half_w_px + 0.012  # about one pixel plus a little
    shade = np.ones_like(x)
    for edge in TOOTH_EDGES:
        shade -= 0.18 * np.exp(-(((np.abs(x) - edge) / width) ** 2))
    return shade


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
        # Teeth, tongue and the inside of the mouth are alike on every face; what differs is the
        # light. The whites of the eyes measure it (colour and brightness) whatever the skin tone,
        # so these colours follow the photo's exposure, not the skin: dark skin gets white teeth,
        # a dim painting gets dim ones. Skin stands in where no eye white can be seen.
        gray = np.full(3, float(skin.mean()), np.float32)
        skin_teeth = np.clip((0.45 * skin + 0.55 * gray) * 1.08 + 8.0, 0, 235)
        white = eye_white_bgr(image_bgr, lm)
        white = skin_teeth / 0.92 if white is None else np.maximum(white, 0.9 * skin_teeth)
        self.teeth_bgr = np.clip(0.92 * white * np.array([0.97, 1.0, 1.02]), 0, 235).astype(np.float32)
        light = float(white.mean()) / 255.0
        lip_tint = lip_color / max(float(lip_color.mean()), 1.0)  # the lips' hue, unit brightness
        self.cavity_bgr = (
            light * 255.0 * 0.22 * (0.5 * lip_tint + 0.5 * np.array([0.75, 0.8, 1.45]))
        ).astype(np.float32)
        self.tongue_bgr = (light * 255.0 * 0.5 * (0.5 * lip_tint + 0.5 * np.array([0.72, 0.78, 1.5]))).astype(
            np.float32
        )
        self.geometry = geometry
        self.enabled = True
        self.photo_gap_px = 0.0  # lips already parted in the photo: paint only beyond that opening

    def _colors(self, px, py, top, bottom, span, half_w: float, gap_px: float) -> np.ndarray:
        """(n, 3) colours of the inside at mouth-frame points: cavity, teeth, tongue."""
        g = self.geometry
        depth = (py - top) / span  # 0 at the upper lip, 1 at the lower lip
        color = np.broadcast_to(self.cavity_bgr, (len(px), 3)).copy()
        shade = 0.65 + 0.35 * np.clip(np.abs(px) / half_w, 0, 1)  # darker towards the corners
        # Lighter just inside the lips (their wet inner surface catches light), darkest mid-way back.
        rim = np.exp(-np.minimum(py - top, bottom - py).clip(min=0) / max(0.12 * span.max(), 1.0))
        color *= ((1.25 - 0.5 * shade) * (1.0 + 0.6 * rim))[:, None]
        # Upper teeth hang from the upper jaw, so they stay with the upper lip and keep their size
        # as the jaw drops (the gap shows more cavity, not longer teeth).
        teeth_h = min(0.45 * gap_px, 0.09 * g.mouth_width_px)
        teeth = _smoothstep((teeth_h - (py - top)) / 2.0 + 0.5) * _smoothstep(
            (0.75 * half_w - np.abs(px)) / (0.25 * half_w)
        )
        lip_shadow = 0.7 + 0.3 * _smoothstep((py - top) / max(0.5 * teeth_h, 1.0))
        teeth_shade = (0.75 + 0.25 * np.clip(1.0 - np.abs(px) / (0.75 * half_w), 0, 1)) * lip_shadow
        teeth_shade *= _tooth_gaps(px / half_w, half_w)
        color = color * (1 - teeth[:, None]) + (self.teeth_bgr * teeth_shade[:, None]) * teeth[:, None]
        # Lower teeth (on the lower lip, so they follow the jaw) and the tongue show once the
        # mouth is open a little.
        if gap_px > 0.08 * g.mouth_width_px:
            lower_h = 0.35 * teeth_h
            low = _smoothstep((lower_h - (bottom - py)) / 1.2 + 0.5) * _smoothstep(
                (0.45 * half_w - np.abs(px)) / (0.2 * half_w)
            )
            color = color * (1 - 0.6 * low[:, None]) + self.teeth_bgr * 0.8 * (0.6 * low[:, None])
            tongue = np.sqrt(np.clip(1.0 - ((px / (0.6 * half_w)) ** 2 + ((depth - 1.0) / 0.55) ** 2), 0, 1))
            tongue *= 1.0 - low
            color = color * (1 - 0.7 * tongue[:, None]) + self.tongue_bgr * (0.7 * tongue[:, None])
        return color.astype(np.float32)

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
        alpha = fade_in * inside * np.clip(span / 1.5, 0, 1)
        alpha *= np.clip((half_w * 0.98 - np.abs(px)) / (0.15 * half_w), 0, 1)
        # Only the pixels inside the opening are coloured (about half of the bounding box).
        keep = np.flatnonzero(alpha > 0)
        if len(keep) == 0:
            return image
        px, py, top, bottom, span, alpha = (a[keep] for a in (px, py, top, bottom, span, alpha))
        color = self._colors(px, py, top, bottom, span, half_w, gap_px)
        region = image[y0:y1, x0:x1].reshape(-1, 3)
        pixels = region[keep].astype(np.float32)
        blended = pixels + (color - pixels) * alpha[:, None].astype(np.float32)
        region[keep] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        image[y0:y1, x0:x1] = region.reshape(y1 - y0, x1 - x0, 3)
        return image
