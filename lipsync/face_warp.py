"""Per-frame photo warp: weighted basis fields -> one backward remap of the head region.

The bases are sampled once on the head region's pixel grid; per frame we blend them with one
matrix-vector product (BLAS) and call cv2.remap, which keeps a 512 px avatar at a few
milliseconds a frame on one core.
"""

from __future__ import annotations

import numpy as np

from lipsync import face_mesh_indices as fm
from lipsync.avatar_assets import AvatarAssets
from lipsync.deformation_basis import BASIS_NAMES, DeformationBasis
from lipsync.face_geometry import FaceGeometry

COARSE_FIELD_ABOVE_PX = 250_000  # head regions larger than this (about 500x500) use half-resolution fields


class FaceWarper:
    """Holds the sampled bases for one avatar and applies weight vectors to the photo."""

    def __init__(self, assets: AvatarAssets) -> None:
        self.image = assets.image_bgr
        self.geometry = FaceGeometry.from_landmarks(assets.landmarks_px)
        basis = DeformationBasis(self.geometry)
        x0, y0, x1, y1 = self.geometry.head_box_xyxy(assets.size_wh)
        self.box = (x0, y0, x1, y1)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._grid_x = xs
        self._grid_y = ys
        self._shape = xs.shape
        # The fields are smooth, so large heads sample them every other pixel and upsample per
        # frame: a quarter of the blending work for 1024 px photos, no visible difference.
        self._field_step = 2 if xs.size > COARSE_FIELD_ABOVE_PX else 1
        step = self._field_step
        coarse_y = y0 + 0.5 * (step - 1) + step * np.arange(int(np.ceil((y1 - y0) / step)), dtype=np.float32)
        coarse_x = x0 + 0.5 * (step - 1) + step * np.arange(int(np.ceil((x1 - x0) / step)), dtype=np.float32)
        cys, cxs = np.meshgrid(coarse_y, coarse_x, indexing="ij")
        self._coarse_shape = cxs.shape
        grid = np.stack([cxs.ravel(), cys.ravel()], axis=1)
        self._fields = np.stack([basis.evaluate(name, grid).reshape(-1) for name in BASIS_NAMES])
        landmarks = self.geometry.landmarks
        self.landmarks = landmarks.astype(np.float32)
        # Inner-lip landmarks sit exactly on the seam of a closed mouth, where the jaw field ramps
        # from 0 to 1; sample them a little inside their own lip so each follows its lip.
        probe = landmarks.copy()
        seam_px = 0.02 * self.geometry.face_height_px
        probe[list(fm.UPPER_INNER_LIP[1:-1])] -= seam_px * self.geometry.mouth.v
        probe[list(fm.LOWER_INNER_LIP[1:-1])] += seam_px * self.geometry.mouth.v
        self._landmark_moves = np.stack([basis.evaluate(name, probe) for name in BASIS_NAMES])
        # The most any pixel or landmark moves per unit of each weight: bounds how far a frame can
        # differ from another (used to skip idle redraws that would move nothing visibly).
        field_max = np.abs(self._fields.reshape(len(BASIS_NAMES), -1, 2)).max(axis=(1, 2))
        landmark_max = np.abs(self._landmark_moves).max(axis=(1, 2))
        self.max_shift_px_per_unit = np.maximum(field_max, landmark_max).astype(np.float32)

    def moved_landmarks(self, weights: np.ndarray) -> np.ndarray:
        """Where each landmark goes under these weights (forward displacement)."""
        return self.landmarks + np.tensordot(weights.astype(np.float32), self._landmark_moves, axes=1)

    def warp(self, weights: np.ndarray) -> np.ndarray:
        """The whole photo with the head region deformed; the background stays untouched."""
        import cv2

        # Most bases are idle in any one frame (no blink, no brow motion): skip their rows.
        active = np.flatnonzero(np.abs(weights) > 1e-4)
        if len(active) == 0:
            return self.image.copy()
        field = (weights[active].astype(np.float32) @ self._fields[active]).reshape(*self._coarse_shape, 2)
        if self._field_step != 1:
            field = cv2.resize(field, (self._shape[1], self._shape[0]), interpolation=cv2.INTER_LINEAR)
        # Backward map: the output pixel p shows the source at p - d(p), refined once so large
        # displacements (an open jaw) land where the forward field sends them.
        map_x = self._grid_x - field[..., 0]
        map_y = self._grid_y - field[..., 1]
        x0, y0, x1, y1 = self.box
        refined = cv2.remap(field, map_x - x0, map_y - y0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        map_x = self._grid_x - refined[..., 0]
        map_y = self._grid_y - refined[..., 1]
        out = self.image.copy()
        out[y0:y1, x0:x1] = cv2.remap(
            self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        return out
