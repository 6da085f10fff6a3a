"""Photo -> prepared avatar: the resized photo, its face landmarks and blendshapes, cached on disk.

Preparation runs the landmarker once per (photo, size, face) and caches the result, so a batch of
jobs on the same photo, or a live session reopening an avatar, starts without detection.
"""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import InputError
from avatar.core.storage import cache_root, open_atomically
from lipsync.face_landmarker import landmark_box

CACHE_VERSION = 1
MIN_FACE_HEIGHT_PX = 64
MAX_PHOTO_SIDE_PX = 8192
# Decoding allocates 3 bytes a pixel before any check can run: 100 MP is 300 MB, more than any
# phone's portrait needs (a 40000x40000 PNG of a few KB would ask OpenCV for 4.8 GB).
MAX_PHOTO_PIXELS = 100_000_000
# The file is read into memory whole before decoding: a 100 MP PNG of a real photo is ~150 MB.
MAX_PHOTO_FILE_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_SIDE_PX = 1024
# libjpeg decodes a baseline JPEG at 1/2, 1/4 or 1/8 of its size by dropping DCT coefficients,
# in a fraction of the time and memory; the pixel limit then applies to the reduced picture.
JPEG_REDUCTIONS = (8, 4, 2)


@dataclass(frozen=True)
class AvatarAssets:
    """Everything the renderers need to know about one prepared photo."""

    image_bgr: np.ndarray  # (H, W, 3) uint8, even width and height
    landmarks_px: np.ndarray  # (478, 3) float32 in image pixels
    blendshapes: dict[str, float]  # the photo's own expression: a neutral-expression estimate
    source_sha256: str
    notes: tuple[str, ...] = ()

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.image_bgr.shape[1]), int(self.image_bgr.shape[0])

    @property
    def face_box_xyxy(self) -> tuple[float, float, float, float]:
        return landmark_box(self.landmarks_px)

    @property
    def neutral_estimate(self) -> dict[str, float]:
        """How far the photo already is from a neutral face (smile, open jaw, raised brows)."""
        b = self.blendshapes
        return {
            "smile": 0.5 * (b.get("mouthSmileLeft", 0.0) + b.get("mouthSmileRight", 0.0)),
            "jaw_open": b.get("jawOpen", 0.0),
            "brow_raise": b.get("browInnerUp", 0.0),
            "blink": 0.5 * (b.get("eyeBlinkLeft", 0.0) + b.get("eyeBlinkRight", 0.0)),
        }


def default_cache_dir() -> Path:
    return cache_root()


def read_photo(photo_path: Path, max_side_px: int | None = None) -> np.ndarray:
    """Decode a photo to BGR uint8, with one-line errors for every way it can be unusable.

    `max_side_px` is the longest side the caller will use: a baseline JPEG at least twice as
    large is decoded already reduced (libjpeg DCT scaling, never below `max_side_px`), so a
    12000x12000 photo costs a 1500x1500 decode instead of 432 MB of pixels.
    """
    import cv2

    path = Path(photo_path)
    if not path.exists():
        raise InputError(f"photo not found: {path}", "check the path")
    if path.is_dir():
        raise InputError(f"photo path is a folder, not an image: {path}", "pick the image file inside it")
    if path.stat().st_size == 0:
        raise InputError(f"photo file is empty: {path}", "upload or export the photo again")
    reduction = check_photo_pixels(path, max_side_px)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    flags[8] = cv2.IMREAD_REDUCED_COLOR_8
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        image = cv2.imdecode(data, flags[reduction])
    except cv2.error as error:  # OpenCV's own size limit, for a format the header check cannot read
        raise InputError(
            f"cannot decode {path.name}: {str(error).strip().splitlines()[-1][:160]}",
            f"use a JPEG, PNG or WebP portrait of at most {MAX_PHOTO_PIXELS // 1_000_000} megapixels",
        ) from None
    if image is None:
        raise InputError(
            f"cannot read {path.name} as an image (corrupt or not a photo)",
            "use a JPEG, PNG or WebP portrait",
        )
    if min(image.shape[:2]) < 64:
        raise InputError(f"photo is too small ({image.shape[1]}x{image.shape[0]} px)", "use at least 256 px")
    if max(image.shape[:2]) > MAX_PHOTO_SIDE_PX:
        scale = MAX_PHOTO_SIDE_PX / max(image.shape[:2])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def check_photo_pixels(path: Path, max_side_px: int | None = None) -> int:
    """Refuse a photo over the file-size or pixel limit from its header alone, before anything
    is decoded; returns how much smaller the decoder should make it (1, 2, 4 or 8).

    Pillow reads only the header (`Image.open` is lazy) for every common format; a file it cannot
    identify is left to OpenCV, whose decoder has its own (much larger) limit. A baseline JPEG
    far larger than `max_side_px` (default `MAX_PHOTO_SIDE_PX`) is decoded reduced, so the
    pixel limit applies to the reduced size; other formats (and progressive JPEGs, whose decoder
    holds every coefficient) are decoded whole, so it applies to the file's own size."""
    path = Path(path)
    size_bytes = path.stat().st_size
    if size_bytes > MAX_PHOTO_FILE_BYTES:
        raise InputError(
            f"{path.name} is {size_bytes / 2**20:.0f} MB, more than the "
            f"{MAX_PHOTO_FILE_BYTES // 2**20} MB a photo may be",
            "export it as a JPEG of at most a few thousand pixels a side",
        )
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with the core dependencies (mediapipe); the decoder still checks
        return 1
    limit_mp = MAX_PHOTO_PIXELS // 1_000_000
    hint = f"scale it down to at most {limit_mp} megapixels (e.g. 8000x6000)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as header:
                width, height = header.size
                baseline_jpeg = header.format == "JPEG" and not header.info.get("progressive")
        except Image.DecompressionBombError:  # Pillow's own refusal, at twice its 89 MP warning
            raise InputError(f"{path.name} is larger than the {limit_mp}-megapixel limit", hint) from None
        except (OSError, ValueError, SyntaxError, struct.error):  # not identified here: OpenCV decides
            return 1
    reduction = 1
    if baseline_jpeg:
        needed_px = max_side_px or MAX_PHOTO_SIDE_PX
        reduction = next((r for r in JPEG_REDUCTIONS if max(width, height) / r >= needed_px), 1)
    if width * height / reduction**2 > MAX_PHOTO_PIXELS:
        raise InputError(
            f"{path.name} is {width}x{height} px ({width * height / 1e6:.0f} megapixels), more than the "
            f"{limit_mp}-megapixel limit",
            hint,
        )
    return reduction


