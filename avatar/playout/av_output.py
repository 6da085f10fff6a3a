"""The A/V output core: rendered speech waits here until the transport plays it, one tick at a time.

Audio and video are paired by construction. The output clock runs in ticks of 1/FPS seconds;
tick k carries video frame k and exactly the audio samples [k*640, (k+1)*640) at 16 kHz. A
renderer hands over `AVSegment`s that already respect this (one frame per 640 samples), the queue
stores them whole, and the playout hands out one (audio, frame) pair per tick. There is no
separate audio path, so nothing can make audio run ahead of the face.

Barge-in is a `flush`: everything queued goes, and segments of the interrupted turn that the
renderer is still producing are dropped when they arrive. The playout records what each turn
actually played, so the conversation history can keep only what the user heard.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

AUDIO_RATE_HZ = 16000
FPS = 25
SAMPLES_PER_FRAME = AUDIO_RATE_HZ // FPS  # 640: frame k covers samples [k*640, (k+1)*640)
TICK_S = 1.0 / FPS

IdleFrameSource = Callable[[int], np.ndarray]
"""Gives the idle frame (blinks, breathing) for an output tick index."""


@dataclass(frozen=True, eq=False)
class AVSegment:
    """Speech of one turn with the frames that show it: `len(audio) == 640 * len(frames)`.

    Checked on construction, so a renderer that breaks the pairing rule fails where it is wrong
    rather than as drifting lips minutes later.
    """

    turn_id: int
    audio: np.ndarray
    frames: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        frames = tuple(self.frames)  # any sequence is accepted; stored as a tuple so it stays put
        _check_segment(self.audio, frames)
        object.__setattr__(self, "frames", frames)

    @property
    def tick_count(self) -> int:
        return len(self.frames)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / AUDIO_RATE_HZ


def _check_segment(audio: np.ndarray, frames: tuple[np.ndarray, ...]) -> None:
    if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
        raise ValueError("AVSegment audio must be a 1-D float32 array (mono, 16 kHz)")
    if not frames:
        raise ValueError("AVSegment needs at least one frame")
    if len(audio) != SAMPLES_PER_FRAME * len(frames):
        raise ValueError(
            f"AVSegment audio has {len(audio)} samples for {len(frames)} frames; "
            f"each frame needs exactly {SAMPLES_PER_FRAME}"
        )
    first_shape = frames[0].shape
    for frame in frames:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
            raise ValueError("AVSegment frames must be HxWx3 uint8 BGR arrays")
        if frame.shape[2] != 3 or frame.shape != first_shape:
            raise ValueError(f"AVSegment frames must all be HxWx3 of one size, got {frame.shape}")


@dataclass(frozen=True)
class QueuedTick:
    """One tick's worth of a queued segment."""

    turn_id: int
    audio: np.ndarray  # float32, SAMPLES_PER_FRAME samples
    frame: np.ndarray  # HxWx3 uint8 BGR


class AVOutputQueue:
    """Bounded hand-over from the renderer to the playout, measured in ticks of speech.

    The bound is in ticks, not segments, so it caps how far rendering may run ahead of playback
    (and so how much a barge-in has to throw away) whatever the segment size. A segment larger
    than the whole bound is still accepted once the queue is empty, so no size can deadlock.
    """

    def __init__(self, max_queued_ticks: int = 2 * FPS) -> None:
        if max_queued_ticks < 1:
            raise ValueError("max_queued_ticks must be at least 1")
        self._max_queued_ticks = max_queued_ticks
        self._segments: deque[AVSegment] = deque()
        self._head_offset_ticks = 0  # ticks already taken from the first segment
        self._queued_ticks = 0
        self._active_turn = 0
        self._space_freed = asyncio.Event()

    @property
    def active_turn(self) -> int:
        """Segments of older turns are stale: dropped on `put` and on dequeue."""
        return self._active_turn

    @property
    def queued_ticks(self) -> int:
        return self._queued_ticks

    def begin_turn(self, turn_id: int) -> None:
        """Make `turn_id` the current turn; anything queued from earlier turns becomes stale."""
        if turn_id < self._active_turn:
            raise ValueError(f"turn {turn_id} is older than the active turn {self._active_turn}")
        self._active_turn = turn_id
        self._drop_stale_head()

    async def put(self, segment: AVSegment) -> bool:
        """Queue a segment, waiting while the queue is full; False when it was stale and dropped."""
        while True:
            if segment.turn_id < self._active_turn:
                return False
            if not self._segments or self._queued_ticks + segment.tick_count <= self._max_queued_ticks:
                break
            self._space_freed.clear()
            await self._space_freed.wait()
        self._segments.append(segment)
        self._queued_ticks += segment.tick_count
        return True

    def flush(self, turn_id: int | None = None) -> int:
        """Drop everything queued (barge-in) and return how many ticks were dropped.

        With `turn_id`, that turn and every earlier one also become stale, so segments its
        renderer is still producing are dropped instead of playing after the interruption.
        """
        dropped_ticks = self._queued_ticks
        self._segments.clear()
        self._head_offset_ticks = 0
        self._queued_ticks = 0
        if turn_id is not None:
            self._active_turn = max(self._active_turn, turn_id + 1)
        self._space_freed.set()
        return dropped_ticks

    def take_tick(self) -> QueuedTick | None:
        """The next tick of the current turn's speech, or None when nothing is queued."""
        self._drop_stale_head()
        if not self._segments:
            return None
        segment = self._segments[0]
        offset = self._head_offset_ticks
        tick = QueuedTick(
            turn_id=segment.turn_id,
            audio=segment.audio[offset * SAMPLES_PER_FRAME : (offset + 1) * SAMPLES_PER_FRAME],
            frame=segment.frames[offset],
        )
        self._head_offset_ticks += 1
        self._queued_ticks -= 1
        if self._head_offset_ticks == segment.tick_count:
            self._segments.popleft()
            self._head_offset_ticks = 0
        self._space_freed.set()
        return tick

    def _drop_stale_head(self) -> None:
        dropped_any = False
        while self._segments and self._segments[0].turn_id < self._active_turn:
            segment = self._segments.popleft()
            self._queued_ticks -= segment.tick_count - self._head_offset_ticks
            self._head_offset_ticks = 0
            dropped_any = True
        # Stale segments behind a current one are left for the next take; they cannot play.
        if dropped_any:
            self._space_freed.set()


