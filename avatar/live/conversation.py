"""One live conversation: microphone audio in, the avatar's paired audio and frames out.

Each reply is a `Turn` that owns its task (ASR -> LLM stream -> sentences -> TTS -> lip-sync ->
output queue). The user's speech onset interrupts it (barge-in): the task is cancelled, the queue
flushed down to the transport, the renderer reset, and the history keeps only what was heard.
Each sentence is spoken the one way (`avatar.speech.speaker`, `avatar.live.speaking`): with its
emotion, a cloned voice's chunks rendered as they come, and a sentence with nothing to say is
skipped with an event while the reply goes on. Blocking engine calls go
through `run_blocking` (threads in production, inline in virtual-time tests; it must pass keyword
arguments on), and every timestamp comes from the injected clock. Every engine call has a deadline
(`StageTimeouts`) and a check of its result: a failing engine ends the turn, never the session
(`avatar.live.faults`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from avatar.core.clock import Clock
from avatar.core.deadlines import StageTimeouts, guarded
from avatar.core.types import (
    AudioChunk,
    Transcript,
    TurnEndCheck,
    TurnEvent,
    TurnPrediction,
    UserSpeechStarted,
    UserTurnEnded,
)
from avatar.live.faults import TurnFaults, checked_transcript
from avatar.live.mic_history import MicHistory
from avatar.live.speaking import SentenceSpeaking
from avatar.live.speculation import SpeculativeReplies
from avatar.live.turn import Turn, heard_text
from avatar.playout.av_output import AUDIO_RATE_HZ, AVOutputQueue, AVPlayout, AVSegment
from avatar.speech.sentence_stream import SentenceStream
from avatar.turns.smart_turn import WINDOW_SAMPLES, turn_audio_start

EventSink = Callable[[dict[str, Any]], None]
RunBlocking = Callable[..., Awaitable[Any]]  # (fn, *args, **kwargs) -> fn's result
MAX_USER_AUDIO_S = 60.0


class ConversationSession(SpeculativeReplies, SentenceSpeaking, TurnFaults):
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
        turn_model=None,
        stage_timeouts: StageTimeouts | None = None,
    ) -> None:
        """`turn_model` (Smart Turn, `avatar.turns.smart_turn`) answers the detector's
        `TurnEndCheck`s; without one the detector's silence rule alone ends turns.
        `stage_timeouts`: how long a reply waits on each engine (default `StageTimeouts()`)."""
        self.vad, self.turn_detector, self.asr, self.llm, self.tts = vad, turn_detector, asr, llm, tts
        self.lipsync, self.queue, self.playout, self.clock = lipsync, queue, playout, clock
        self.system_prompt = system_prompt
        # The recogniser gets the configured language only: with live Whisper's short window the
        # language is detected from the same encoding at no cost, so a user who switches language
        # is understood in the new one. The turn model uses the language heard last (its
        # thresholds are per language), until the next transcript says otherwise.
        self.asr_language = language
        self.language = language
        self.max_history_messages = max_history_messages
        self.run_blocking = run_blocking
        self.turn_model = turn_model
        self.stage_timeouts = stage_timeouts or StageTimeouts()
        self.on_event = on_event or (lambda event: None)
        self.history: list[dict[str, str]] = []
        self._mic = MicHistory(int(MAX_USER_AUDIO_S * AUDIO_RATE_HZ))
        self._mic_first_chunk_s: float | None = None  # session-clock time the microphone began
        self._turn: Turn | None = None
        self._next_turn_id = 1
        self._user_start_sample: int | None = None
        self._resume_from_sample: int | None = None  # an unheard reply's utterance continues
        self._speculation: tuple[int, int, Turn] | None = None
        self._closed = False

    # --- input ---------------------------------------------------------------------------------
    async def handle_microphone(self, chunk: AudioChunk) -> None:
        """Feed 16 kHz microphone audio; starts replies and interrupts them."""
        if self._closed:
            return
        if self._mic_first_chunk_s is None:
            self._mic_first_chunk_s = self.clock.now_s() - len(chunk.pcm) / AUDIO_RATE_HZ
        self._mic.append(chunk.pcm)
        events = self.vad.process(chunk)
        self._hold_for_possible_barge_in(release=False)  # at once; released only after the turn logic
        if any(event.kind == "speech_start" for event in events):
            await self._cancel_speculation()  # the user went on talking: that guess is void
        for item in self.turn_detector.process(events, self.vad.settled_until_s):
            await self._on_turn_event(item)
        ends = [event for event in events if event.kind == "speech_end"]
        if ends and self.turn_detector.in_turn and self._user_start_sample is not None:
            await self._speculate(self._user_start_sample, ends[-1].sample_index, ends[-1].time_s)
        self._hold_for_possible_barge_in()

    async def _on_turn_event(self, item: TurnEvent, decided_by: str = "silence") -> None:
        if isinstance(item, UserSpeechStarted):
            self._emit("user_speech_started", at_s=self._clock_time(item.at_s), mic_lag_ms=self.mic_lag_ms())
            await self.interrupt("barge-in")
            # After a pause that only looked like the end (the reply had not been heard yet),
            # the new speech continues the same utterance: recognise it all together.
            start = item.sample_index
            if self._resume_from_sample is not None:
                start = min(start, self._resume_from_sample)
                self._resume_from_sample = None
            self._user_start_sample = start
        elif isinstance(item, TurnEndCheck):
            for decided in await self._check_turn_end(item):
                await self._on_turn_event(decided, decided_by="turn model")
        elif isinstance(item, UserTurnEnded):
            start = self._user_start_sample if self._user_start_sample is not None else item.start_sample
            speech_end_s = self._clock_time(item.end_s)
            turn = self._take_speculation(start, item.end_sample)
            if turn is None:
                await self._cancel_speculation()
                turn = self._start_turn(self._mic.slice(start, item.end_sample), speech_end_s)
                turn.user_start_sample = start
            self._emit(
                "user_turn_ended",
                turn_id=turn.turn_id,
                speech_end_at_s=speech_end_s,
                decided_by=decided_by,
                silence_ms=round((item.confirmed_at_s - item.end_s) * 1000.0, 1),
            )
            self._release(turn)
            self._user_start_sample = None

    async def _check_turn_end(self, check: TurnEndCheck) -> list[TurnEvent]:
        """Ask the turn model whether this pause ends the turn, and tell the detector.

        Awaited in line (~60 ms in a worker thread): microphone chunks that arrive meanwhile wait
        in the transport and are caught up at once, so no answer can go stale. The reply prepared
        since the VAD's "speech over" keeps rendering meanwhile."""
        if self.turn_model is None or self._user_start_sample is None:
            return []  # the silence rule (the detector's fallback) decides
        start = turn_audio_start(self._user_start_sample, AUDIO_RATE_HZ)
        audio = AudioChunk(self._mic.recent(start, WINDOW_SAMPLES), AUDIO_RATE_HZ)
        prediction: TurnPrediction = await self.run_blocking(self.turn_model.predict, audio, self.language)
        self._emit(
            "turn_end_check",
            verdict=prediction.verdict,
            probability=round(prediction.probability_complete, 3),
            latency_ms=round(prediction.latency_ms, 1),
            silence_ms=round(check.silence_s * 1000.0, 1),
        )
        return self.turn_detector.decide(check, prediction.verdict)

    def mic_lag_ms(self) -> float:
        """How far the microphone path runs behind real time: time since the first chunk minus
        the audio heard since. A sender streams in real time, so a growing figure means chunks
        wait (a busy event loop, a blocked handler) and every barge-in is noticed that much late.
        """
        if self._mic_first_chunk_s is None:
            return 0.0
        elapsed_s = self.clock.now_s() - self._mic_first_chunk_s
        return round((elapsed_s - self._mic.total_samples / AUDIO_RATE_HZ) * 1000.0, 1)

    def _clock_time(self, stream_time_s: float) -> float:
        """Session-clock time of a moment in the microphone stream (VAD/turn times are stream times).

        The audio received so far ends "now", so a stream time maps back by the difference.
        """
        return self.clock.now_s() - (self._mic.total_samples / AUDIO_RATE_HZ - stream_time_s)

    # --- turns ---------------------------------------------------------------------------------
    def _start_turn(self, user_audio: np.ndarray, speech_end_s: float, *, speculative: bool = False) -> Turn:
        """A reply to `user_audio`; a speculative one is held until `_release` (else it plays)."""
        turn = Turn(self._next_turn_id)
        self._next_turn_id += 1
        self._turn = turn
        if not speculative:
            turn.released.set()
        work = self._contained(turn, self._run_turn(turn, user_audio, speech_end_s))
        turn.task = asyncio.get_running_loop().create_task(work)
        turn.task.add_done_callback(self._turn_done)
        return turn

    async def say(self, text: str) -> Turn:
        """Speak `text` as a reply without a user turn (greetings, API, tests); returns the turn."""
        turn = Turn(self._next_turn_id)
        self._next_turn_id += 1
        self._turn = turn
        turn.released.set()

        async def tokens():
            yield text

        work = self._contained(turn, self._speak_stream(turn, tokens(), self.clock.now_s()))
        turn.task = asyncio.get_running_loop().create_task(work)

        turn.task.add_done_callback(self._turn_done)
        return turn

    async def _run_turn(self, turn: Turn, user_audio: np.ndarray, speech_end_s: float) -> None:
        heard = self.run_blocking(
            self.asr.transcribe, AudioChunk(user_audio, AUDIO_RATE_HZ), self.asr_language
        )
        transcript: Transcript = checked_transcript(
            await guarded("asr", heard, clock=self.clock, timeout_s=self.stage_timeouts.asr_s)
        )
        if not transcript.text.strip():
            self._emit_turn(turn, "turn_ignored", turn_id=turn.turn_id, reason="no words recognised")
            return
        turn.user_text = transcript.text
        self.language = transcript.language or self.language
        self._emit_turn(
            turn,
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
        await self._speak_stream(turn, self._reply_tokens(turn, messages), speech_end_s)

    async def _speak_stream(self, turn: Turn, tokens, started_s: float) -> None:
        if turn.released.is_set():
            self._claim_queue(turn)
        self._emit_turn(turn, "turn_started", turn_id=turn.turn_id)
        splitter = SentenceStream()
        try:
            async for token in tokens:
                for sentence in splitter.feed(token):
                    await self._speak(turn, sentence, started_s)
            for sentence in splitter.finish():
                await self._speak(turn, sentence, started_s)
            pcm, frames = self.lipsync.flush()
            if frames:
                await self._put(turn, AVSegment(turn.turn_id, pcm, frames))
                turn.queued_samples += len(pcm)
        finally:
            aclose = getattr(tokens, "aclose", None)
            if aclose is not None:
                await aclose()  # closes the LLM stream (HTTP response) on barge-in too
        turn.finished = True
        text = " ".join(text for text, _ in turn.sentences)
        turn.assistant_message = self._append_history({"role": "assistant", "content": text})
        await turn.released.wait()  # a held reply short enough to render fully is published on release
        self._emit("turn_rendered", turn_id=turn.turn_id, text=text)

    async def _put(self, turn: Turn, segment: AVSegment) -> None:
        """Queue for playout; a held (speculative) reply waits here until it is released."""
        if not turn.released.is_set():
            await turn.released.wait()
        self._claim_queue(turn)
        await self.queue.put(segment)

    def _claim_queue(self, turn: Turn) -> None:
        if not turn.queue_claimed:
            self.queue.begin_turn(turn.turn_id)
            turn.queue_claimed = True

    def _turn_done(self, task: asyncio.Task) -> None:
        """Every turn task ends here: an engine failure is reported, never silently lost."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._emit("turn_failed", error=f"{type(error).__name__}: {error}")

    # --- interruption --------------------------------------------------------------------------
    def _hold_for_possible_barge_in(self, release: bool = True) -> None:
        """Pause the reply the moment speech seems to start, before it is confirmed as a barge-in.

        Confirmation needs `min_speech_ms` (200 ms) of speech so that coughs and clicks do not
        interrupt; waiting that long with the avatar still talking is most of the barge-in
        latency. So playback pauses at once (the queue is kept), and either the confirmed
        barge-in flushes it or, when the onset turns out to be a blip, playback resumes where it
        paused: a cough costs a pause of at most `min_speech_ms`, never the reply.
        """
        turn = self._turn
        audible = turn is not None and turn.released.is_set() and self.is_speaking()
        unconfirmed = bool(getattr(self.vad, "onset_pending", False)) or (
            bool(getattr(self.vad, "in_speech", False)) and not self.turn_detector.in_turn
        )
        hold = unconfirmed and audible
        if not hold and not release:
            return  # a confirmed barge-in must flush the queue before playback may go on
        if hold != self.playout.held:
            self.playout.hold(hold)
            self._emit("playback_held" if hold else "playback_resumed", mic_lag_ms=self.mic_lag_ms())

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

    def _emit_turn(self, turn: Turn, kind: str, **fields: Any) -> None:
        """An event of `turn`: held with it while it is speculative, so a void guess shows nothing."""
        event = {"type": kind, "at_s": self.clock.now_s(), **fields}
        if turn.released.is_set():
            self.on_event(event)
        else:
            turn.held_events.append(event)


def _user_content(transcript: Transcript) -> str:
    """The user's words plus what the recogniser heard beyond them, for the LLM to adapt its tone."""
    notes = []
    if transcript.emotion and transcript.emotion.lower() not in ("neutral", "unknown"):
        notes.append(f"speaker sounds {transcript.emotion.lower()}")
    if transcript.events:
        notes.append("audio events: " + ", ".join(transcript.events))
    return transcript.text + (f" ({'; '.join(notes)})" if notes else "")
