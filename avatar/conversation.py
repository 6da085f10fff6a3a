"""One live conversation: microphone audio in, the avatar's paired audio and frames out.

Each reply is a `Turn` that owns its task (ASR -> LLM stream -> sentences -> TTS -> lip-sync ->
output queue). The user's speech onset interrupts it (barge-in): the task is cancelled, the queue
flushed down to the transport, the renderer reset, and the history keeps only what was heard.
Blocking engine calls go through `run_blocking` (threads in production, inline in virtual-time
tests), and every timestamp comes from the injected clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avatar.av_output import AUDIO_RATE_HZ, SAMPLES_PER_FRAME, AVOutputQueue, AVPlayout, AVSegment
from avatar.clock import Clock
from avatar.sentence_stream import SentenceStream, SpokenSentence
from avatar.turn_detector import UserSpeechStarted, UserTurnEnded
from avatar.types import AudioChunk, Transcript

EventSink = Callable[[dict[str, Any]], None]
RunBlocking = Callable[..., Awaitable[Any]]
MAX_USER_AUDIO_S = 60.0
DRAW_BATCH_FRAMES = 8  # 0.32 s of video per hand-over: small enough to start playback early  # microphone history kept for cutting turns


@dataclass
class Turn:
    """One avatar reply and what it has queued so far."""

    turn_id: int
    user_text: str = ""
    user_start_sample: int | None = None  # where the user's utterance began in the mic stream
    user_message: dict[str, str] | None = None  # its entries in the history, kept by reference
    sentences: list[tuple[str, int]] = field(default_factory=list)  # (text, turn sample where it ends)
    queued_samples: int = 0
    task: asyncio.Task | None = None
    finished: bool = False
    assistant_message: dict[str, str] | None = None


def heard_text(sentences: list[tuple[str, int]], played_samples: int) -> str:
    """The part of a reply the user actually heard: whole sentences, then the played share of the next."""
    heard, start = [], 0
    for text, end in sentences:
        if played_samples >= end:
            heard.append(text)
        elif played_samples > start:
            words = text.split()
            share = (played_samples - start) / max(end - start, 1)
            heard.append(" ".join(words[: int(len(words) * share)]))
            break
        else:
            break
        start = end
    return " ".join(part for part in heard if part)


class ConversationSession:
    """Per-connection state; engines are shared objects passed in."""

    def __init__(
        self,
        *,
        vad,
        turn_detector,
        asr,
        llm,
        tts,
        lipsync,
        queue: AVOutputQueue,
        playout: AVPlayout,
        clock: Clock,
        system_prompt: str = "",
        language: str | None = None,
        max_history_messages: int = 20,
        run_blocking: RunBlocking = asyncio.to_thread,
        on_event: EventSink | None = None,
    ) -> None:
        self.vad, self.turn_detector, self.asr, self.llm, self.tts = vad, turn_detector, asr, llm, tts
        self.lipsync, self.queue, self.playout, self.clock = lipsync, queue, playout, clock
        self.system_prompt = system_prompt
        # Whisper's language detection is a second encoder pass (~0.5 s on 2 cores): after the
        # first turn the session passes the language it heard as a hint (or the configured one).
        self.language = language
        self.max_history_messages = max_history_messages
        self.run_blocking = run_blocking
        self.on_event = on_event or (lambda event: None)
        self.history: list[dict[str, str]] = []
        self._mic = np.zeros(0, np.float32)
        self._mic_start_sample = 0  # stream sample index of self._mic[0]
        self._mic_samples = 0
        self._turn: Turn | None = None
        self._next_turn_id = 1
        self._user_start_sample: int | None = None
        self._resume_from_sample: int | None = None  # an unheard reply's utterance continues
        self._speculation: tuple[int, int, asyncio.Task] | None = None
        self._closed = False

    # --- input ---------------------------------------------------------------------------------
    async def handle_microphone(self, chunk: AudioChunk) -> None:
        """Feed 16 kHz microphone audio; starts replies and interrupts them."""
        if self._closed:
            return
        self._remember_mic(chunk.pcm.astype(np.float32))
        events = self.vad.process(chunk)
        if any(event.kind == "speech_start" for event in events):
            await self._cancel_speculation()  # the user went on talking: that guess is void
        for item in self.turn_detector.process(events, self.vad.settled_until_s):
            if isinstance(item, UserSpeechStarted):
                self._emit("user_speech_started", at_s=self._clock_time(item.at_s))
                await self.interrupt("barge-in")
                # After a pause that only looked like the end (the reply had not been heard yet),
                # the new speech continues the same utterance: recognise it all together.
                start = item.sample_index
                if self._resume_from_sample is not None:
                    start = min(start, self._resume_from_sample)
                    self._resume_from_sample = None
                self._user_start_sample = start
            elif isinstance(item, UserTurnEnded):
                start = self._user_start_sample if self._user_start_sample is not None else item.start_sample
                audio = self._mic_slice(start, item.end_sample)
                turn = self._start_turn(
                    audio, self._clock_time(item.end_s), self._take_speculation(start, item.end_sample)
                )
                turn.user_start_sample = start
                self._user_start_sample = None
        ends = [event for event in events if event.kind == "speech_end"]
        if ends and self.turn_detector.in_turn and self._user_start_sample is not None:
            self._speculate(self._user_start_sample, ends[-1].sample_index)

    # --- speculative recognition ---------------------------------------------------------------
    # The VAD reports the end of speech after a short silence; the turn ends only after a longer
    # one (a pause inside a sentence must not cut it). Recognising in between means the
    # transcript is usually ready the moment the turn ends, which is most of the first-response
    # latency. If the user goes on talking, the guess is cancelled and the whole turn recognised.
    def _speculate(self, start_sample: int, end_sample: int) -> None:
        audio = AudioChunk(self._mic_slice(start_sample, end_sample), AUDIO_RATE_HZ)
        task = asyncio.get_running_loop().create_task(
            self.run_blocking(self.asr.transcribe, audio, self.language)
        )
        self._speculation = (start_sample, end_sample, task)

    def _take_speculation(self, start_sample: int, end_sample: int) -> asyncio.Task | None:
        speculation, self._speculation = self._speculation, None
        if speculation is None:
            return None
        if speculation[:2] == (start_sample, end_sample):
            return speculation[2]
        speculation[2].cancel()  # a different range: recognise the real turn instead
        return None

    async def _cancel_speculation(self) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            speculation[2].cancel()
            await asyncio.gather(speculation[2], return_exceptions=True)

    def _clock_time(self, stream_time_s: float) -> float:
        """Session-clock time of a moment in the microphone stream (VAD/turn times are stream times).

        The audio received so far ends "now", so a stream time maps back by the difference.
        """
        return self.clock.now_s() - (self._mic_samples / AUDIO_RATE_HZ - stream_time_s)

    def _remember_mic(self, pcm: np.ndarray) -> None:
        self._mic = np.concatenate([self._mic, pcm])
        self._mic_samples += len(pcm)
        excess = len(self._mic) - int(MAX_USER_AUDIO_S * AUDIO_RATE_HZ)
        if excess > 0:
            self._mic = self._mic[excess:]
            self._mic_start_sample += excess

    def _mic_slice(self, start_sample: int, end_sample: int) -> np.ndarray:
        a = max(start_sample - self._mic_start_sample, 0)
        b = max(end_sample - self._mic_start_sample, a)
        return self._mic[a:b].copy()

    # --- turns ---------------------------------------------------------------------------------
    def _start_turn(
        self, user_audio: np.ndarray, speech_end_s: float, transcript_task: asyncio.Task | None = None
    ) -> Turn:
        turn = Turn(self._next_turn_id)
        self._next_turn_id += 1
        self._turn = turn
        turn.task = asyncio.get_running_loop().create_task(
            self._run_turn(turn, user_audio, speech_end_s, transcript_task)
        )
        turn.task.add_done_callback(self._turn_done)
        return turn

    async def say(self, text: str) -> Turn:
        """Speak `text` as a reply without a user turn (greetings, API, tests); returns the turn."""
        turn = Turn(self._next_turn_id)
        self._next_turn_id += 1
        self._turn = turn

        async def tokens():
            yield text

        turn.task = asyncio.get_running_loop().create_task(
            self._speak_stream(turn, tokens(), self.clock.now_s())
        )

        turn.task.add_done_callback(self._turn_done)
        return turn

    async def _run_turn(
        self, turn: Turn, user_audio: np.ndarray, speech_end_s: float, transcript_task: asyncio.Task | None
    ) -> None:
        if transcript_task is not None:
            try:
                transcript: Transcript = await transcript_task
            finally:
                transcript_task.cancel()  # no-op when done; frees it when this turn is cancelled
        else:
            transcript = await self.run_blocking(
                self.asr.transcribe, AudioChunk(user_audio, AUDIO_RATE_HZ), self.language
            )
        if not transcript.text.strip():
            self._emit("turn_ignored", turn_id=turn.turn_id, reason="no words recognised")
            return
        turn.user_text = transcript.text
        self.language = transcript.language or self.language
        self._emit(
            "user_transcript",
            turn_id=turn.turn_id,
            text=transcript.text,
            language=transcript.language,
            emotion=transcript.emotion,
            events=list(transcript.events),
        )
        turn.user_message = self._append_history({"role": "user", "content": _user_content(transcript)})
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages += self.history
        await self._speak_stream(turn, self.llm.stream(messages), speech_end_s)

    async def _speak_stream(self, turn: Turn, tokens, started_s: float) -> None:
        self.queue.begin_turn(turn.turn_id)
        self._emit("turn_started", turn_id=turn.turn_id)
        splitter = SentenceStream()
        try:
            async for token in tokens:
                for sentence in splitter.feed(token):
                    await self._speak(turn, sentence, started_s)
            for sentence in splitter.finish():
                await self._speak(turn, sentence, started_s)
            pcm, frames = self.lipsync.flush()
            if frames:
                await self.queue.put(AVSegment(turn.turn_id, pcm, frames))
                turn.queued_samples += len(pcm)
        finally:
            aclose = getattr(tokens, "aclose", None)
            if aclose is not None:
                await aclose()  # closes the LLM stream (HTTP response) on barge-in too
        turn.finished = True
        text = " ".join(text for text, _ in turn.sentences)
        turn.assistant_message = self._append_history({"role": "assistant", "content": text})
        self._emit("turn_rendered", turn_id=turn.turn_id, text=text)

    async def _speak(self, turn: Turn, sentence: SpokenSentence, started_s: float) -> None:
        self.lipsync.set_expression(sentence.emotion)
        self._emit("avatar_sentence", turn_id=turn.turn_id, text=sentence.text, emotion=sentence.emotion)
        speech = await self.run_blocking(self.tts.synthesize, sentence.text)
        pcm, weights = await self.run_blocking(self.lipsync.prepare, speech)
        turn.sentences.append(
            (
                sentence.text,
                turn.queued_samples + len(speech.audio.pcm) * AUDIO_RATE_HZ // speech.audio.sample_rate_hz,
            )
        )
        # Draw and queue in small batches: playback of a sentence starts after its first
        # batch is drawn, not after the whole sentence.
        for start in range(0, len(weights), DRAW_BATCH_FRAMES):
            rows = weights[start : start + DRAW_BATCH_FRAMES]
            frames = await self.run_blocking(self.lipsync.draw, rows)
            first = turn.queued_samples == 0
            audio = pcm[start * SAMPLES_PER_FRAME : (start + len(rows)) * SAMPLES_PER_FRAME]
            await self.queue.put(AVSegment(turn.turn_id, audio, frames))
            turn.queued_samples += len(audio)
            if first:
                self._emit(
                    "first_audio_queued", turn_id=turn.turn_id, latency_s=self.clock.now_s() - started_s
                )

    def _turn_done(self, task: asyncio.Task) -> None:
        """Every turn task ends here: an engine failure is reported, never silently lost."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._emit("turn_failed", error=f"{type(error).__name__}: {error}")

    # --- interruption --------------------------------------------------------------------------
    def is_speaking(self) -> bool:
        turn = self._turn
        if turn is None:
            return False
        rendering = turn.task is not None and not turn.task.done()
        return rendering or (self.queue.active_turn == turn.turn_id and self.queue.queued_ticks > 0)

    async def interrupt(self, reason: str = "api") -> bool:
        """Stop the current reply now; the history keeps what was heard. False if nothing played."""
        turn = self._turn
        if turn is None or not self.is_speaking():
            return False
        if turn.task is not None and not turn.task.done():
            turn.task.cancel()
            await asyncio.gather(turn.task, return_exceptions=True)
        dropped = self.queue.flush(turn.turn_id)
        self.lipsync.reset()
        played = self.playout.played_samples(turn.turn_id)
        heard = heard_text(turn.sentences, played)
        if played == 0 and turn.user_start_sample is not None and reason == "barge-in":
            # Nothing was heard yet: the user only paused. Forget this turn's user message and
            # let the next turn recognise the whole utterance from its start.
            self._resume_from_sample = turn.user_start_sample
            self._remove_history(turn.user_message)
            turn.user_message = None
        if turn.assistant_message is not None and heard:
            turn.assistant_message["content"] = heard
        elif turn.assistant_message is not None:  # rendered but nothing heard: as if never said
            self._remove_history(turn.assistant_message)
            turn.assistant_message = None
        elif heard:
            turn.assistant_message = self._append_history({"role": "assistant", "content": heard})
        self._emit(
            "turn_interrupted", turn_id=turn.turn_id, reason=reason, heard=heard, dropped_ticks=dropped
        )
        return True

    async def close(self) -> None:
        """End the session: cancel the reply, drop queued output. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._cancel_speculation()
        turn = self._turn
        if turn is not None and turn.task is not None and not turn.task.done():
            turn.task.cancel()
            await asyncio.gather(turn.task, return_exceptions=True)
        self.queue.flush(turn.turn_id if turn else None)

    # --- helpers -------------------------------------------------------------------------------
    def _append_history(self, message: dict[str, str]) -> dict[str, str]:
        """Append, dropping the oldest messages beyond the bound; returns the message itself.

        Turns keep references to their messages, not indices, so trimming the front of the
        history never makes a later edit (barge-in truncation) hit the wrong message.
        """
        self.history.append(message)
        del self.history[: max(len(self.history) - self.max_history_messages, 0)]
        return message

    def _remove_history(self, message: dict[str, str] | None) -> None:
        """Remove this very message (by identity: an equal earlier message stays)."""
        for index, candidate in enumerate(self.history):
            if candidate is message:
                del self.history[index]
                return

    def _emit(self, kind: str, **fields: Any) -> None:
        self.on_event({"type": kind, "at_s": self.clock.now_s(), **fields})


def _user_content(transcript: Transcript) -> str:
    """The user's words plus what the recogniser heard beyond them, for the LLM to adapt its tone."""
    notes = []
    if transcript.emotion and transcript.emotion.lower() not in ("neutral", "unknown"):
        notes.append(f"speaker sounds {transcript.emotion.lower()}")
    if transcript.events:
        notes.append("audio events: " + ", ".join(transcript.events))
    return transcript.text + (f" ({'; '.join(notes)})" if notes else "")
