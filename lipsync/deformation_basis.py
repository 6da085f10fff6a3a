"""Displacement fields that move parts of the face, one per controllable action.

Each basis maps a point to where it moves for weight 1. A frame's deformation is the weighted sum
of the bases, so per frame the renderer only does one small matrix-vector product and one remap:
the expensive geometry is evaluated once per avatar. The sums are linear, which is exact for the
mouth and eyelids (pure translations of regions) and a first-order approximation for head roll,
fine for the fraction of a degree idle motion uses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lipsync import face_mesh_indices as fm
from lipsync.face_geometry import FaceGeometry, Frame2D

BASIS_NAMES = (
    "jaw_open",  # lower lip and jaw drop; 1 = gap of ~12% of face height
    "lip_press",  # lower lip pushed up against the upper one (p, b, m), closes an open photo mouth
    "lip_wide",  # corners pulled outward (ee, s)
    "lip_round",  # corners pulled inward (oo, w)
    "upper_lip_raise",  # upper lip lifted (f, v show upper teeth)
    "smile",  # corners up and out, cheeks raised
    "frown",  # corners down
    "brow_raise",  # both brows up
    "brow_inner_up",  # inner brow ends up (sadness)
    "brow_lower",  # brows down and together (anger)
    "blink_right",
    "blink_left",
    "lid_raise_lower",  # lower lids up (squint of a real smile, anger)
    "head_roll",  # 1 = one degree
    "head_tx",  # 1 = 1% of face width
    "head_ty",  # 1 = 1% of face height
    "lip_seal",  # lower lip back up to the upper one with the jaw left open (weight = jaw_open's)
)
BASIS_INDEX = {name: i for i, name in enumerate(BASIS_NAMES)}


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(d2: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-d2 / (2.0 * sigma * sigma))


def _along(frame: Frame2D, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
    """Displacement with components (du, dv) in the frame's axes -> image (dx, dy)."""
    return du[:, None] * frame.u[None, :] + dv[:, None] * frame.v[None, :]


