"""Reading a user's text file (script, knowledge base, blocklist) with one clear error per failure.

Users hand us files saved by all sorts of editors: a BOM is accepted, anything that is not UTF-8
is refused with the fix, and a missing file, a folder or an unreadable file each say so, naming
the kind of file (`what`) and its path.
"""

from __future__ import annotations

from pathlib import Path

from avatar.core.errors import InputError


def read_utf8_text(
    path: str | Path,
    what: str,
    *,
    empty_hint: str | None = None,
    max_bytes: int | None = None,
    too_long_hint: str = "",
) -> str:
    """The file's text. `empty_hint` given: a blank file is an error with that hint. `max_bytes`
    given: a larger file is refused before it is read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}", "check the path")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder", "give the file inside it")
    try:
        size_bytes = path.stat().st_size
        if max_bytes is not None and size_bytes > max_bytes:
            raise InputError(f"{what} {path} is {size_bytes:,} bytes, too long for a {what}", too_long_hint)
        data = path.read_bytes()
    except OSError as error:
        raise InputError(
            f"cannot read {what} {path}: {error.strerror or error}", "check the file's permissions"
        ) from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{what} {path} is not UTF-8 text", "save it as UTF-8") from error
    if empty_hint is not None and not text.strip():
        raise InputError(f"{what} {path} is empty", empty_hint)
    return text
