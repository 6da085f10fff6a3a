"""Speculative replies: a reply prepared while the user may still be talking, held until the turn ends.

The VAD reports the end of speech after a short silence (120 ms); the turn ends later, when the
turn model calls it complete (200 ms) or after a longer silence (a pause inside a sentence must
not cut it). In between, the whole reply is prepared speculatively (recognition, LLM, TTS, the
first frames) but held: nothing is queued for playout and no event reaches the client until the
turn really ends, when it is released and plays at the next tick. If the user goes on talking,
the guess is cancelled and leaves no trace (no history, no events, lip-sync state reset); the
whole turn is then answered.
"""

from __future__ import annotations

import asyncio

from avatar.live.turn import Turn


class SpeculativeReplies:
    """The held-reply half of `ConversationSession` (its `_mic`, `_turn`, `_speculation`, `lipsync`,
    `on_event`, `_start_turn`, `_clock_time` and `_remove_history` are the session's)."""

    async def _speculate(self, start_sample: int, end_sample: int, end_stream_s: float) -> None:
        await self._cancel_speculation()
        audio = self._mic.slice(start_sample, end_sample)
        turn = self._start_turn(audio, self._clock_time(end_stream_s), speculative=True)
        turn.user_start_sample = start_sample
        self._speculation = (start_sample, end_sample, turn)

    def _take_speculation(self, start_sample: int, end_sample: int) -> Turn | None:
        """The held reply for exactly this utterance, or None (then it is discarded by the caller)."""
        speculation = self._speculation
        if speculation is None:
            return None
        turn = speculation[2]
        usable = speculation[:2] == (start_sample, end_sample) and not (
            turn.task is not None and turn.task.cancelled()
        )
        if not usable:
            return None
        self._speculation = None
        return turn

    async def _cancel_speculation(self) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is None:
            return
        turn = speculation[2]
        if turn.task is not None and not turn.task.done():
            turn.task.cancel()
            await asyncio.gather(turn.task, return_exceptions=True)
        self._remove_history(turn.user_message)
        self._remove_history(turn.assistant_message)
        turn.held_events.clear()
        if self._turn is turn:
            self._turn = None
            self.lipsync.reset()  # the guess may have left an expression or audio carry-over

    def _release(self, turn: Turn) -> None:
        """Let a held reply play and publish what it did while held, in order."""
        held, turn.held_events = turn.held_events, []
        turn.released.set()
        for event in held:
            self.on_event(event)
