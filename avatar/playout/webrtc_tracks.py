"""aiortc tracks that send one `AVPlayout` as paced audio and video on one shared clock.

Both tracks read the same `TickPacer`. Tick k is due at origin + k/FPS on the injected clock and
its content (speech or idle) is taken from the playout exactly once, by whichever track reaches
it first; the other track gets the same tick from a short cache. So the frame sent at tick k
is always the one rendered for the audio sent at tick k, and timestamps come from tick indices,
not from wall time: audio pts = samples at 16 kHz, video pts = tick * 3600 on the 90 kHz clock.

Audio goes out as 20 ms s16 mono frames at 16 kHz. aiortc's encoders (Opus, PCMU/PCMA, G.722)
each run their own resampler to the codec rate, so resampling here would only do it twice.
A late audio consumer catches up without skipping (continuity matters more to the ear); a late
video consumer jumps to the tick that is due now (pts skip ahead, never back).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from avatar.core.clock import Clock
from avatar.playout.av_output import AUDIO_RATE_HZ, FPS, SAMPLES_PER_FRAME, TICK_S, AVPlayout, PlayoutTick

log = logging.getLogger("avatar.playout")

AUDIO_PACKET_S = 0.020
AUDIO_SAMPLES_PER_PACKET = int(AUDIO_RATE_HZ * AUDIO_PACKET_S)  # 320
AUDIO_PACKETS_PER_TICK = SAMPLES_PER_FRAME // AUDIO_SAMPLES_PER_PACKET  # 2
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE_HZ)
VIDEO_CLOCK_RATE_HZ = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE_HZ)
VIDEO_PTS_PER_TICK = VIDEO_CLOCK_RATE_HZ // FPS  # 3600

_DUE_EPSILON_S = 1e-6  # float slack so a tick due "now" is not read as one tick earlier


class TickPacer:
    """One clock origin and one tick sequence shared by the audio and the video track.

    The pacer must be the playout's only consumer. The origin is set when the first track asks
    for its first tick, with the playout's next tick due at once; a track that starts later
    joins at the tick due at that moment. The cache keeps the last `cached_ticks` ticks, enough
    for one track to lag the other by that much; a track further behind jumps forward.
    """

    def __init__(self, playout: AVPlayout, clock: Clock, *, cached_ticks: int = FPS) -> None:
        self._playout = playout
        self._clock = clock
        self._origin_s: float | None = None
        self._cache: deque[PlayoutTick] = deque(maxlen=cached_ticks)

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def held(self) -> bool:
        """The playout is paused for a possible barge-in (see `AVPlayout.hold`)."""
        return self._playout.held

    def join(self) -> int:
        """The first tick a newly started track should send (starts the clock on first call)."""
        if self._origin_s is None:
            # Continue the playout's own tick count, so tracks made for an existing playout (after
            # a renegotiation, say) carry on its pts instead of starting again from zero.
            first_index = self._playout.next_tick_index
            self._origin_s = self._clock.now_s() - first_index * TICK_S
            return first_index
        return self.due_tick_index()

    def due_time_s(self, tick_index: float) -> float:
        """When tick `tick_index` (fractions allowed, for audio packets inside a tick) is due."""
        if self._origin_s is None:
            raise RuntimeError("TickPacer.join() must be called before asking for due times")
        return self._origin_s + tick_index * TICK_S

    def due_tick_index(self) -> int:
        """The latest tick whose time has come."""
        if self._origin_s is None:
            raise RuntimeError("TickPacer.join() must be called before asking for due ticks")
        return math.floor((self._clock.now_s() - self._origin_s) / TICK_S + _DUE_EPSILON_S)

    def tick(self, tick_index: int) -> PlayoutTick:
        """Tick `tick_index`, or the oldest one still cached when the caller fell that far behind."""
        while self._playout.next_tick_index <= tick_index:
            self._cache.append(self._playout.next_tick())
        oldest_index = self._cache[0].index
        return self._cache[max(tick_index, oldest_index) - oldest_index]


class PacedAudioTrack(MediaStreamTrack):
    """20 ms s16 mono audio frames at 16 kHz, two per tick, pts counted in samples."""

    kind = "audio"

    def __init__(self, pacer: TickPacer) -> None:
        super().__init__()
        self._pacer = pacer
        self._next_packet_index: int | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._next_packet_index is None:
            self._next_packet_index = self._pacer.join() * AUDIO_PACKETS_PER_TICK
        packet_index = self._next_packet_index
        await self._pacer.clock.sleep_until(self._pacer.due_time_s(packet_index / AUDIO_PACKETS_PER_TICK))
        if self.readyState != "live":
            raise MediaStreamError

        tick = self._pacer.tick(packet_index // AUDIO_PACKETS_PER_TICK)
        if tick.index != packet_index // AUDIO_PACKETS_PER_TICK:  # fell out of the cache: jump
            packet_index = tick.index * AUDIO_PACKETS_PER_TICK
        part = packet_index % AUDIO_PACKETS_PER_TICK
        samples = tick.audio[part * AUDIO_SAMPLES_PER_PACKET : (part + 1) * AUDIO_SAMPLES_PER_PACKET]
        if part > 0 and tick.is_speech and self._pacer.held:
            # Paused mid-tick for a possible barge-in: the rest of this tick's speech is not sent
            # (its frame already went out). Silence starts up to 20 ms sooner than at the next tick.
            samples = np.zeros_like(samples)
        self._next_packet_index = packet_index + 1
        return _audio_frame(samples, pts=packet_index * AUDIO_SAMPLES_PER_PACKET)


class PacedVideoTrack(MediaStreamTrack):
    """One bgr24 frame per tick (25 fps), pts = tick * 3600 on the 90 kHz RTP video clock."""

    kind = "video"

    def __init__(self, pacer: TickPacer, *, draw_idle_in_thread: bool = False) -> None:
        """`draw_idle_in_thread`: draw idle frames in a worker thread (servers: it keeps the event
        loop free for every session's packets); off for virtual-time tests, which a real thread
        would stall."""
        super().__init__()
        self._pacer = pacer
        self._next_tick_index: int | None = None
        self._draw_idle_in_thread = draw_idle_in_thread
        self._last_picture: tuple[np.ndarray, np.ndarray] | None = None  # (bgr, its yuv420p)
        self.failed_pictures = 0  # idle pictures the renderer failed on (the last one was shown again)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._next_tick_index is None:
            self._next_tick_index = self._pacer.join()
        await self._pacer.clock.sleep_until(self._pacer.due_time_s(self._next_tick_index))
        if self.readyState != "live":
            raise MediaStreamError

        # When late, show the tick due now rather than replaying the backlog in a burst.
        tick = self._pacer.tick(max(self._next_tick_index, self._pacer.due_tick_index()))
        self._next_tick_index = tick.index + 1
        if self._draw_idle_in_thread:
            yuv = await asyncio.to_thread(self._yuv420p, tick)
        else:
            yuv = self._yuv420p(tick)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = tick.index * VIDEO_PTS_PER_TICK
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _yuv420p(self, tick: PlayoutTick) -> np.ndarray:
        """The tick's picture as I420, the encoders' input format (aiortc would convert each bgr24
        frame with swscale, the largest cost per frame after the encoder itself). OpenCV's
        conversion is several times faster, and an idle frame shown again is not converted again."""
        import cv2

        last = self._last_picture
        try:
            bgr = tick.frame  # draws an idle frame if it is not drawn yet
            if not (
                isinstance(bgr, np.ndarray) and bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3
            ):
                raise TypeError(
                    f"the renderer returned {getattr(bgr, 'dtype', type(bgr).__name__)} {getattr(bgr, 'shape', '')}"
                )
        except Exception as error:
            # An exception here would end aiortc's sender: the session's video would freeze for
            # good. A broken idle picture shows the last one again (speech frames are checked
            # where they are drawn, `checked_frames`).
            if last is None:
                raise
            self.failed_pictures += 1
            if self.failed_pictures == 1 or self.failed_pictures % (60 * FPS) == 0:
                log.error(
                    "idle picture failed (%d so far), the last one is shown again: %s",
                    self.failed_pictures,
                    error,
                )
            return last[1]
        if last is not None and last[0] is bgr:
            return last[1]
        yuv = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420)
        self._last_picture = (bgr, yuv)
        return yuv


def _audio_frame(samples: np.ndarray, *, pts: int) -> av.AudioFrame:
    pcm_s16 = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    frame = av.AudioFrame.from_ndarray(pcm_s16.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = AUDIO_RATE_HZ
    frame.pts = pts
    frame.time_base = AUDIO_TIME_BASE
    return frame


def paced_tracks(
    playout: AVPlayout, clock: Clock, *, draw_idle_in_thread: bool = False
) -> tuple[PacedAudioTrack, PacedVideoTrack]:
    """The audio and video track of one session, sharing one pacer (and so one clock origin)."""
    pacer = TickPacer(playout, clock)
    return PacedAudioTrack(pacer), PacedVideoTrack(pacer, draw_idle_in_thread=draw_idle_in_thread)
