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


@dataclass(eq=False)  # identity: kept in a set while connected
class _Monitor:
    pc: Any
    tracks: tuple = field(default_factory=tuple)


class MonitorPeers:
    """The open monitor connections; every method runs on the event loop."""

    def __init__(self, max_monitors: int = MAX_MONITORS) -> None:
        self.max_monitors = max_monitors
        self._monitors: set[_Monitor] = set()

    @property
    def full(self) -> bool:
        return len(self._monitors) >= self.max_monitors

    async def answer(self, offer_sdp: str, pump) -> dict:
        """Open a monitor for a browser's offer; returns the answer ({"sdp", "type"}).
        Raises ValueError for an offer aiortc cannot use (nothing is left open then)."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from avatar.playout.stream_clock import MonitorPacer
        from avatar.playout.webrtc_tracks import PacedAudioTrack, PacedVideoTrack

        pc = RTCPeerConnection()
        pacer = MonitorPacer(pump)
        monitor = _Monitor(pc, (PacedAudioTrack(pacer), PacedVideoTrack(pacer, draw_idle_in_thread=True)))
        self._monitors.add(monitor)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and monitor in self._monitors:
                self._monitors.discard(monitor)
                await pc.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            for track in monitor.tracks:
                pc.addTrack(track)
            await pc.setLocalDescription(await pc.createAnswer())
        except ValueError:
            self._monitors.discard(monitor)
            await pc.close()
            raise
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def close(self) -> None:
        monitors, self._monitors = list(self._monitors), set()
        await asyncio.gather(*(monitor.pc.close() for monitor in monitors), return_exceptions=True)
