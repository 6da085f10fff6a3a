"""Multipart files saved to a job's (or an avatar's) own folder, under the per-request size limit.

Files keep a cleaned version of the client's file name, so a validation message names the file
the user sent ("cannot read me.png as an image") and never a server path: `public_message`
strips the upload folder from any message that mentions it.
"""

from __future__ import annotations

import re
from pathlib import Path

from avatar.api.edge import ApiError, limit_mb

CHUNK_BYTES = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str | None, fallback: str) -> str:
    """A file name without folders or odd characters; the extension kept (PIL/ffmpeg sniff anyway)."""
    name = _UNSAFE.sub("_", Path(filename or "").name).strip("._")[:80]
    return name or fallback


class UploadBudget:
    """Bytes left for one request's files together."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0

    def take(self, count: int) -> None:
        self.used_bytes += count
        if self.used_bytes > self.max_bytes:
            raise ApiError(
                413, "payload_too_large", f"the uploaded files exceed the {limit_mb(self.max_bytes)} limit"
            )


def save_upload(upload, folder: Path, fallback: str, budget: UploadBudget) -> Path:
    """Copy an UploadFile (already spooled by Starlette) into `folder`; 400 for an empty part."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_name(upload.filename, fallback)
    if target.exists():
        target = folder / f"{fallback}-{target.name}"
    upload.file.seek(0)
    with open(target, "wb") as out:
        while chunk := upload.file.read(CHUNK_BYTES):
            budget.take(len(chunk))
            out.write(chunk)
    if target.stat().st_size == 0:
        raise ApiError(
            400, "invalid_input", f"the {fallback} file {safe_name(upload.filename, fallback)} is empty"
        )
    return target


def public_message(message: str, folder: Path) -> str:
    """A message without the server's upload folder in it."""
    return message.replace(f"{folder}/", "").replace(str(folder), "")
