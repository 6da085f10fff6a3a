"""Loopback-only ICE for one test: the runtime patch (avatar.live.ice), undone on exit.

A server process started by a test gets the same patch through `AVATAR_LOOPBACK_ONLY=1` (or by
calling `install_loopback_only()` before it serves).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from avatar.live.ice import loopback_addresses


@contextmanager
def loopback_only() -> Iterator[None]:
    """Patch aioice while the block runs, then restore the original address lookup, so nothing
    leaks into other tests."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = loopback_addresses
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original
