"""Face-aligned coordinate frames measured from the landmarks.

Every deformation is written in these frames (mouth, eyes, face) and in units of the face's own
size, so the same expression looks alike on a 200 px face and a 900 px one, and on tilted heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipsync import face_mesh_indices as fm


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-6)


@dataclass(frozen=True)
class Frame2D:
    """An origin plus orthonormal axes: `u` along the feature, `v` pointing down the face."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def to_local(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = points - self.origin
        return d @ self.u, d @ self.v


@dataclass(frozen=True)
class FaceGeometry:
    """Sizes and frames of one face, all in image pixels."""

    landmarks: np.ndarray  # (478, 2)
    face: Frame2D  # origin at the face centre
    mouth: Frame2D  # origin between the mouth corners
    right_eye: Frame2D
    left_eye: Frame2D
    face_height_px: float
    face_width_px: float
    mouth_width_px: float
    right_eye_open_px: float
    left_eye_open_px: float

    @classmethod
    def from_landmarks(cls, landmarks_px: np.ndarray) -> FaceGeometry:
        lm = np.asarray(landmarks_px, np.float64)[:, :2]
        down = _unit(lm[fm.CHIN] - lm[fm.FOREHEAD_TOP])
        across = np.array([-down[1], down[0]])  # image-right for an upright face
        if across @ (lm[fm.LEFT_CHEEK] - lm[fm.RIGHT_CHEEK]) < 0:
            across = -across
        face_center = lm[list(fm.FACE_OVAL)].mean(axis=0)
        corners = lm[list(fm.MOUTH_CORNERS)]
        mouth_u = _unit(corners[1] - corners[0])
        mouth_v = np.array([-mouth_u[1], mouth_u[0]])
        if mouth_v @ down < 0:
            mouth_v = -mouth_v

        def eye_frame(corner_ids: tuple[int, int], eye_ids: tuple[int, ...]) -> Frame2D:
            a, b = lm[corner_ids[0]], lm[corner_ids[1]]
            eu = _unit(b - a)
            if eu @ across < 0:
                eu = -eu
            ev = np.array([-eu[1], eu[0]])
            if ev @ down < 0:
                ev = -ev
            return Frame2D(lm[list(eye_ids)].mean(axis=0), eu, ev)

        def eye_open(top_bottom: tuple[int, int]) -> float:
            return float(max(np.linalg.norm(lm[top_bottom[1]] - lm[top_bottom[0]]), 1.0))

        return cls(
            landmarks=lm,
            face=Frame2D(face_center, across, down),
            mouth=Frame2D(corners.mean(axis=0), mouth_u, mouth_v),
            right_eye=eye_frame(fm.RIGHT_EYE_CORNERS, fm.RIGHT_EYE),
            left_eye=eye_frame(fm.LEFT_EYE_CORNERS, fm.LEFT_EYE),
            face_height_px=float(np.linalg.norm(lm[fm.CHIN] - lm[fm.FOREHEAD_TOP])),
            face_width_px=float(np.linalg.norm(lm[fm.LEFT_CHEEK] - lm[fm.RIGHT_CHEEK])),
            mouth_width_px=float(np.linalg.norm(corners[1] - corners[0])),
            right_eye_open_px=eye_open(fm.RIGHT_EYE_TOP_BOTTOM),
            left_eye_open_px=eye_open(fm.LEFT_EYE_TOP_BOTTOM),
        )

    def head_box_xyxy(self, image_wh: tuple[int, int]) -> tuple[int, int, int, int]:
        """The region any deformation may touch: head, hair and the top of the neck."""
        xy = self.landmarks
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        fw, fh = x1 - x0, y1 - y0
        width, height = image_wh
        return (
            max(0, int(x0 - 0.55 * fw)),
            max(0, int(y0 - 0.6 * fh)),
            min(width, int(np.ceil(x1 + 0.55 * fw))),
            min(height, int(np.ceil(y1 + 0.5 * fh))),
        )
