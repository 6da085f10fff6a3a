"""Check a photo and a voice sample before they become an avatar, and say what will go wrong.

The renderer and the voice matcher already refuse inputs that cannot work (no face, a 2 s
sample); these checks run the same code paths up front and add the softer problems that still
produce a worse avatar (a small, dark or blurry face; a noisy, quiet or clipped voice), so the
web console and `avatar library create` can show them while the user can still pick another
file. Errors are `InputError`s with a hint; warnings are plain sentences.

Heavy engines (MediaPipe, Whisper) are imported inside the functions; callers that check many
files pass their own loaded `landmarker` / `asr` to skip the ~1 s load per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import InputError

# A face below this height (pixels, in the checked image) is refused: the warp and the inner
# mouth have too few pixels to move (same limit as lipsync.avatar_assets.prepare_avatar).
MIN_FACE_HEIGHT_PX = 64
# Below this share of the image's longest side the lips are a few pixels wide: a warning.
SMALL_FACE_FRACTION = 0.2
# Mean luminance of the face box (0-255). The eval portraits sit at 105-162.
DARK_FACE_BRIGHTNESS = 50.0
BRIGHT_FACE_BRIGHTNESS = 215.0
# Laplacian std / luminance std of the face scaled to 128 px tall: contrast- and size-free
# sharpness. Eval portraits (including upscaled 288p video frames) score 0.18-0.51; the sample
# portrait blurred with sigma 1.5 px scores 0.07.
BLURRY_FACE_SHARPNESS = 0.08
_SHARPNESS_FACE_HEIGHT_PX = 128

# Voice: 20 ms frames; speech level = 90th percentile of frame RMS, noise floor = 10th.
SNR_FRAME_S = 0.02
NOISY_SNR_DB = 15.0
LONG_SAMPLE_S = 20.0
_NOISE_FLOOR_DBFS = -100.0  # digital silence between words would otherwise give an infinite SNR
_ANALYSIS_RATE_HZ = 16000


@dataclass(frozen=True)
class PhotoCheck:
    """What the landmarker found on a photo, drawn, plus the soft problems worth fixing."""

    preview_rgb: np.ndarray  # the (resized) photo with the face box and 478 landmarks, RGB uint8
    face_count: int  # faces the landmarker found
    face_height_px: float  # of the chosen face, in the checked image
    warnings: tuple[str, ...]
    face_box_xyxy: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # chosen face, checked image


@dataclass(frozen=True)
class VoiceCheck:
    """A voice sample's measurements and the soft problems worth re-recording for."""

    duration_s: float
    sample_rate_hz: int  # of the file as given
    transcript: str  # Whisper's transcript ("" when transcribe=False)
    language: str | None
    snr_db: float  # speech level vs noise floor (20 ms frames, 90th vs 10th percentile)
    clipped_fraction: float
    warnings: tuple[str, ...]


def check_photo(
    photo: Path, face_index: int | None = None, size_px: int | None = 512, *, landmarker=None
) -> PhotoCheck:
    """Detect the face the avatar will animate and report on it.

    Raises InputError for an unreadable, empty or corrupt file, a photo without a face, a face
    index that does not exist, and a face too small to animate at `size_px`.
    """
    from lipsync.avatar_assets import AvatarAssets, fit_to_size, read_photo
    from lipsync.preview import draw_detection

    photo = Path(photo)
    image = fit_to_size(read_photo(photo, size_px), size_px)  # a huge JPEG decodes reduced
    if landmarker is None:
        from lipsync.face_landmarker import FaceLandmarker

        with FaceLandmarker() as owned:
            faces = owned.detect(image)
    else:
        faces = landmarker.detect(image)
    face = _choose_face(faces, photo.name, face_index)
    x0, y0, x1, y1 = face.box_xyxy
    face_height_px = float(y1 - y0)
    if face_height_px < MIN_FACE_HEIGHT_PX:
        raise InputError(
            f"the face in {photo.name} is too small to animate ({face_height_px:.0f} px tall "
            f"at {max(image.shape[:2])} px)",
            f"use a closer photo or crop around the face (the face needs {MIN_FACE_HEIGHT_PX}+ px)",
        )
    warnings: list[str] = []
    if len(faces) > 1 and face_index is None:
        warnings.append(
            f"{len(faces)} faces found: using the largest "
            f"(pass face index 0-{len(faces) - 1} to choose another; 0 = largest)"
        )
    warnings += _face_quality_warnings(image, face.box_xyxy, face_height_px)
    assets = AvatarAssets(image, face.landmarks_px, dict(face.blendshapes), source_sha256="")
    preview_rgb = np.ascontiguousarray(draw_detection(assets)[:, :, ::-1])
    return PhotoCheck(
        preview_rgb=preview_rgb,
        face_count=len(faces),
        face_height_px=face_height_px,
        warnings=tuple(warnings),
        face_box_xyxy=(float(x0), float(y0), float(x1), float(y1)),
    )


def _choose_face(faces: list, photo_name: str, face_index: int | None):
    """The requested face, or the largest; the errors say which indices exist."""
    if not faces:
        raise InputError(
            f"no face found in {photo_name}",
            "use a photo with one clearly visible, roughly frontal human face",
        )
    if face_index is not None and not 0 <= face_index < len(faces):
        raise InputError(
            f"face index {face_index} does not exist: {photo_name} has {len(faces)} face(s)",
            f"use a face index from 0 to {len(faces) - 1} (0 = largest)",
        )
    return faces[face_index or 0]