class PlayoutTick:
    """What goes out at output tick `index`: 40 ms of audio and the frame shown meanwhile.

    An idle tick's frame is drawn on first use, not when the tick is taken: the audio track takes
    ticks too and never needs the picture, and the video track can draw it in a worker thread
    (`frame_ready` / `frame`), keeping a few milliseconds of rendering per tick and session off
    the event loop that also carries every session's packets.
    """

    __slots__ = ("_frame", "_lock", "_render", "audio", "index", "is_speech", "turn_id")

    def __init__(
        self,
        index: int,
        audio: np.ndarray,
        frame: np.ndarray | Callable[[], np.ndarray],
        turn_id: int | None,
        is_speech: bool,
    ) -> None:
        self.index = index
        self.audio = audio  # float32, SAMPLES_PER_FRAME samples at AUDIO_RATE_HZ
        self.turn_id = turn_id  # None while idle
        self.is_speech = is_speech  # True for a queued turn's tick, False for silence + idle frame
        if callable(frame):
            self._frame, self._render = None, frame
        else:
            self._frame, self._render = frame, None
        self._lock = threading.Lock()

    @property
    def frame_ready(self) -> bool:
        return self._frame is not None

    @property
    def frame(self) -> np.ndarray:
        """HxWx3 uint8 BGR; drawn once, on first access, from any thread."""
        if self._frame is None:
            with self._lock:
                if self._frame is None:
                    assert self._render is not None
                    self._frame, self._render = self._render(), None
        return self._frame

    def __repr__(self) -> str:
        return f"PlayoutTick(index={self.index}, turn_id={self.turn_id}, is_speech={self.is_speech})"


class AVPlayout:
    """Hands out exactly one audio+frame pair per tick and remembers what each turn played."""

    def __init__(self, queue: AVOutputQueue, idle_source: IdleFrameSource) -> None:
        self._queue = queue
        self._idle_source = idle_source
        self._next_index = 0
        self._silence = np.zeros(SAMPLES_PER_FRAME, dtype=np.float32)
        self._silence.flags.writeable = False
        self._played_ticks_by_turn: dict[int, int] = {}
        self._held = False

    @property
    def next_tick_index(self) -> int:
        return self._next_index

    @property
    def held(self) -> bool:
        return self._held

    def hold(self, held: bool) -> None:
        """Pause (True) or resume (False) speech: while held, ticks are silence and idle frames
        and the queue is left untouched, so resuming continues exactly where it stopped."""
        self._held = held

    def next_tick(self) -> PlayoutTick:
        index = self._next_index
        self._next_index += 1
        queued = None if self._held else self._queue.take_tick()
        if queued is None:
            return PlayoutTick(index, self._silence, functools.partial(self._idle_source, index), None, False)
        self._played_ticks_by_turn[queued.turn_id] = self._played_ticks_by_turn.get(queued.turn_id, 0) + 1
        return PlayoutTick(index, queued.audio, queued.frame, queued.turn_id, True)

    def played_ticks(self, turn_id: int) -> int:
        """How many ticks of `turn_id` have been handed to the transport."""
        return self._played_ticks_by_turn.get(turn_id, 0)

    def played_samples(self, turn_id: int) -> int:
        return self.played_ticks(turn_id) * SAMPLES_PER_FRAME

    def played_duration_s(self, turn_id: int) -> float:
        return self.played_ticks(turn_id) * TICK_S
