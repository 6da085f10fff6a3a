"""face-alignment (2D-FAN, 68 points) as an alternative landmark engine, from local weights only.

Why a second landmarker: MediaPipe's 478-point mesh is the embedded default, but the Wav2Lip
family and most lip-sync research crop faces with the 68-point iBUG layout that 2D-FAN predicts.

Why the loading is done here rather than by `face_alignment.FaceAlignment` alone: the package
fetches missing weights from adrianbulat.com (S3FD through torch.hub, FAN through its own URL
loader). This toolkit never downloads implicitly, so both files are checked first through the
model registry (a missing one is an EngineUnavailable naming the file and the fix), the S3FD
detector is given its file path, and the FAN network is loaded from our verified path by
overriding the package's loader, so no code path can reach a URL even if torch.hub's directory
was changed elsewhere in the process. This follows face-alignment 1.5's layout (plain state
dicts `2DFAN4-11f355bf06.pth.tar` and `s3fd-619a316812.pth`; 1.4 used TorchScript archives).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.engines.registry import get_spec, require_engine

ENGINE = "face-alignment"
NUM_POINTS = 68


def _weight_paths(directory: Path) -> tuple[Path, Path]:
    """(FAN, S3FD) weight paths in `directory`, named as the registry lists them."""
    names = [model_file.relative_path for model_file in get_spec(ENGINE).files]
    fan_name = next(name for name in names if name.startswith("2DFAN4"))
    s3fd_name = next(name for name in names if name.startswith("s3fd"))
    return directory / fan_name, directory / s3fd_name


class FanLandmarker:
    """Blocking 68-point landmarker; `load()` once, `detect()` many times, `close()` when done.

    `weights_dir` defaults to the registry's place for face-alignment ($TORCH_HOME/hub/checkpoints).
    """

    def __init__(self, device: str = "cpu", weights_dir: Path | None = None) -> None:
        self.device = device
        self._weights_dir = weights_dir
        self._aligner = None

    def load(self) -> FanLandmarker:
        if self._aligner is not None:
            return self
        if self._weights_dir is None:
            directory = require_engine(ENGINE)
        else:
            directory = Path(self._weights_dir)
            missing = [path.name for path in _weight_paths(directory) if not path.is_file()]
            if missing:
                raise EngineUnavailable(
                    f"{ENGINE} is missing {missing[0]} in {directory}",
                    f"run `avatar models download {ENGINE}` or copy {', '.join(missing)} there",
                )
        fan_path, s3fd_path = _weight_paths(directory)
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
