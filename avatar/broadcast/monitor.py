"""The operator page's monitor: WebRTC peers that receive exactly what goes out.

Each monitor paces its own tracks from the stream's pump (avatar.playout.stream_clock.MonitorPacer),
so a slow monitor never slows the outputs. At most MAX_MONITORS at a time; each is closed when its
connection fails or closes, and all of them on shutdown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

MAX_MONITORS = 4


class MonitorsFull(Exception):
    """Every monitor slot is taken (HTTP 503)."""


@dataclass(eq=False)  # identity: kept in a set while connected
class _Monitor:
    pc: Any
    tracks: tuple = field(default_factory=tuple)


class MonitorPeers:
    """The open monitor connections; every method runs on the event loop."""

    def __init__(self, max_monitors: int = MAX_MONITORS, connect_timeout_s: float | None = None) -> None:
        from avatar.playout.offers import CONNECT_TIMEOUT_S

        self.max_monitors = max_monitors
        self.connect_timeout_s = CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s
        self._monitors: set[_Monitor] = set()
        self._watchdogs: set[asyncio.Task] = set()  # one per monitor until it connects or is closed

    @property
    def full(self) -> bool:
        return len(self._monitors) >= self.max_monitors

    @property
    def open_count(self) -> int:
        return len(self._monitors)

    async def answer(self, offer_sdp: str, pump, ice_servers: tuple[str, ...] = ()) -> dict:
        """Open a monitor for a browser's (checked) offer; returns the answer ({"sdp", "type"}).

        Raises MonitorsFull, or OfferError for an offer aiortc cannot use; nothing is left open
        then. A monitor that does not connect within `connect_timeout_s` is closed again."""
        from avatar.playout.offers import answer_offer, close_unless_connected, peer_connection
        from avatar.playout.stream_clock import MonitorPacer
        from avatar.playout.webrtc_tracks import PacedAudioTrack, PacedVideoTrack

        if self.full:  # checked with no await before the slot is taken
            raise MonitorsFull(f"{self.max_monitors} monitors are open already; close one and try again")
        pc = peer_connection(ice_servers)
        pacer = MonitorPacer(pump)
        monitor = _Monitor(pc, (PacedAudioTrack(pacer), PacedVideoTrack(pacer, draw_idle_in_thread=True)))
        self._monitors.add(monitor)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop(monitor)

        try:
            answer = await answer_offer(pc, offer_sdp, monitor.tracks)
        except BaseException:
            await self._drop(monitor)
            raise
        watchdog = asyncio.get_running_loop().create_task(
            close_unless_connected(pc, lambda: self._drop(monitor), self.connect_timeout_s)
        )
        self._watchdogs.add(watchdog)
        watchdog.add_done_callback(self._watchdogs.discard)
        return {"sdp": answer.sdp, "type": answer.type}

    async def _drop(self, monitor: _Monitor) -> None:
        """Give the slot back and close the peer (idempotent)."""
        from avatar.playout.offers import close_quietly

        self._monitors.discard(monitor)
        await close_quietly(monitor.pc)

    async def close(self) -> None:
        watchdogs = list(self._watchdogs)
        for task in watchdogs:
            task.cancel()
        await asyncio.gather(*watchdogs, return_exceptions=True)
        monitors, self._monitors = list(self._monitors), set()
        await asyncio.gather(*(monitor.pc.close() for monitor in monitors), return_exceptions=True)
