"""The always-on livestream avatar: what to say next, rendered a little ahead, on one clock.

Three tasks run for the whole broadcast:

* the **render loop** takes the next item (interjection > comment > script, see
  `avatar.broadcast.items`), answers a comment through the LLM or the offline answerer, speaks each
  sentence with TTS and draws its frames into the bounded `AVOutputQueue` (a few seconds ahead);
* the **pump** (`avatar.playout.stream_clock.StreamPump`) takes one tick per 40 ms from the playout and
  hands it to every output (RTMP, recording, monitor); items' start and end events are stamped
  with the exact stream time of their first and after-last tick;
* a **status** task publishes the status once a second for operator panels.

Everything the avatar says in one stretch shares one playout turn (an "epoch"); items are
spans of ticks inside it. Skip, interrupt and avatar changes end the epoch: the queue is flushed
down to the tick being played, the render is cancelled, and items not yet heard go back to the
front of their lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from avatar.broadcast.answers import ANSWER_TIMEOUT_S, answer_comment, spoken_answer
from avatar.broadcast.items import HostItem, ItemQueue
from avatar.broadcast.speaking import HostSpeaking
from avatar.core.clock import Clock
from avatar.core.deadlines import StageTimeouts
from avatar.core.errors import EngineFailed
from avatar.core.text_script import parse_script
from avatar.core.types import EMOTIONS, TextSegment
from avatar.playout.av_output import (
    FPS,
    TICK_S,
    AVOutputQueue,
    AVPlayout,
    AVSegment,
    PlayoutTick,
)
from avatar.playout.letterbox import letterbox
from avatar.playout.stream_clock import StreamPump

log = logging.getLogger("avatar.broadcast")
RunBlocking = Callable[..., Awaitable[Any]]
EventSink = Callable[[dict[str, Any]], None]
DEFAULT_RENDER_AHEAD_S = 3.0  # enough to hide a slow sentence of TTS; small enough that controls act fast
DEFAULT_GAP_S = 0.6  # silence between two items, so they do not run into each other


class BroadcastHost(HostSpeaking):
    """One avatar on air. Engines are passed in; outputs are callables fed every tick."""

    def __init__(
        self,
        *,
        tts,
        lipsync,
        llm,
        clock: Clock,
        intake=None,
        run_blocking: RunBlocking = asyncio.to_thread,
        on_event: EventSink | None = None,
        system_prompt: str = "",
        read_comments_aloud: bool = True,
        render_ahead_s: float = DEFAULT_RENDER_AHEAD_S,
        gap_s: float = DEFAULT_GAP_S,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        avatar_name: str = "",
        stage_timeouts: StageTimeouts | None = None,
    ) -> None:
        """`stage_timeouts`: how long an item waits on the voice and the renderer (and a comment's
        answer on each token) before the item is skipped with `item_failed`."""
        self.tts, self.lipsync, self.llm, self.clock, self.intake = tts, lipsync, llm, clock, intake
        self.run_blocking = run_blocking
        self._on_event = on_event or (lambda event: None)
        self.system_prompt = system_prompt
        self.read_comments_aloud = read_comments_aloud
        self.gap_s = gap_s
        self.answer_timeout_s = answer_timeout_s
        self.avatar_name = avatar_name
        self.stage_timeouts = stage_timeouts or StageTimeouts()
        self.items = ItemQueue()
        self.queue = AVOutputQueue(max_queued_ticks=max(1, round(render_ahead_s * FPS)))
        self.playout = AVPlayout(self.queue, self._idle_frame)
        self.pump = StreamPump(
            self.playout,
            clock,
            on_tick=self._on_tick,
            run_blocking=run_blocking,
            on_fault=self._picture_failed,
        )
        self.outputs: list = []
        self.emotion = "neutral"
        self.frame_shape: tuple[int, ...] | None = None  # fixed by the first tick
        self._epoch = 1
        self.queue.begin_turn(self._epoch)
        self._queued_ticks = 0  # ticks queued in this epoch so far
        self._scheduled: list[HostItem] = []  # rendered or rendering, not finished playing, in order
        self._render_task: asyncio.Task | None = None
        self._work = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._script_end_announced = False

    # --- life cycle -----------------------------------------------------------------------------
    def set_script(self, items: list[tuple[str, tuple[TextSegment, ...]]], *, loop: bool) -> None:
        self.items.set_script(items, loop=loop)
        self._script_end_announced = False
        self._work.set()

    def add_output(self, output) -> None:
        """An object with `write(tick_index, audio, frame)` (see avatar.broadcast.outputs)."""
        self.outputs.append(output)

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("the broadcast is already running")
        loop = asyncio.get_running_loop()
        self.pump.prime(await self.run_blocking(self.lipsync.idle_frame))
        self._tasks = [
            loop.create_task(self.pump.run(), name="broadcast-pump"),
            loop.create_task(self._render_loop(), name="broadcast-render"),
            loop.create_task(self._status_loop(), name="broadcast-status"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("broadcast task %s died: %s: %s", task.get_name(), type(error).__name__, error)
            self._emit("error", message=f"{task.get_name()} stopped: {error}")

    async def close(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        if self._render_task is not None:
            tasks.append(self._render_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- what to say ----------------------------------------------------------------------------
    def submit_comment(self, user: str, text: str):
        """A viewer's comment through moderation, de-duplication and rate limits (see CommentIntake)."""
        if self.intake is None:
            raise RuntimeError("this broadcast takes no comments")
        verdict = self.intake.submit(user, text)
        if verdict.accepted:
            comment = verdict.comment
            self._emit(
                "comment_accepted", comment_id=comment.comment_id, user=comment.user, text=comment.text
            )
            self._work.set()
        else:
            self._emit("comment_rejected", user=user, text=text[:300], reason=verdict.reason)
        return verdict

    def comment_position(self, comment_id: int) -> int:
        """1 = answered next (after interjections)."""
        pending = [c.comment_id for c in self.intake.pending()] if self.intake else []
        rendered = [i.comment_id for i in self._waiting("comment")]
        put_back = [i.comment_id for i in self.items.waiting("comment")]  # unheard, said again first
        order = rendered + put_back + pending
        return order.index(comment_id) + 1 if comment_id in order else 0

    async def say(self, text: str, *, emotion: str | None = None, now: bool = False) -> HostItem:
        """An interjection; `now` drops what is being said (it is not repeated) and speaks at once."""
        segments = tuple(parse_script(text, emotion or "neutral"))
        item = HostItem(self.items.new_id(), "interjection", text.strip(), segments)
        self.items.add(item)
        self._emit("item_queued", **item.describe())
        if now:
            await self._end_epoch(drop_current=True, reason="interjection")
        self._work.set()
        return item

    # --- controls -------------------------------------------------------------------------------
    def pause(self) -> None:
        if not self.playout.held:
            self.playout.hold(True)
            self._emit("paused", at_s=self.pump.stream_time_s)

    def resume(self) -> None:
        if self.playout.held:
            self.playout.hold(False)
            self._emit("resumed", at_s=self.pump.stream_time_s)

    async def skip(self) -> bool:
        """Drop the item being spoken; the next one follows at once."""
        if self._current() is None:
            return False
        await self._end_epoch(drop_current=True, reason="skip")
        return True

    async def interrupt(self) -> bool:
        """Stop speaking now and drop waiting interjections and comments; the script goes on after."""
        dropped = self.items.clear("interjection") + self.items.clear("comment")
        if self.intake is not None:
            self.intake.clear()
        for item in dropped:
            self._emit("item_skipped", **item.describe(), reason="interrupt")
        speaking = self._current() is not None
        await self._end_epoch(drop_current=True, reason="interrupt", put_back_kinds=("script",))
        return speaking or bool(dropped)

    def set_emotion(self, emotion: str) -> None:
        """The avatar's base expression, for idle moments and for text without an emotion tag."""
        if emotion not in EMOTIONS:
            raise ValueError(f"unknown emotion {emotion!r}; use one of {', '.join(EMOTIONS)}")
        self.emotion = emotion
        self.lipsync.set_expression(emotion)
        self._emit("emotion_changed", emotion=emotion)

    async def switch_avatar(self, lipsync, tts, name: str) -> None:
        """A new face (and voice) from the next tick on; the item being said is dropped."""
        await self._end_epoch(
            drop_current=True, reason="avatar", before_restart=lambda: self._swap(lipsync, tts)
        )
        self.avatar_name = name
        self._emit("avatar_changed", avatar=name)

    def _swap(self, lipsync, tts) -> None:
        self.lipsync, self.tts = lipsync, tts
        self.lipsync.set_expression(self.emotion)

    # --- status ---------------------------------------------------------------------------------
    def status(self) -> dict:
        current = self._current()
        if self.playout.held:
            state = "paused"
        elif current is not None:
            state = "speaking"
        else:
            state = "idle"
        return {
            "state": state,
            "stream_time_s": round(self.pump.stream_time_s, 3),
            "avatar": self.avatar_name,
            "emotion": self.emotion,
            "current": current.describe() if current is not None else None,
            "queue": {
                "interjections": self.items.count("interjection"),
                "comments": self.items.count("comment") + (self.intake.pending_count if self.intake else 0),
                "script_position": self.items.script_position,
                "script_length": len(self.items.script),
                "loop": self.items.loop,
            },
            "frames": {
                "sent": self.pump.sent_ticks,
                "repeated": self.pump.repeated_frames,
                "speech": self.pump.speech_ticks,
            },
            "outputs": [output.status() for output in self.outputs],
            "clock": self.pump.clock_status(),  # stream vs wall time, paced with or without outputs
        }

    async def _status_loop(self) -> None:
        next_s = self.clock.now_s()
        while True:
            next_s += 1.0
            await self.clock.sleep_until(next_s)
            self._on_event({"type": "status", **self.status()})

    def _emit(self, event_type: str, /, **fields: Any) -> None:
        fields.setdefault("at_s", round(self.pump.stream_time_s, 3))
        self._on_event({"type": event_type, **fields})

    # --- rendering ------------------------------------------------------------------------------
    async def _render_loop(self) -> None:
        while True:
            item = await self._next_item()
            self._scheduled.append(item)
            self._render_task = asyncio.ensure_future(self._render(item))
            await asyncio.wait({self._render_task})
            task, self._render_task = self._render_task, None
            if task.cancelled():
                continue  # ended by a skip / interrupt / avatar change, which put things back
            error = task.exception()
            if error is not None:
                # An engine's fault (EngineFailed names the stage) or our own bug: either way
                # this item is skipped and the show goes on with the next one.
                stage = error.stage if isinstance(error, EngineFailed) else "host"
                message = (
                    str(error) if isinstance(error, EngineFailed) else f"{type(error).__name__}: {error}"
                )
                log.error("item %d (%s) failed: %s", item.item_id, item.kind, message)
                self._emit("item_failed", **item.describe(), stage=stage, error=message)
                if item in self._scheduled and item.start_tick in (None, self._queued_ticks):
                    self._scheduled.remove(item)  # nothing of it was queued
                elif item.end_tick is None:
                    item.end_tick = self._queued_ticks
                self.lipsync.reset()

    async def _next_item(self) -> HostItem:
        while True:
            item = self.items.pop_waiting("interjection") or self.items.pop_waiting("comment")
            if item is None and self.intake is not None:
                comment = self.intake.pop()
                if comment is not None:
                    item = HostItem(
                        self.items.new_id(),
                        "comment",
                        "",
                        user=comment.user,
                        source_text=comment.text,
                        comment_id=comment.comment_id,
                    )
            if item is None:
                item = self.items.next_script_item()
                if item is None and self.items.script_finished and not self._script_end_announced:
                    self._script_end_announced = True
                    self._emit("script_finished")
            if item is not None:
                return item
            self._work.clear()
            await self._work.wait()

    async def _render(self, item: HostItem) -> None:
        if item.kind == "comment" and not item.segments:
            await self._answer(item)
        item.epoch = self._epoch
        item.start_tick = self._queued_ticks
        for segment in item.segments:
            emotion = segment.emotion if segment.emotion != "neutral" else self.emotion
            self.lipsync.set_expression(emotion, segment.intensity if emotion == segment.emotion else 1.0)
            if segment.text:
                await self._speak_text(segment.text, emotion)
            if segment.pause_after_s > 0:
                await self._speak_silence(segment.pause_after_s)
        audio, frames = self.lipsync.flush()
        if frames:
            await self._queue(AVSegment(self._epoch, audio, frames))
        item.end_tick = self._queued_ticks
        self.lipsync.set_expression(self.emotion)
        if self.gap_s > 0:
            await self._speak_silence(self.gap_s)

    def _picture_failed(self, error: EngineFailed) -> None:
        """The renderer failed on an idle picture: the stream shows the last one again meanwhile."""
        log.error("idle picture failed: %s", error)
        self._emit("picture_failed", stage=error.stage, error=str(error))

    async def _answer(self, item: HostItem) -> None:
        answer = await answer_comment(
            self.llm,
            self.system_prompt,
            item,
            timeout_s=self.answer_timeout_s,
            emit=self._emit,
            clock=self.clock,
            timeouts=self.stage_timeouts,
        )
        item.text, item.segments = spoken_answer(item, answer, read_aloud=self.read_comments_aloud)
        self._emit("answer_ready", item_id=item.item_id, comment_id=item.comment_id, answer=item.text)

    async def _queue(self, segment: AVSegment) -> None:
        await self.queue.put(segment)
        self._queued_ticks += segment.tick_count

    # --- playback bookkeeping (runs in the pump, once per tick) ---------------------------------
    def _idle_frame(self, tick_index: int) -> np.ndarray:
        return self.lipsync.idle_frame()  # the face's own timeline, continuous with its speech frames

    def _on_tick(self, tick: PlayoutTick) -> None:
        frame = tick.frame
        if self.frame_shape is None:
            self.frame_shape = frame.shape
        elif frame.shape != self.frame_shape:  # an avatar of another size: the stream's size is fixed
            frame = letterbox(frame, self.frame_shape)
        for output in self.outputs:
            output.write(tick.index, tick.audio, frame)
        played = self.playout.played_ticks(self._epoch)
        while self._scheduled:
            head = self._scheduled[0]
            if head.start_tick is None or head.epoch != self._epoch:
                break
            if head.started_at_s is None and played > head.start_tick:
                head.started_at_s = tick.index * TICK_S  # its first tick is this one
                self._emit("item_started", **head.describe(), at_s=round(head.started_at_s, 3))
            if head.end_tick is not None and played >= head.end_tick and head.started_at_s is not None:
                self._scheduled.pop(0)
                ended_s = (tick.index + 1) * TICK_S
                self._emit("item_finished", **head.describe(), at_s=round(ended_s, 3))
                continue
            break

    def _current(self) -> HostItem | None:
        """The item whose sound is playing (started, not finished)."""
        for item in self._scheduled:
            if item.started_at_s is not None:
                return item
            break
        return None

    def _waiting(self, kind: str) -> list[HostItem]:
        return [item for item in self._scheduled if item.kind == kind and item.started_at_s is None]

    async def _end_epoch(
        self,
        *,
        drop_current: bool,
        reason: str,
        put_back_kinds: tuple[str, ...] = ("interjection", "comment", "script"),
        before_restart: Callable[[], None] | None = None,
    ) -> None:
        """Throw away everything rendered; unheard items go back to their lines."""
        if self._render_task is not None:
            self._render_task.cancel()
            await asyncio.gather(self._render_task, return_exceptions=True)
        self.queue.flush(self._epoch)
        self._epoch += 1  # == the queue's new active turn
        self._queued_ticks = 0
        self.lipsync.reset()
        scheduled, self._scheduled = self._scheduled, []
        current = scheduled[0] if scheduled and scheduled[0].started_at_s is not None else None
        unheard = [item for item in scheduled if item is not current]
        if current is not None and drop_current:
            self._emit("item_skipped", **current.describe(), reason=reason)
        elif current is not None:
            unheard.insert(0, current)
        kept = [item for item in unheard if item.kind in put_back_kinds]
        for item in unheard:
            if item.kind not in put_back_kinds:
                self._emit("item_skipped", **item.describe(), reason=reason)
        self.items.put_back(kept)
        self._script_end_announced = self._script_end_announced and self.items.script_finished
        if before_restart is not None:
            before_restart()
        self.lipsync.set_expression(self.emotion)
        self._work.set()