class DeformationBasis:
    """Evaluates every basis at arbitrary points for one face."""

    def __init__(self, geometry: FaceGeometry) -> None:
        self.g = geometry
        lm = geometry.landmarks
        mouth = geometry.mouth
        # The lip line: halfway between the inner lips, as a function of position along the mouth.
        ux, uy = mouth.to_local(lm[list(fm.UPPER_INNER_LIP)])
        lx, ly = mouth.to_local(lm[list(fm.LOWER_INNER_LIP)])
        order = np.argsort(ux)
        self._upper_x, self._upper_y = ux[order], uy[order]
        order = np.argsort(lx)
        self._lower_x, self._lower_y = lx[order], ly[order]
        _, chin_v = mouth.to_local(lm[[fm.CHIN]])
        self._chin_v = float(chin_v[0])
        self._builders: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "jaw_open": self._jaw_open,
            "lip_press": self._lip_press,
            "lip_wide": lambda p: self._corners(p, out=0.13, up=0.0, sigma=0.45),
            "lip_round": lambda p: self._corners(p, out=-0.14, up=0.0, sigma=0.45),
            "upper_lip_raise": self._upper_lip_raise,
            "smile": self._smile,
            "frown": lambda p: self._corners(p, out=-0.02, up=-0.09, sigma=0.4),
            "brow_raise": lambda p: self._brows(p, up=0.045, inward=0.0, inner_only=False),
            "brow_inner_up": lambda p: self._brows(p, up=0.055, inward=0.006, inner_only=True),
            "brow_lower": lambda p: self._brows(p, up=-0.04, inward=0.024, inner_only=False),
            "blink_right": lambda p: self._blink(
                p, geometry.right_eye, geometry.right_eye_open_px, fm.RIGHT_EYE
            ),
            "blink_left": lambda p: self._blink(p, geometry.left_eye, geometry.left_eye_open_px, fm.LEFT_EYE),
            "lid_raise_lower": self._lower_lids,
            "head_roll": self._head_roll,
            "head_tx": lambda p: self._head_shift(p, 0.01 * geometry.face_width_px, 0.0),
            "head_ty": lambda p: self._head_shift(p, 0.0, 0.01 * geometry.face_height_px),
            "lip_seal": self._lip_seal,
        }

    def evaluate(self, name: str, points: np.ndarray) -> np.ndarray:
        """(N, 2) points -> (N, 2) displacement in pixels for weight 1."""
        return self._builders[name](np.asarray(points, np.float64)).astype(np.float32)

    # --- mouth -------------------------------------------------------------------------------
    def _lip_line(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        upper = np.interp(x, self._upper_x, self._upper_y)
        lower = np.interp(x, self._lower_x, self._lower_y)
        return upper, lower, 0.5 * (upper + lower)

    def _lower_region(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weight of 'moves with the jaw': 1 below the lip line, 0 above, sharp only between the lips."""
        g = self.g
        x, y = g.mouth.to_local(points)
        half_w = 0.5 * g.mouth_width_px
        upper, lower, line = self._lip_line(x)
        outside = np.maximum(np.abs(x) - 0.8 * half_w, 0.0)
        # Between closed lips the boundary is sharp (~1% of face height); where the photo's lips
        # are parted it spans the visible inside, which then stretches instead of repeating; past
        # the corners it widens so the cheeks stretch instead of tearing.
        eps = np.maximum(0.008 * g.face_height_px, 0.5 * (lower - upper)) + 0.9 * outside
        below = _smoothstep(0.5 + (y - line) / (2.0 * eps))
        return x, y, below

    def _jaw_open(self, points: np.ndarray) -> np.ndarray:
        g = self.g
        x, y, below = self._lower_region(points)
        half_w = 0.5 * g.mouth_width_px
        _, _, line = self._lip_line(x)
        # The jaw drops as a block, but the lower lip is elastic: pinned at the corners, it opens
        # into a lens shape, so close to the lip line the drop follows a profile across the mouth.
        jaw = _gauss(np.maximum(np.abs(x) - 0.5 * half_w, 0.0) ** 2, 0.38 * g.face_width_px)
        lip = np.clip(1.0 - (np.abs(x) / half_w) ** 2, 0.0, 1.0)
        depth = _smoothstep((y - line) / (0.14 * g.face_height_px))
        lateral = lip * (1.0 - depth) + jaw * depth
        under_chin = np.maximum(y - self._chin_v, 0.0)
        neck = _gauss(under_chin**2, 0.2 * g.face_height_px)
        drop = 0.12 * g.face_height_px * below * lateral * neck
        # The upper lip lifts a little as the mouth opens.
        above = (1.0 - below) * _gauss((line - y) ** 2, 0.07 * g.face_height_px)
        lift = -0.012 * g.face_height_px * above * _gauss(x**2, 0.8 * half_w)
        return _along(g.mouth, np.zeros_like(x), drop + lift)

    def _lip_seal(self, points: np.ndarray) -> np.ndarray:
        """The jaw's drop undone over the lips only: on /p b m/ between vowels the lips close while
        the jaw stays partly open, so the chin keeps its drop and the lower lip stretches up."""
        g = self.g
        x, y = g.mouth.to_local(points)
        _, lower, _ = self._lip_line(x)
        lip = _gauss(np.maximum(y - lower, 0.0) ** 2, 0.06 * g.face_height_px)
        return -self._jaw_open(points) * lip[:, None]

    def _lip_press(self, points: np.ndarray) -> np.ndarray:
        """Lower lip up to meet the upper one; used negatively it parts the lips slightly."""
        g = self.g
        x, y, below = self._lower_region(points)
        upper, lower, _ = self._lip_line(x)
        half_w = 0.5 * g.mouth_width_px
        gap = np.maximum(lower - upper, 0.0) + 0.006 * g.face_height_px
        local = (
            below
            * _gauss(x**2, 0.9 * half_w)
            * _gauss(np.maximum(y - lower, 0.0) ** 2, 0.12 * g.face_height_px)
        )
        return _along(g.mouth, np.zeros_like(x), -gap.clip(max=0.1 * g.face_height_px) * local)

    def _corners(self, points: np.ndarray, out: float, up: float, sigma: float) -> np.ndarray:
        """Move both mouth corners: `out` and `up` in mouth widths, falloff `sigma` mouth widths."""
        g = self.g
        x, y = g.mouth.to_local(points)
        half_w = 0.5 * g.mouth_width_px
        du = np.zeros_like(x)
        dv = np.zeros_like(x)
        for side in (-1.0, 1.0):
            d2 = (x - side * half_w) ** 2 + (y * 1.3) ** 2
            weight = _gauss(d2, sigma * g.mouth_width_px)
            du += side * out * g.mouth_width_px * weight
            dv += -up * g.mouth_width_px * weight
        return _along(g.mouth, du, dv)

    def _upper_lip_raise(self, points: np.ndarray) -> np.ndarray:
        g = self.g
        x, y, below = self._lower_region(points)
        upper, _, _ = self._lip_line(x)
        above = (1.0 - below) * _gauss(np.maximum(upper - y, 0.0) ** 2, 0.06 * g.face_height_px)
        lift = -0.025 * g.face_height_px * above * _gauss(x**2, 0.7 * 0.5 * g.mouth_width_px)
        return _along(g.mouth, np.zeros_like(x), lift)

    def _smile(self, points: np.ndarray) -> np.ndarray:
        g = self.g
        corners = self._corners(points, out=0.12, up=0.11, sigma=0.42)
        # Cheeks rise under the eyes.
        cheeks = np.zeros_like(corners)
        for eye in (g.right_eye, g.left_eye):
            center = eye.origin + 0.09 * g.face_height_px * g.face.v
            d2 = ((points - center) ** 2).sum(axis=1)
            cheeks += (-0.02 * g.face_height_px * _gauss(d2, 0.14 * g.face_width_px))[:, None] * g.face.v
        return corners + cheeks + 0.6 * self._lower_lids(points)

    # --- brows and eyes ------------------------------------------------------------------------
    def _brows(self, points: np.ndarray, up: float, inward: float, inner_only: bool) -> np.ndarray:
        g = self.g
        lm = g.landmarks
        total = np.zeros((len(points), 2))
        for ids, inner_id in (
            (fm.RIGHT_BROW, fm.RIGHT_BROW_INNER),
            (fm.LEFT_BROW, fm.LEFT_BROW_INNER),
        ):
            center = lm[inner_id] if inner_only else lm[list(ids)].mean(axis=0)
            sigma = (0.09 if inner_only else 0.16) * g.face_width_px
            # Brows move with the forehead skin above them and fade towards the eyes.
            rel = points - center
            along_v = rel @ g.face.v
            stretch = np.where(along_v < 0, 0.55, 1.5)  # reaches further up than down
            d2 = (rel @ g.face.u) ** 2 + (along_v * stretch) ** 2
            weight = _gauss(d2, sigma)
            toward_center = np.sign((g.face.origin - center) @ g.face.u)
            total += (-up * g.face_height_px * weight)[:, None] * g.face.v
            total += (inward * g.face_width_px * toward_center * weight)[:, None] * g.face.u
        return total

    def _blink(
        self, points: np.ndarray, eye: Frame2D, open_px: float, eye_ids: tuple[int, ...]
    ) -> np.ndarray:
        """The upper lid slides down over the eye; the lower lid stays put."""
        g = self.g
        x, y = eye.to_local(points)
        ex, ey = eye.to_local(g.landmarks[list(eye_ids)])
        half_w = 0.5 * (ex.max() - ex.min())
        top, bottom = ey.min(), ey.max()
        lateral = _gauss(np.maximum(np.abs(x) - 0.75 * half_w, 0.0) ** 2, 0.3 * half_w)
        # 1 from the upper lid down to just above the lower lid, fading upwards to the brow.
        fade_up = np.where(
            y < top, _gauss((top - y) ** 2, 0.6 * (bottom - top) + 0.01 * g.face_height_px), 1.0
        )
        cut = 1.0 - _smoothstep(0.5 + (y - (bottom - 0.05 * open_px)) / (0.35 * open_px + 1.0))
        weight = lateral * fade_up * cut
        return _along(eye, np.zeros_like(x), 1.05 * open_px * weight)

    def _lower_lids(self, points: np.ndarray) -> np.ndarray:
        g = self.g
        total = np.zeros((len(points), 2))
        for eye, open_px, ids in (
            (g.right_eye, g.right_eye_open_px, fm.RIGHT_EYE_LOWER_LID),
            (g.left_eye, g.left_eye_open_px, fm.LEFT_EYE_LOWER_LID),
        ):
            x, y = eye.to_local(points)
            _, ly = eye.to_local(g.landmarks[list(ids)])
            lid = float(ly.mean())
            half_w = 0.6 * g.face_width_px * 0.18
            d2 = x**2 + (np.maximum(y - lid, 0.0) * 0.8) ** 2 + (np.minimum(y - lid, 0.0) * 3.0) ** 2
            weight = _gauss(d2, half_w)
            total += _along(eye, np.zeros_like(x), -0.3 * open_px * weight)
        return total

    # --- head ------------------------------------------------------------------------------------
    def _head_mask(self, points: np.ndarray) -> np.ndarray:
        g = self.g
        rel = points - g.face.origin
        a = 0.95 * g.face_width_px
        b = 0.9 * g.face_height_px
        r = np.sqrt(((rel @ g.face.u) / a) ** 2 + ((rel @ g.face.v) / b) ** 2)
        return 1.0 - _smoothstep((r - 0.75) / 0.6)

    def _head_roll(self, points: np.ndarray) -> np.ndarray:
        pivot = self.g.face.origin + 0.45 * self.g.face_height_px * self.g.face.v  # about the neck
        rel = points - pivot
        perp = np.stack([-rel[:, 1], rel[:, 0]], axis=1)
        return perp * (np.deg2rad(1.0) * self._head_mask(points))[:, None]

    def _head_shift(self, points: np.ndarray, dx: float, dy: float) -> np.ndarray:
        mask = self._head_mask(points)
        return np.stack([dx * mask, dy * mask], axis=1)
