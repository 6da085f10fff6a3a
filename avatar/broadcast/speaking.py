"""The livestream's speaking step: a sentence through the voice, the lip-sync and the queue.

A cloned voice that streams is drawn and queued chunk by chunk (`speak_stream`), so the face
starts moving with the first chunk; skip, interrupt and avatar changes cancel the render task,
and leaving the `aclosing` block closes the voice's stream (the upstream generator closed, the
HTTP request aborted). Each sentence's time to first audio is a `tts_first_chunk` event.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from avatar.core.deadlines import guarded, guarded_blocking
from avatar.core.text_script import split_sentences
from avatar.core.types import AudioChunk, Speech
from avatar.playout.av_output import FPS, SAMPLES_PER_FRAME, AVSegment
from avatar.playout.letterbox import checked_frames
from avatar.speech.speaker import SkippedSentence, speak_stream

log = logging.getLogger("avatar.broadcast")
DRAW_BATCH_FRAMES = 8


class HostSpeaking:
    """Mixin of `BroadcastHost` (needs tts, lipsync, clock, run_blocking, `_emit`, `_queue`)."""

    async def _speak_text(self, text: str, emotion: str) -> None:
        """Each sentence the one way (`avatar.speech.speaker`), with the expression's emotion; one
        with nothing to say ("(5)", an emoji) or that the voice cannot say is skipped, not the item."""
        for sentence in split_sentences(text):
            asked_s = self.clock.now_s()
            first = True
            voice_call = guarded_blocking(
                "tts",
                self.run_blocking,
                clock=self.clock,
                timeout_s=self.stage_timeouts.tts_s,
                pass_refusals=True,
            )
            pieces = speak_stream(
                self.tts, sentence, emotion, run_blocking=voice_call, on_skip=self._sentence_skipped
            )
            async with contextlib.aclosing(pieces):
                async for speech in pieces:
                    if first:
                        first = False
                        self._emit(
                            "tts_first_chunk",
                            text=sentence,
                            latency_ms=round((self.clock.now_s() - asked_s) * 1000.0, 1),
                            streamed=bool(getattr(self.tts, "streams_audio", False)),
                        )
                    await self._draw_and_queue(speech)

    def _sentence_skipped(self, skipped: SkippedSentence) -> None:
        log.info("skipped a sentence: %r: %s", skipped.text, skipped.reason)
        self._emit("sentence_skipped", text=skipped.text, reason=skipped.reason)

    async def _speak_silence(self, seconds: float) -> None:
        samples = int(round(seconds * FPS)) * SAMPLES_PER_FRAME
        await self._draw_and_queue(Speech(AudioChunk(np.zeros(samples, np.float32), 16000)))

    async def _render_call(self, fn, *args):
        """A renderer call with its deadline; a failure ends the item (`item_failed`, stage lip-sync)."""
        work = self.run_blocking(fn, *args)
        return await guarded("lip-sync", work, clock=self.clock, timeout_s=self.stage_timeouts.render_s)

    async def _draw_and_queue(self, speech: Speech) -> None:
        pcm, weights = await self._render_call(self.lipsync.prepare, speech)
        for start in range(0, len(weights), DRAW_BATCH_FRAMES):
            rows = weights[start : start + DRAW_BATCH_FRAMES]
            frames = checked_frames(await self._render_call(self.lipsync.draw, rows), len(rows))
            audio = pcm[start * SAMPLES_PER_FRAME : (start + len(rows)) * SAMPLES_PER_FRAME]
            await self._queue(AVSegment(self._epoch, audio, frames))