def fit_to_size(image: np.ndarray, size_px: int | None) -> np.ndarray:
    """Scale so the longest side is `size_px` (default: at most 1024) and both sides are even.

    Even sides are required by H.264 with 4:2:0 chroma; one edge pixel is cropped if needed.
    """
    import cv2

    height, width = image.shape[:2]
    longest = max(height, width)
    target = size_px if size_px is not None else min(longest, DEFAULT_MAX_SIDE_PX)
    if size_px is not None and not 64 <= size_px <= 4096:
        raise InputError(f"--size {size_px} is out of range", "use 64..4096 pixels for the longest side")
    if target != longest:
        scale = target / longest
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=interpolation)
    height, width = image.shape[:2]
    return np.ascontiguousarray(image[: height - height % 2, : width - width % 2])


def choose_face(faces: list, photo_name: str, face_index: int | None) -> tuple[object, tuple[str, ...]]:
    """Pick the face to animate: the requested one, or the largest with a note when there are several."""
    if not faces:
        raise InputError(
            f"no face found in {photo_name}",
            "use a photo with one clearly visible, roughly frontal face",
        )
    if face_index is not None:
        if not 0 <= face_index < len(faces):
            raise InputError(
                f"--face {face_index} does not exist: {photo_name} has {len(faces)} face(s)",
                f"use --face 0..{len(faces) - 1} (0 = largest)",
            )
        return faces[face_index], ()
    if len(faces) > 1:
        note = f"{len(faces)} faces found in {photo_name}; animating the largest (choose with --face N, 0 = largest)"
        return faces[0], (note,)
    return faces[0], ()


def prepare_avatar(
    photo_path: Path,
    size_px: int | None = None,
    face_index: int | None = None,
    cache_dir: Path | None = None,
    landmarker=None,
) -> AvatarAssets:
    """Prepare a photo for rendering, reusing the on-disk cache when the same job was seen before."""
    photo_path = Path(photo_path)
    image = read_photo(photo_path, size_px or DEFAULT_MAX_SIDE_PX)
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    cache_file = (
        (cache_dir or default_cache_dir())
        / "avatars"
        / (
            f"{digest[:24]}-{size_px or 'auto'}-{face_index if face_index is not None else 'auto'}-v{CACHE_VERSION}.npz"
        )
    )
    cached = _load_cached(cache_file, digest)
    if cached is not None:
        return cached
    image = fit_to_size(image, size_px)
    if landmarker is None:
        from lipsync.face_landmarker import FaceLandmarker

        with FaceLandmarker() as owned:
            faces = owned.detect(image)
    else:
        faces = landmarker.detect(image)
    face, notes = choose_face(faces, photo_path.name, face_index)
    _, y0, _, y1 = face.box_xyxy
    if y1 - y0 < MIN_FACE_HEIGHT_PX:
        raise InputError(
            f"the face in {photo_path.name} is too small ({y1 - y0:.0f} px tall at this size)",
            f"use a closer photo or a larger --size (the face needs {MIN_FACE_HEIGHT_PX}+ px)",
        )
    assets = AvatarAssets(image, face.landmarks_px, dict(face.blendshapes), digest, notes)
    _store_cached(cache_file, assets)
    return assets


def _load_cached(cache_file: Path, digest: str) -> AvatarAssets | None:
    """Return the cached preparation, or None when absent or unreadable (it is then rebuilt)."""
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("sha256") != digest or meta.get("version") != CACHE_VERSION:
                return None
            return AvatarAssets(
                data["image"].copy(),
                data["landmarks"].copy(),
                meta["blendshapes"],
                digest,
                tuple(meta["notes"]),
            )
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is simply recomputed


def _store_cached(cache_file: Path, assets: AvatarAssets) -> None:
    """Write atomically so a crash never leaves a half-written cache entry behind."""
    meta = {
        "version": CACHE_VERSION,
        "sha256": assets.source_sha256,
        "blendshapes": assets.blendshapes,
        "notes": list(assets.notes),
    }
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open_atomically(cache_file) as handle:
            np.savez(handle, image=assets.image_bgr, landmarks=assets.landmarks_px, meta=json.dumps(meta))
    except OSError:
        return  # caching is an optimisation; a read-only cache dir must not fail the render
