"""The files of an avatar: checked inputs, durable writes, the thumbnail and the voice profile.

Every write is flushed and fsynced before the folder that holds it is renamed into place, so a
crash never publishes a half-written avatar (see avatar.library.store).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from avatar.core.errors import InputError

THUMBNAIL_PX = 160
CHECK_SIZE_PX = 512  # photos are checked (and thumbnails cut) at the live server's default size
MAX_INPUT_FILE_BYTES = 64 * 1024 * 1024  # any one uploaded file; keeps exports importable
SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


def input_file(path: Path, what: str, max_bytes: int = MAX_INPUT_FILE_BYTES) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{what} not found: {path}", "check the path")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}", "pass a file, not a folder")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{what} file is empty: {path}", "upload or export it again")
    if size > max_bytes:
        raise InputError(
            f"{what} file is too large ({size / 2**20:.0f} MB): {path}",
            f"use a file under {max_bytes // 2**20} MB",
        )
    return path


def profile_voice_sample(sample: Path, name: str):
    """Check the sample's limits, then analyse it: both raise InputError before anything is saved."""
    from avatar.library.checks import check_voice_sample
    from voices.voice_profile import build_voice_profile

    check = check_voice_sample(sample, transcribe=False)
    return build_voice_profile(sample, name=name), list(check.warnings)


def profile_json(profile) -> str:
    return json.dumps(profile.to_dict(), indent=2, ensure_ascii=False) + "\n"


def check_knowledge(path: Path) -> None:
    from avatar.llm.knowledge import parse_knowledge_file

    try:
        parse_knowledge_file(path)
    except InputError as error:
        if error.hint:
            raise
        raise InputError(
            error.message, "use a UTF-8 .md, .txt or .faq file with Q:/A: lines, headings or paragraphs"
        ) from error


def photo_suffix(photo: Path) -> str:
    """The real format from the file's magic bytes (uploads often arrive as 'image' or '.tmp')."""
    with photo.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head.startswith(b"BM"):
        return ".bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return file_suffix(photo, ".img")


def file_suffix(path: Path, fallback: str) -> str:
    suffix = path.suffix.lower()
    return suffix if SAFE_SUFFIX.match(suffix) else fallback


def write_thumbnail(path: Path, photo: Path, face_box_xyxy) -> None:
    """A square crop centred on the face (1.8 face heights wide), 160 px, PNG."""
    import cv2

    from lipsync.avatar_assets import fit_to_size, read_photo

    image = fit_to_size(read_photo(photo, CHECK_SIZE_PX), CHECK_SIZE_PX)  # the image the face box refers to
    height, width = image.shape[:2]
    x0, y0, x1, y1 = face_box_xyxy
    side = int(min(max(1.8 * max(x1 - x0, y1 - y0), 16), height, width))
    left = int(min(max(round((x0 + x1) / 2 - side / 2), 0), width - side))
    top = int(min(max(round((y0 + y1) / 2 - side / 2), 0), height - side))
    crop = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > THUMBNAIL_PX else cv2.INTER_CUBIC
    thumbnail = cv2.resize(crop, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=interpolation)
    ok, encoded = cv2.imencode(".png", thumbnail)
    if not ok:
        raise InputError("cannot encode the thumbnail")
    write_synced(path, encoded.tobytes())


def write_synced(path: Path, data: str | bytes, overwrite: bool = False) -> None:
    """Write and fsync: the folder rename that follows must never publish unflushed data."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with path.open("wb" if overwrite else "xb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def copy_synced(source: Path, target: Path) -> None:
    with source.open("rb") as reader, target.open("xb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fsync(writer.fileno())
