"""face-alignment (2D-FAN, 68 points) as an alternative landmark engine, from local weights only.

Why a second landmarker: MediaPipe's 478-point mesh is the embedded default, but the Wav2Lip
family and most lip-sync research crop faces with the 68-point iBUG layout that 2D-FAN predicts.

Why the loading is done here rather than by `face_alignment.FaceAlignment` alone: the package
fetches missing weights from adrianbulat.com (S3FD through torch.hub, FAN through its own URL
loader). This toolkit never downloads implicitly, so the engine is given both files' paths (the
engine layer finds them through the model registry: `avatar.engines.engine_set.fan_landmarker`), a
missing one is an EngineUnavailable naming the file and the fix, the S3FD detector is given its
file path, and the FAN network is loaded from that path by overriding the package's loader, so no
code path can reach a URL even if torch.hub's directory was changed elsewhere in the process.
This follows face-alignment 1.5's layout (plain state dicts `2DFAN4-11f355bf06.pth.tar` and
`s3fd-619a316812.pth`; 1.4 used TorchScript archives).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError

ENGINE = "face-alignment"
NUM_POINTS = 68


class FanLandmarker:
    """Blocking 68-point landmarker; `load()` once, `detect()` many times, `close()` when done.

    `fan_path` is the 2D-FAN state dict (2DFAN4-*.pth.tar), `s3fd_path` the S3FD detector's
    (s3fd-*.pth), as face-alignment 1.5 names them.
    """

    def __init__(self, fan_path: Path, s3fd_path: Path, device: str = "cpu") -> None:
        self.fan_path, self.s3fd_path = Path(fan_path), Path(s3fd_path)
        self.device = device
        self._aligner = None

    def load(self) -> FanLandmarker:
        if self._aligner is not None:
            return self
        fan_path, s3fd_path = self.fan_path, self.s3fd_path
        missing = [path for path in (fan_path, s3fd_path) if not path.is_file()]
        if missing:
            raise EngineUnavailable(
                f"{ENGINE} is missing {missing[0].name} in {missing[0].parent}",
                f"run `avatar models download {ENGINE}` or copy {', '.join(p.name for p in missing)} there",
            )
        directory = fan_path.parent
        try:
            import face_alignment
            import torch
            from face_alignment.models import FAN
        except ImportError as exc:
            raise EngineUnavailable(
                f"{ENGINE} cannot be imported ({exc})", "pip install '.[lipsync-neural]'"
            ) from exc
        if not hasattr(face_alignment.FaceAlignment, "_load_native"):
            raise EngineUnavailable(
                f"face-alignment {getattr(face_alignment, '__version__', '?')} is not supported",
                "pip install 'face-alignment>=1.5' (it reads plain state-dict weights)",
            )

        class LocalFaceAlignment(face_alignment.FaceAlignment):
            """FaceAlignment whose FAN weights come from our checked file, never from a URL."""

            def _load_native(self, network_name, network_size, device, dtype):
                net = FAN(network_size)
                net.load_state_dict(torch.load(fan_path, map_location=device, weights_only=True))
                return net.to(device, dtype=dtype).eval()

        try:
            self._aligner = LocalFaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=self.device,
                flip_input=False,
                face_detector="sfd",
                face_detector_kwargs={"path_to_detector": str(s3fd_path)},
                compile=False,  # torch.compile costs minutes on CPU and writes a cache in ~/.cache
            )
        except (RuntimeError, OSError, ValueError, KeyError, pickle.UnpicklingError) as exc:  # damaged files
            raise EngineUnavailable(
                f"{ENGINE} weights in {directory} could not be loaded ({type(exc).__name__})",
                f"check them with `avatar models` after `avatar models download {ENGINE}`",
            ) from exc
        return self

    def detect(
        self, image_bgr: np.ndarray, face_boxes_xyxy: Sequence[Sequence[float]] | None = None
    ) -> list[np.ndarray]:
        """One (68, 2) float32 array of pixel coordinates per face, largest face first.

        `face_boxes_xyxy` skips the S3FD detector and uses these boxes (x0, y0, x1, y1), e.g.
        from the MediaPipe landmarker; without it S3FD finds the faces. No face -> [].
        """
        if self._aligner is None:
            self.load()
        image = np.asarray(image_bgr)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(
                f"expected an HxWx3 uint8 BGR image, got shape {image.shape} dtype {image.dtype}",
                "read the photo with cv2.imread",
            )
        rgb = np.ascontiguousarray(image[:, :, ::-1])  # face-alignment expects RGB
        boxes = None
        if face_boxes_xyxy is not None:
            boxes = [
                np.asarray(box[:4], dtype=np.float64) for box in face_boxes_xyxy
            ]  # float32 breaks its crop()
            if not boxes:
                return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected." is an answer here, not a warning
            landmarks, _, found = self._aligner.get_landmarks_from_image(
                rgb, detected_faces=boxes, return_bboxes=True
            )
        if not landmarks:
            return []
        areas = [float((box[2] - box[0]) * (box[3] - box[1])) for box in found]
        order = sorted(range(len(landmarks)), key=lambda index: -areas[index])
        return [np.asarray(landmarks[index], dtype=np.float32).reshape(NUM_POINTS, 2) for index in order]

    def close(self) -> None:
        self._aligner = None

    def __enter__(self) -> FanLandmarker:
        return self.load()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
