"""The operator page's monitor: WebRTC peers that receive exactly what goes out.

Each monitor paces its own tracks from the stream's pump (avatar.playout.stream_clock.MonitorPacer),
so a slow monitor never slows the outputs and has no queue to grow: it reads the pump's last second
of ticks and, when it falls further behind, skips ahead (a `monitor_skipped` event says so, at most
every `SKIP_EVENT_INTERVAL_S`). At most MAX_MONITORS at a time; each is closed when its connection
fails or closes, and all of them on shutdown.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_MONITORS = 4
SKIP_EVENT_INTERVAL_S = 5.0


class MonitorsFull(Exception):
    """Every monitor slot is taken (HTTP 503)."""


@dataclass(eq=False)  # identity: kept in a set while connected
class _Monitor:
    pc: Any
    tracks: tuple = field(default_factory=tuple)
    monitor_id: int = 0
    unreported_ticks: int = 0
    reported_at_s: float = float("-inf")


class MonitorPeers:
    """The open monitor connections; every method runs on the event loop."""

    def __init__(
        self,
        max_monitors: int = MAX_MONITORS,
        connect_timeout_s: float | None = None,
        on_event: Callable[[dict], None] | None = None,
    ) -> None:
        from avatar.playout.offers import CONNECT_TIMEOUT_S

        self.max_monitors = max_monitors
        self._on_event = on_event or (lambda event: None)
        self._ids = itertools.count(1)
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
        monitor = _Monitor(pc, monitor_id=next(self._ids))
        pacer = MonitorPacer(pump, on_skip=lambda ticks: self._skipped(monitor, ticks, pump.clock.now_s()))
        monitor.tracks = (PacedAudioTrack(pacer), PacedVideoTrack(pacer, draw_idle_in_thread=True))
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

    def _skipped(self, monitor: _Monitor, ticks: int, now_s: float) -> None:
        """Count a slow monitor's jump; tell the operator at most every few seconds."""
        monitor.unreported_ticks += ticks
        if now_s - monitor.reported_at_s >= SKIP_EVENT_INTERVAL_S:
            self._on_event(
                {"type": "monitor_skipped", "monitor": monitor.monitor_id, "ticks": monitor.unreported_ticks}
            )
            monitor.unreported_ticks, monitor.reported_at_s = 0, now_s

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
