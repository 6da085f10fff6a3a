"""Neural lip-sync: the procedural renderer draws the face, a Wav2Lip network redraws the mouth.

Per frame: the procedural plan with its speech mouth removed (expressions, blinks, head sway and
nods stay) -> a square face box from the drawn frame's landmarks, shaped like the face-detector
boxes Wav2Lip was trained and run on (forehead-to-chin square, padded below the chin as its
inference.py pads by [0, 10, 0, 0]) and smoothed over 5 frames as inference.py does -> the 96x96
crop with its lower half blacked out plus the photo's own crop as the identity reference -> the
network, batched, with the frame's mel window -> the prediction pasted back through a feathered
lower-face mask that is zero on the box edges, so nothing outside the box changes and no seam shows.

Only the engine imports this module; torch comes in through `load()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import Speech
from lipsync import face_mesh_indices as fm
from lipsync.audio_features import frame_count_for
from lipsync.deformation_basis import BASIS_INDEX
from lipsync.procedural_renderer import EmotionSpans, ProceduralRenderer
from lipsync.wav2lip_audio import SAMPLE_RATE_HZ, mel_chunks, melspectrogram

FACE_SIZE_PX = 96
MOUTH_BASES = ("jaw_open", "lip_press", "lip_wide", "lip_round", "upper_lip_raise", "lip_seal")
CHIN_PAD_FRACTION = 0.06  # inference.py pads 10 px below the chin on faces of roughly 150-200 px
BOX_SMOOTHING_FRAMES = 5
# The pasted region in box coordinates (0 = top/left, 1 = bottom/right): from below the eyes,
# where the network starts to redraw (it sees the top half), fading to zero at every box edge.
MASK_TOP = (0.50, 0.64)  # (fully base, fully network)
MASK_SIDE = (0.03, 0.16)
MASK_BOTTOM = (0.97, 0.86)
SHARPEN_AMOUNT = 0.6


def lower_face_box(landmarks_px: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """(x0, y0, x1, y1) float: a square as wide as the face oval whose bottom sits just below the chin."""
    oval = landmarks_px[list(fm.FACE_OVAL), :2]
    x0, x1 = float(oval[:, 0].min()), float(oval[:, 0].max())
    side = x1 - x0
    bottom = float(landmarks_px[fm.CHIN, 1]) + CHIN_PAD_FRACTION * side
    width, height = size_wh
    return np.array(
        [max(0.0, x0), max(0.0, bottom - side), min(float(width), x1), min(float(height), bottom)],
        np.float64,
    )


def smooth_boxes(boxes: np.ndarray, window: int = BOX_SMOOTHING_FRAMES) -> np.ndarray:
    """Centred moving average per coordinate (shorter at the ends), rounded to whole pixels.

    Detector boxes jitter from frame to frame and so would the pasted mouth; ours are steadier but
    head sway and nods still move them, and averaging keeps the crop from shimmering.
    """
    count = len(boxes)
    half = window // 2
    smoothed = np.empty_like(boxes)
    for i in range(count):
        smoothed[i] = boxes[max(0, i - half) : min(count, i + half + 1)].mean(axis=0)
    return np.round(smoothed).astype(np.int64)


def _ramp(positions: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 before `start`, 1 after `end` (either direction), smoothstep between."""
    t = np.clip((positions - start) / (end - start), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def lower_face_mask(height_px: int, width_px: int) -> np.ndarray:
    """(h, w, 1) float32 blend weights for the network's pixels, exactly 0 on the box border."""
    ys = (np.arange(height_px) + 0.5) / height_px
    xs = (np.arange(width_px) + 0.5) / width_px
    rows = _ramp(ys, *MASK_TOP) * _ramp(ys, *MASK_BOTTOM)
    cols = _ramp(xs, MASK_SIDE[0], MASK_SIDE[1]) * _ramp(xs, 1.0 - MASK_SIDE[0], 1.0 - MASK_SIDE[1])
    return np.outer(rows, cols).astype(np.float32)[..., None]


def _unsharp(image: np.ndarray, sigma_px: float) -> np.ndarray:
    import cv2

    blurred = cv2.GaussianBlur(image, (0, 0), sigma_px)
    return image + SHARPEN_AMOUNT * (image - blurred)


class Wav2LipRenderer:
    """Same `render(speech, emotion_spans)` contract as ProceduralRenderer, with a neural mouth."""

    def __init__(
        self,
        base: ProceduralRenderer,
        checkpoint_path: Path,
        device: str = "cpu",
        batch_size: int = 16,
        fp16: bool | None = None,
        mouth_sharpen: bool = False,
        base_mouth_keep: float = 0.0,
        trust_pickle: bool = False,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.base = base
        self.checkpoint_path = Path(checkpoint_path)
        self.device = device
        self.batch_size = batch_size
        self.fp16 = device.startswith("cuda") if fp16 is None else bool(fp16)
        self.mouth_sharpen = mouth_sharpen
        # How much of the procedural mouth motion stays in the base frames: 0 lets the network alone
        # move the lips; a little (0.2) lets the jaw line outside the mask follow the speech too.
        self.base_mouth_keep = float(base_mouth_keep)
        self.trust_pickle = trust_pickle
        self.model = None
        self._reference = self._reference_crop()

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.base.size_wh

    @property
    def assets(self):
        return self.base.assets

    @property
    def fps(self) -> int:
        return self.base.fps

    def load(self) -> Wav2LipRenderer:
        """Read the checkpoint and move the network to the device (blocking, once per process)."""
        from lipsync.wav2lip_checkpoint import load_wav2lip, require_torch

        torch = require_torch()
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(
                f"device {self.device!r} requested but torch sees no CUDA GPU",
                "use device='cpu', or install a CUDA build of torch",
            )
        if self.fp16 and not self.device.startswith("cuda"):
            raise InputError("fp16 Wav2Lip inference needs a CUDA device", "leave fp16 unset on the CPU")
        self.model = load_wav2lip(
            self.checkpoint_path, self.device, half=self.fp16, trust_pickle=self.trust_pickle
        )
        return self

    def _reference_crop(self) -> np.ndarray:
        """The photo's own face crop: the identity (skin, teeth, lips) the network copies from."""
        assets = self.base.assets
        box = np.round(lower_face_box(assets.landmarks_px, assets.size_wh)).astype(np.int64)
        return self._crop(assets.image_bgr, box)

    @staticmethod
    def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        import cv2

        x0, y0, x1, y1 = (int(v) for v in box)
        region = image[y0:y1, x0:x1]
        if region.size == 0:  # a face pushed out of the picture: nothing for the network to see
            return np.zeros((FACE_SIZE_PX, FACE_SIZE_PX, 3), np.uint8)
        shrink = region.shape[0] > FACE_SIZE_PX
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(region, (FACE_SIZE_PX, FACE_SIZE_PX), interpolation=interpolation)

    def plan(self, speech: Speech, emotion_spans: EmotionSpans | None = None) -> np.ndarray:
        """The procedural plan with the speech mouth taken out (kept at `base_mouth_keep`)."""
        weights = self.base.plan(speech, emotion_spans)
        frames = len(weights)
        expression = self.base.expression_plan(emotion_spans, frames)
        for name in MOUTH_BASES:
            j = BASIS_INDEX[name]
            weights[:, j] = expression[:, j] + self.base_mouth_keep * (weights[:, j] - expression[:, j])
        return weights

    def mel_windows(self, speech: Speech, frame_count: int) -> np.ndarray:
        """(frames, 80, 16) mel windows of the speech resampled to 16 kHz."""
        from avatar.core.audio_io import resample

        audio = speech.audio
        pcm = resample(np.asarray(audio.pcm, np.float32), audio.sample_rate_hz, SAMPLE_RATE_HZ)
        return np.stack(mel_chunks(melspectrogram(pcm), self.fps, frame_count))

    def render(self, speech: Speech, emotion_spans: EmotionSpans | None = None) -> Iterator[np.ndarray]:
        """BGR frames for the speech, lazily, one batch of network inference at a time."""
        if self.model is None:
            raise EngineUnavailable("the Wav2Lip renderer is not loaded", "call load() before render()")
        audio = speech.audio
        frame_count = frame_count_for(len(audio.pcm), audio.sample_rate_hz, self.fps)
        weights = self.plan(speech, emotion_spans)
        mels = self.mel_windows(speech, frame_count)
        boxes = smooth_boxes(
            np.stack([lower_face_box(self.base.warper.moved_landmarks(w), self.size_wh) for w in weights])
        )
        for start in range(0, frame_count, self.batch_size):
            stop = min(start + self.batch_size, frame_count)
            frames = [self.base.draw(w) for w in weights[start:stop]]
            crops = np.stack([self._crop(f, b) for f, b in zip(frames, boxes[start:stop], strict=True)])
            faces = self.predict(crops, mels[start:stop])
            for frame, box, face in zip(frames, boxes[start:stop], faces, strict=True):
                yield self.paste(frame, box, face)

    def predict(self, crops_bgr: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """(B, 96, 96, 3) uint8 target crops + (B, 80, 16) mels -> (B, 96, 96, 3) float32 BGR in [0, 255]."""
        import torch

        masked = crops_bgr.copy()
        masked[:, FACE_SIZE_PX // 2 :] = 0  # the network must draw the lower half from the audio
        reference = np.broadcast_to(self._reference, crops_bgr.shape)
        faces = np.concatenate([masked, reference], axis=3).transpose(0, 3, 1, 2)  # (B, 6, 96, 96)
        parameter = next(self.model.parameters())
        face_tensor = (
            torch.from_numpy(np.ascontiguousarray(faces)).to(parameter.device, parameter.dtype) / 255.0
        )
        mel_tensor = torch.from_numpy(np.ascontiguousarray(mels[:, None])).to(
            parameter.device, parameter.dtype
        )
        with torch.inference_mode():
            out = self.model(mel_tensor, face_tensor)  # (B, 3, 96, 96) in [0, 1]
        return out.float().permute(0, 2, 3, 1).cpu().numpy() * 255.0

    def paste(self, frame: np.ndarray, box: np.ndarray, face_bgr: np.ndarray) -> np.ndarray:
        """Blend the network's face into `frame` (in place) inside `box` only, through the feathered mask."""
        import cv2

        x0, y0, x1, y1 = (int(v) for v in box)
        width, height = x1 - x0, y1 - y0
        if width < 2 or height < 2:
            return frame
        face = cv2.resize(face_bgr, (width, height), interpolation=cv2.INTER_CUBIC)
        if self.mouth_sharpen:
            face = _unsharp(face, sigma_px=max(1.0, width / FACE_SIZE_PX))
        region = frame[y0:y1, x0:x1].astype(np.float32)
        mask = lower_face_mask(height, width)
        blended = region + mask * (face - region)
        frame[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(
            np.uint8
        )  # draw() gave us a fresh frame
        return frame
