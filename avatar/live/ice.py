"""Loopback-only ICE: make aioice offer 127.0.0.1 as its only host candidate.

aioice deliberately leaves 127.0.0.1 out of its host candidates, so two WebRTC peers on a machine
whose only other interface is unreachable (a sandbox, a CI runner, a laptop offline, a kiosk
whose browser runs on the same machine) may never connect. `AVATAR_LOOPBACK_ONLY=1` tells
`avatar serve` / `avatar live` to gather on loopback only: for same-machine use, never for
remote viewers. Both peers must gather on loopback, so a client in another process needs the
same patch.
"""

from __future__ import annotations

import os

LOOPBACK_ENV_VAR = "AVATAR_LOOPBACK_ONLY"
LOOPBACK_ADDRESSES = ("127.0.0.1",)


def loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Stands in for aioice.ice.get_host_addresses."""
    return list(LOOPBACK_ADDRESSES) if use_ipv4 else []


def install_loopback_only() -> None:
    """Patch aioice for the rest of this process (a server started only for loopback)."""
    import aioice.ice

    aioice.ice.get_host_addresses = loopback_addresses


def loopback_requested() -> bool:
    return os.environ.get(LOOPBACK_ENV_VAR, "") in ("1", "true", "yes")


def install_from_env() -> bool:
    """Install the patch when `AVATAR_LOOPBACK_ONLY=1`; True when it did."""
    if not loopback_requested():
        return False
    install_loopback_only()
    return True
