"""The livestream's one clock: a tick every 40 ms, whatever the renderer manages.

A platform receiving an RTMP stream times it by its timestamps, and ours come from tick counts
(frame k at k/25 s, audio sample n at n/16000 s). If a tick were skipped or sent late the stream
would run slow against the wall clock and, hours later, behind the viewers' chat. So the pump
sends exactly one tick per 40 ms of wall time: speech ticks carry the frame rendered for their
audio; an idle tick whose picture is not drawn by its deadline shows the previous picture again
(a repeated frame, counted and reported) instead of stretching time. Ticks missed while the
process was stalled are sent at once, with repeated pictures, so the timeline catches up.

The pump paces itself, whatever the sinks are: with no output configured (a rehearsal, the
monitor only) the stream still advances one tick per 40 ms of wall time, never faster.
`clock_status` shows both clocks side by side for the operator.

An idle picture the renderer fails to draw (it raises, or hands back something that is not a
picture) is a repeated frame too, reported once through `on_fault` until a picture works again:
a broken face must not stop the stream's clock.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from avatar.core.clock import Clock
from avatar.playout.av_output import FPS, TICK_S, AVPlayout, PlayoutTick

TickSink = Callable[[PlayoutTick], None]
RunBlocking = Callable[..., Awaitable[Any]]
_DUE_EPSILON_S = 1e-6


class StreamPump:
    """Takes one tick per 40 ms from the playout and hands it, picture resolved, to the sinks."""

    def __init__(
        self,
        playout: AVPlayout,
        clock: Clock,
        *,
        on_tick: TickSink,
        run_blocking: RunBlocking = asyncio.to_thread,
        recent_ticks: int = FPS,
        on_fault: Callable[[Exception], None] | None = None,
    ) -> None:
        self._playout = playout
        self._clock = clock
        self._on_tick = on_tick
        self._run_blocking = run_blocking
        self._origin_s: float | None = None
        self._next_index = playout.next_tick_index
        self._last_frame: np.ndarray | None = None
        self._drawing: asyncio.Task | None = None  # an idle picture still being drawn
        self.recent: deque[PlayoutTick] = deque(maxlen=recent_ticks)  # for monitors (see MonitorPacer)
        self.sent_ticks = 0
        self.repeated_frames = 0
        self.speech_ticks = 0
        self.failed_pictures = 0
        self._on_fault = on_fault
        self._failing = False  # the last idle picture failed (reported once per run of failures)

    @property
    def origin_s(self) -> float | None:
        return self._origin_s

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def stream_time_s(self) -> float:
        return self._next_index * TICK_S

    def clock_status(self) -> dict:
        """Stream time against the wall time since tick 0 was due; `ahead_s` > 0 would mean
        ticks went out early (never by design), < -TICK_S that the pump is catching up."""
        if self._origin_s is None:
            return {"stream_time_s": 0.0, "wall_time_s": 0.0, "ahead_s": 0.0}
        wall_s = self._clock.now_s() - self._origin_s
        return {
            "stream_time_s": round(self.stream_time_s, 3),
            "wall_time_s": round(wall_s, 3),
            "ahead_s": round(self.stream_time_s - TICK_S - wall_s, 3),
        }

    def prime(self, frame: np.ndarray) -> None:
        """A picture to show until the first idle one is drawn, so even tick 0 is on time."""
        self._last_frame = frame

    async def run(self) -> None:
        """Pump until cancelled."""
        self._origin_s = self._clock.now_s() - self._next_index * TICK_S
        try:
            while True:
                await self._clock.sleep_until(self._origin_s + self._next_index * TICK_S)
                due_index = math.floor((self._clock.now_s() - self._origin_s) / TICK_S + _DUE_EPSILON_S)
                while self._next_index <= due_index:
                    behind = self._next_index < due_index  # later ticks are already due: no waiting
                    await self._send(self._playout.next_tick(), wait_for_picture=not behind)
                    self._next_index += 1
        finally:
            if self._drawing is not None:
                self._drawing.cancel()
                await asyncio.gather(self._drawing, return_exceptions=True)

    async def _send(self, tick: PlayoutTick, *, wait_for_picture: bool) -> None:
        frame = await self._picture(tick, wait_for_picture)
        resolved = PlayoutTick(tick.index, tick.audio, frame, tick.turn_id, tick.is_speech)
        self.recent.append(resolved)
        self.sent_ticks += 1
        self.speech_ticks += tick.is_speech
        self._on_tick(resolved)

    async def _picture(self, tick: PlayoutTick, wait: bool) -> np.ndarray:
        if tick.frame_ready or self._last_frame is None:
            # Speech frames are drawn before they are queued; the very first picture is awaited.
            frame = tick.frame if tick.frame_ready else await self._run_blocking(_draw, tick)
            self._last_frame = frame
            return frame
        if self._drawing is None:
            self._drawing = asyncio.ensure_future(self._run_blocking(_draw, tick))
        if wait and not self._drawing.done():
            deadline = asyncio.ensure_future(
                self._clock.sleep_until(self._origin_s + (tick.index + 1) * TICK_S)
            )
            try:
                await asyncio.wait({self._drawing, deadline}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                deadline.cancel()
                await asyncio.gather(deadline, return_exceptions=True)
        if self._drawing.done():
            drawing, self._drawing = self._drawing, None
            frame = self._usable(drawing)
            if frame is not None:
                self._last_frame = frame
                return frame
        self.repeated_frames += 1
        return self._last_frame

    def _usable(self, drawing: asyncio.Future) -> np.ndarray | None:
        """The drawn idle picture, or None (counted, reported) when the renderer failed on it."""
        from avatar.core.errors import EngineFailed
        from avatar.playout.letterbox import checked_frames

        try:
            error = drawing.exception()
            if error is not None:
                raise EngineFailed("lip-sync", f"idle picture: {type(error).__name__}: {error}") from error
            frame = checked_frames([drawing.result()], 1)[0]
        except EngineFailed as failed:
            self.failed_pictures += 1
            if not self._failing and self._on_fault is not None:
                self._on_fault(failed)
            self._failing = True
            return None
        self._failing = False
        return frame


def _draw(tick: PlayoutTick) -> np.ndarray:
    return tick.frame


class MonitorPacer:
    """Lets the paced WebRTC tracks of `avatar.playout.webrtc_tracks` follow the pump as a monitor.

    The tracks ask for tick k at its due time; the pump has sent it a moment before (the monitor
    runs `delay_ticks` behind), so they show exactly what the RTMP output got. A monitor that
    falls out of the pump's short memory jumps to the oldest tick still kept.
    """

    held = False  # the pump's picture already includes any pause

    def __init__(
        self,
        pump: StreamPump,
        *,
        delay_ticks: int = 2,
        on_skip: Callable[[int], None] | None = None,
    ) -> None:
        """`on_skip(ticks)` hears of every jump a monitor that fell behind makes."""
        self._pump = pump
        self._delay_ticks = delay_ticks
        self._on_skip = on_skip
        self.skipped_ticks = 0

    @property
    def clock(self) -> Clock:
        return self._pump.clock

    def join(self) -> int:
        return max(0, self.due_tick_index())

    def due_time_s(self, tick_index: float) -> float:
        origin = self._pump.origin_s
        if origin is None:
            raise RuntimeError("the stream has not started")
        return origin + (tick_index + self._delay_ticks) * TICK_S

    def due_tick_index(self) -> int:
        origin = self._pump.origin_s
        if origin is None:
            return 0
        return math.floor((self.clock.now_s() - origin) / TICK_S + _DUE_EPSILON_S) - self._delay_ticks

    def tick(self, tick_index: int) -> PlayoutTick:
        recent = self._pump.recent
        if not recent:
            raise RuntimeError("the stream has not sent a tick yet")
        oldest = recent[0].index
        if tick_index < oldest:  # a monitor this slow skips ahead; nothing is queued for it
            self.skipped_ticks += oldest - tick_index
            if self._on_skip is not None:
                self._on_skip(oldest - tick_index)
        position = min(max(tick_index, oldest) - oldest, len(recent) - 1)
        return recent[position]
