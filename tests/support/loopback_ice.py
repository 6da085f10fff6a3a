"""Loopback-only ICE: make aioice offer 127.0.0.1 as its only host candidate.

aioice deliberately leaves 127.0.0.1 out of its host candidates, so two aiortc peers on a machine
whose only other interface is unreachable (tests, CI sandboxes, benchmarks) may never connect.
Both peers must gather on loopback for a pure-loopback connection, so the server process needs the
same patch as the client: `avatar serve` can call `install_from_env()` (opt-in through
`AVATAR_LOOPBACK_ONLY=1`), and tests use the `loopback_only()` context manager, which undoes
the patch when it exits so nothing leaks into other tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

LOOPBACK_ENV_VAR = "AVATAR_LOOPBACK_ONLY"
LOOPBACK_ADDRESSES = ["127.0.0.1"]


def _loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return list(LOOPBACK_ADDRESSES) if use_ipv4 else []


def install_loopback_only() -> None:
    """Patch aioice for the rest of this process (for a server process started only for loopback)."""
    import aioice.ice

    aioice.ice.get_host_addresses = _loopback_addresses


def install_from_env() -> bool:
    """Install the patch when `AVATAR_LOOPBACK_ONLY=1`; True when it did."""
    if os.environ.get(LOOPBACK_ENV_VAR, "") not in ("1", "true", "yes"):
        return False
    install_loopback_only()
    return True


@contextmanager
def loopback_only() -> Iterator[None]:
    """Patch aioice while the block runs, then restore the original address lookup."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_addresses
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original
