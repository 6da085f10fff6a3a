"""Where the toolkit keeps its caches, and how files are written so a crash never leaves half a file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def cache_root() -> Path:
    """`$AVATAR_CACHE_DIR`, else `~/.cache/talking-avatar`: prepared avatars, reassembled models."""
    root = os.environ.get("AVATAR_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "talking-avatar"


@contextmanager
def open_atomically(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """A file to write that replaces `path` only when the block ends without an error.

    It is written beside the target (same filesystem), flushed, fsynced and renamed over it;
    on any error, Ctrl-C included, it is removed. Readers see the old file or the whole new
    one, never half of it: every cache, model and archive the toolkit writes goes through here.
    """
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode, encoding=encoding) as temp_file:
            yield temp_file
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> Path:
    """Write beside the target, fsync, then rename over it; readers see the old or the new file."""
    with open_atomically(path, "w", encoding="utf-8") as temp_file:
        temp_file.write(text)
    return Path(path)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Persist a folder's entries (new names, renames); a no-op where folders cannot be opened or synced.
    One place for the library's writes and the job runner's staged outputs."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
