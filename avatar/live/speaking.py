"""The speaking step of a live reply: one sentence through the voice, the lip-sync and the queue.

A cloned voice that streams hands over its first chunk long before the sentence is done, so each
chunk is planned, drawn and queued as it comes (`avatar.speech.speaker.speak_stream`): the face
starts moving with the first chunk, not after the whole sentence. A barge-in cancels the reply's
task, and leaving the `aclosing` block closes the voice's stream (upstream generator closed,
HTTP request aborted). The time from asking the voice to its first audio is the
`tts_first_chunk` event of the session's timeline.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from avatar.core.deadlines import guarded, guarded_blocking
from avatar.playout.av_output import AUDIO_RATE_HZ, SAMPLES_PER_FRAME, AVSegment
from avatar.playout.letterbox import checked_frames
from avatar.speech.assembly import trim_lead_in
from avatar.speech.speaker import SkippedSentence, speak_stream

if TYPE_CHECKING:
    from avatar.core.types import Speech
    from avatar.live.turn import Turn
    from avatar.speech.sentence_stream import SpokenSentence

DRAW_BATCH_FRAMES = 8  # 0.32 s of video per hand-over: small enough to start playback early
FIRST_DRAW_BATCH_FRAMES = 2  # a reply's very first hand-over is smaller still: it is on the clock


class SentenceSpeaking:
    """Mixin of `ConversationSession`: speaks one sentence of a turn (needs tts, lipsync, clock,
    run_blocking, `_emit`, `_emit_turn` and `_put` of the session)."""

    async def _speak(self, turn: Turn, sentence: SpokenSentence, started_s: float) -> None:
        def skipped(skip: SkippedSentence) -> None:  # the reply goes on without it
            self._emit_turn(
                turn, "avatar_sentence_skipped", turn_id=turn.turn_id, text=skip.text, reason=skip.reason
            )

        asked_s = self.clock.now_s()
        voice_call = guarded_blocking(
            "tts",
            self.run_blocking,
            clock=self.clock,
            timeout_s=self.stage_timeouts.tts_s,
            pass_refusals=True,
        )
        pieces = speak_stream(
            self.tts, sentence.text, sentence.emotion, run_blocking=voice_call, on_skip=skipped
        )
        begun = False
        async with contextlib.aclosing(pieces):
            async for speech in pieces:
                if not begun:
                    begun = True
                    self._begin_sentence(turn, sentence, asked_s)
                await self._speak_piece(turn, speech, started_s)

    def _begin_sentence(self, turn: Turn, sentence: SpokenSentence, asked_s: float) -> None:
        self.lipsync.set_expression(sentence.emotion, sentence.intensity)
        self._emit_turn(
            turn, "avatar_sentence", turn_id=turn.turn_id, text=sentence.text, emotion=sentence.emotion
        )
        self._emit_turn(
            turn,
            "tts_first_chunk",
            turn_id=turn.turn_id,
            text=sentence.text,
            latency_ms=round((self.clock.now_s() - asked_s) * 1000.0, 1),
            streamed=bool(getattr(self.tts, "streams_audio", False)),
        )
        turn.sentences.append((sentence.text, turn.queued_samples))

    async def _render_call(self, fn, *args):
        """A lip-sync call with the render deadline; its failure ends the turn (`avatar.live.faults`)."""
        work = self.run_blocking(fn, *args)
        return await guarded("lip-sync", work, clock=self.clock, timeout_s=self.stage_timeouts.render_s)

    def _frame_shape(self) -> tuple[int, ...]:
        """The size of the session's video (its idle frame's), asked once."""
        shape = getattr(self, "_video_shape", None)
        if shape is None:
            shape = self._video_shape = tuple(self.lipsync.idle_frame().shape)
        return shape

    async def _speak_piece(self, turn: Turn, speech: Speech, started_s: float) -> None:
        """Plan, draw and queue one piece of a sentence (a streamed chunk or a whole sentence)."""
        text, end = turn.sentences[-1]
        if len(turn.sentences) == 1 and end == 0:
            speech = trim_lead_in(speech)  # before a reply's first sound, silence is only latency
        pcm, weights = await self._render_call(self.lipsync.prepare, speech)
        turn.sentences[-1] = (
            text,
            end + len(speech.audio.pcm) * AUDIO_RATE_HZ // speech.audio.sample_rate_hz,
        )
        # Draw and queue in small batches: playback starts after the first batch is drawn.
        start = 0
        while start < len(weights):
            batch = FIRST_DRAW_BATCH_FRAMES if turn.queued_samples == 0 else DRAW_BATCH_FRAMES
            rows = weights[start : start + batch]
            frames = checked_frames(
                await self._render_call(self.lipsync.draw, rows), len(rows), self._frame_shape()
            )
            first = turn.queued_samples == 0
            audio = pcm[start * SAMPLES_PER_FRAME : (start + len(rows)) * SAMPLES_PER_FRAME]
            start += len(rows)
            await self._put(turn, AVSegment(turn.turn_id, audio, frames))
            turn.queued_samples += len(audio)
            if first:
                self._emit(
                    "first_audio_queued", turn_id=turn.turn_id, latency_s=self.clock.now_s() - started_s
                )
