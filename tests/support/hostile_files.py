"""Hostile files for tests and the probe (issue 18): a PNG that declares a huge size in a few
hundred bytes, avatar archives with chosen members, and a zip marked as encrypted."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width`x`height` but holds one short row: a few hundred bytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 25)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def avatar_json(name: str = "Zed") -> bytes:
    from avatar.library.records import AvatarSettings

    settings = AvatarSettings(name, "en", "", "", None, "2026-01-01T00:00:00Z")
    return settings.to_json().encode()


def avatar_zip(path: Path, members: dict, *, settings: bool = True) -> Path:
    """members: name -> bytes, or name -> (bytes, ZipInfo attributes to set)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        if settings:
            archive.writestr("avatar.json", avatar_json())
        for name, content in members.items():
            data, attributes = content if isinstance(content, tuple) else (content, {})
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            for key, value in attributes.items():
                setattr(info, key, value)
            archive.writestr(info, data)
    return path


def mark_encrypted(path: Path) -> Path:
    """Set the 'encrypted' flag (bit 0) in every local and central header, as a password zip has."""
    data = bytearray(path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start != -1:
            data[start + flag_offset] |= 0x01
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))
    return path