def _face_quality_warnings(image_bgr: np.ndarray, box_xyxy, face_height_px: float) -> list[str]:
    """Small, dark, over-exposed and blurry faces still animate, but visibly worse."""
    import cv2

    warnings = []
    longest_px = max(image_bgr.shape[:2])
    if face_height_px < SMALL_FACE_FRACTION * longest_px:
        warnings.append(
            f"the face is small ({face_height_px:.0f} px tall in a {longest_px} px image): "
            "use a closer photo for sharper lips"
        )
    height, width = image_bgr.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    face = cv2.cvtColor(image_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    brightness = float(face.mean())
    if brightness < DARK_FACE_BRIGHTNESS:
        warnings.append(
            f"the photo is dark (mean face brightness {brightness:.0f}/255): "
            "use a brighter photo, lit from the front"
        )
    elif brightness > BRIGHT_FACE_BRIGHTNESS:
        warnings.append(
            f"the photo is over-exposed (mean face brightness {brightness:.0f}/255): "
            "use a photo with less direct light"
        )
    scale = _SHARPNESS_FACE_HEIGHT_PX / face.shape[0]
    small = cv2.resize(
        face,
        (max(1, round(face.shape[1] * scale)), _SHARPNESS_FACE_HEIGHT_PX),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    sharpness = float(cv2.Laplacian(small, cv2.CV_32F).std() / (small.std() + 1e-6))
    if sharpness < BLURRY_FACE_SHARPNESS:
        warnings.append(
            f"the photo is blurry (face sharpness {sharpness:.2f}, sharp photos score above "
            f"{BLURRY_FACE_SHARPNESS:.2f}): use a sharper photo"
        )
    return warnings


def check_voice_sample(sample: Path, transcribe: bool = True, *, asr=None) -> VoiceCheck:
    """Decode, measure and (optionally) transcribe a 3-30 s voice sample.

    Raises InputError for a missing, empty, corrupt or silent file and for samples shorter than
    3 s or longer than 30 s (the limits of voices.voice_analysis.check_reference). Levels and
    clipping are measured at the file's own rate: resampling would smooth clipped peaks away.
    """
    from avatar.core.audio_io import load_audio, probe_audio, resample
    from avatar.core.types import AudioChunk
    from voices.voice_analysis import MAX_SAMPLE_S, MIN_SAMPLE_S, check_reference

    sample = Path(sample)
    header = probe_audio(sample)  # errors: missing, empty, not audio
    if header.duration_s is not None and header.duration_s > MAX_SAMPLE_S + 1.0:
        # an hour-long recording picked by mistake is refused from its header, not decoded
        raise InputError(
            f"voice sample is too long: {header.duration_s:.1f} s, need {MIN_SAMPLE_S:.0f}-{MAX_SAMPLE_S:.0f} s",
            "cut 5-20 s of one speaker out of it",
        )
    source_rate_hz = header.sample_rate_hz or None
    chunk = load_audio(sample, source_rate_hz or _ANALYSIS_RATE_HZ)  # errors: empty, corrupt, silent
    notes = list(check_reference(chunk))  # errors: too short, too long, silent; notes: quiet, clipped
    pcm = np.asarray(chunk.pcm, dtype=np.float32)
    clipped_fraction = float(np.mean(np.abs(pcm) >= 0.999))
    snr_db = speech_to_noise_db(pcm, chunk.sample_rate_hz)
    if snr_db < NOISY_SNR_DB:
        notes.append(
            f"voice sample is noisy (speech only {snr_db:.0f} dB above the background): "
            "record in a quiet room, close to the microphone"
        )
    if chunk.duration_s > LONG_SAMPLE_S:
        notes.append(
            f"voice sample is long ({chunk.duration_s:.1f} s): 5-{LONG_SAMPLE_S:.0f} s of one speaker "
            "is enough and analyses faster"
        )
    transcript, language = "", None
    if transcribe:
        if asr is None:
            from avatar.asr.whisper import WhisperASR

            asr = WhisperASR().load()
        at_16k = AudioChunk(resample(pcm, chunk.sample_rate_hz, _ANALYSIS_RATE_HZ), _ANALYSIS_RATE_HZ)
        result = asr.transcribe(at_16k)
        transcript, language = result.text.strip(), result.language
        if not transcript:
            notes.append("no speech recognised in the voice sample: check that it is someone talking")
    return VoiceCheck(
        duration_s=float(chunk.duration_s),
        sample_rate_hz=int(source_rate_hz or chunk.sample_rate_hz),
        transcript=transcript,
        language=language,
        snr_db=snr_db,
        clipped_fraction=clipped_fraction,
        warnings=tuple(notes),
    )


def speech_to_noise_db(pcm: np.ndarray, sample_rate_hz: int) -> float:
    """90th minus 10th percentile of 20 ms frame levels: loud speech frames vs the pauses.

    Percentiles rather than a VAD keep it cheap and engine-free; a sample needs some pauses for
    the floor to be the room, which 3+ s of natural speech always has.
    """
    frame = max(1, int(sample_rate_hz * SNR_FRAME_S))
    frames = np.asarray(pcm[: len(pcm) // frame * frame], dtype=np.float64).reshape(-1, frame)
    if len(frames) == 0:
        return 0.0
    level_dbfs = 20.0 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)
    level_dbfs = np.maximum(level_dbfs, _NOISE_FLOOR_DBFS)
    speech_dbfs, floor_dbfs = np.percentile(level_dbfs, [90, 10])
    return float(speech_dbfs - floor_dbfs)
