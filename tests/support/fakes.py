"""Scripted stand-ins for engines, for session tests in virtual time.

Each is deterministic and instant unless told to wait on the clock, and has the shape of its
stage's protocol (`avatar.core.protocols`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk, Speech, Transcript, TTSChunk, TurnPrediction


class ScriptedVAD:
    """Emits given VAD events once the processed audio passes their confirmation time."""

    def __init__(
        self,
        events: Sequence,
        sample_rate_hz: int = 16000,
        onset_windows: Sequence[tuple[float, float]] = (),
    ) -> None:
        self._pending = sorted(events, key=lambda e: e.confirmed_at_s)
        self.sample_rate_hz = sample_rate_hz
        self.processed_samples = 0
        self.onset_windows = list(onset_windows)  # [start_s, end_s): an onset awaits confirmation

    @property
    def settled_until_s(self) -> float:
        return self.processed_samples / self.sample_rate_hz

    @property
    def onset_pending(self) -> bool:
        now_s = self.settled_until_s
        return any(start_s <= now_s < end_s for start_s, end_s in self.onset_windows)

    def process(self, chunk: AudioChunk) -> list:
        self.processed_samples += len(chunk.pcm)
        due = [e for e in self._pending if e.confirmed_at_s <= self.settled_until_s]
        self._pending = self._pending[len(due) :]
        return due


class ScriptedASR:
    """Returns the next scripted transcript for every call, and records what it was given."""

    def __init__(self, transcripts: Sequence[Transcript]) -> None:
        self._transcripts = list(transcripts)
        self.calls: list[AudioChunk] = []
        self.language_hints: list[str | None] = []

    def transcribe(self, audio: AudioChunk, language: str | None = None) -> Transcript:
        self.calls.append(audio)
        self.language_hints.append(language)
        return self._transcripts.pop(0)


class ScriptedTurnModel:
    """Answers each end-of-turn check with the next scripted probability of "complete", and records
    the audio it was given (a `TurnModel`, like Smart Turn)."""

    def __init__(
        self,
        probabilities: Sequence[float],
        threshold: float = 0.5,
        unsure_threshold: float = 0.2,
        latency_ms: float = 60.0,
    ) -> None:
        self._probabilities = list(probabilities)
        self.threshold, self.unsure_threshold = threshold, unsure_threshold
        self.latency_ms = latency_ms
        self.calls: list[AudioChunk] = []
        self.languages: list[str | None] = []

    def predict(self, audio: AudioChunk, language: str | None = None) -> TurnPrediction:
        self.calls.append(audio)
        self.languages.append(language)
        p = self._probabilities.pop(0)
        verdict = (
            "complete" if p > self.threshold else "unsure" if p > self.unsure_threshold else "incomplete"
        )
        return TurnPrediction(p, verdict, self.latency_ms)


class ScriptedLLM:
    """Streams scripted replies token by token, `token_delay_s` apart on the given clock."""

    def __init__(self, replies: Sequence[Sequence[str]], clock=None, token_delay_s: float = 0.0) -> None:
        self._replies = [list(r) for r in replies]
        self.clock = clock
        self.token_delay_s = token_delay_s
        self.requests: list[list[dict]] = []
        self.closed_early = 0

    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        self.requests.append([dict(m) for m in messages])
        tokens = self._replies.pop(0)
        finished = False
        try:
            for token in tokens:
                if self.clock is not None and self.token_delay_s:
                    await self.clock.sleep_until(self.clock.now_s() + self.token_delay_s)
                yield token
            finished = True
        finally:
            if not finished:
                self.closed_early += 1


class ToneTTS:
    """Speech of `seconds_per_word` per word: a 220 Hz tone. Records each text and its emotion.

    Like Piper, it raises an InputError for a text with no letter or digit to read ("...")."""

    def __init__(self, sample_rate_hz: int = 16000, seconds_per_word: float = 0.2) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.seconds_per_word = seconds_per_word
        self.spoken: list[str] = []
        self.emotions: list[str | None] = []

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        if not any(char.isalnum() for char in text):
            raise InputError(f"no text to speak in {text!r}: it has no letters or digits")
        self.spoken.append(text)
        self.emotions.append(emotion)
        n = int(len(text.split()) * self.seconds_per_word * self.sample_rate_hz)
        t = np.arange(n) / self.sample_rate_hz
        pcm = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        return Speech(AudioChunk(pcm, self.sample_rate_hz), text, "en")

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        yield TTSChunk(self.synthesize(text, emotion=emotion), is_last=True)

    def close(self) -> None:
        pass


class FlatLipSync:
    """Lip-sync stand-in: 8x8 frames whose colour is the session frame index (mod 256)."""

    def __init__(self, samples_per_frame: int = 640) -> None:
        self.samples_per_frame = samples_per_frame
        self.next_frame = 0
        self.emotions: list[str] = []
        self.strengths: list[float] = []  # the strength each of `emotions` was asked with
        self._pending = np.zeros(0, np.float32)

    def set_expression(self, emotion: str, strength: float = 1.0) -> None:
        self.emotions.append(emotion)
        self.strengths.append(strength)

    def push(self, speech: Speech) -> tuple[np.ndarray, list[np.ndarray]]:
        audio, rows = self.prepare(speech)
        return audio, self.draw(rows)

    def prepare(self, speech: Speech) -> tuple[np.ndarray, np.ndarray]:
        """Audio of the whole frames, and one 'weight row' per frame: its session frame index."""
        audio = np.concatenate([self._pending, speech.audio.pcm.astype(np.float32)])
        whole = len(audio) // self.samples_per_frame * self.samples_per_frame
        self._pending = audio[whole:]
        count = whole // self.samples_per_frame
        rows = np.arange(self.next_frame, self.next_frame + count)
        self.next_frame += count
        return audio[:whole], rows

    def draw(self, rows: np.ndarray) -> list[np.ndarray]:
        return [np.full((8, 8, 3), int(row) % 256, np.uint8) for row in rows]

    def flush(self) -> tuple[np.ndarray, list[np.ndarray]]:
        if not len(self._pending):
            return np.zeros(0, np.float32), []
        padded = np.zeros(self.samples_per_frame, np.float32)
        padded[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, np.float32)
        self.next_frame += 1
        return padded, self.draw(np.array([self.next_frame - 1]))

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)

    def idle_frame(self, tick_index: int | None = None) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)


class PacedStreamingTTS(ToneTTS):
    """A cloned voice on a clock, as a CosyVoice server speaks: streamed, its first chunk is ready
    `first_chunk_s` after the call and the last at `sentence_s`; whole (`streams_audio` False),
    the sentence is ready at `sentence_s`.

    The engine cannot sleep on a virtual clock, so it says when its last result is ready
    (`due_s`) and the session's `run_blocking` (`paced_run_blocking`) waits for that. `closed`
    lists, per stream, how many chunks went out and whether it was closed before its end."""

    def __init__(
        self, clock, *, first_chunk_s: float, sentence_s: float, chunks: int = 4, streams_audio: bool = True
    ) -> None:
        super().__init__(seconds_per_word=0.2)
        self.clock, self.first_chunk_s, self.sentence_s, self.chunks = (
            clock,
            first_chunk_s,
            sentence_s,
            chunks,
        )
        self.streams_audio = streams_audio
        self.due_s: float | None = None
        self.closed: list[tuple[int, bool]] = []

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        self.due_s = self.clock.now_s() + self.sentence_s
        return super().synthesize(text, emotion=emotion)

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        started_s = self.clock.now_s()
        speech = super().synthesize(text, emotion=emotion)
        pieces = np.array_split(speech.audio.pcm, self.chunks)
        handed, finished = 0, False
        try:
            for index, pcm in enumerate(pieces):
                share = index / max(len(pieces) - 1, 1)
                self.due_s = started_s + self.first_chunk_s + (self.sentence_s - self.first_chunk_s) * share
                handed += 1
                yield TTSChunk(
                    Speech(AudioChunk(pcm, self.sample_rate_hz), text, "en"), index == len(pieces) - 1
                )
            finished = True
        finally:
            self.closed.append((handed, not finished))


def paced_run_blocking(clock, voice: PacedStreamingTTS):
    """`run_blocking` for virtual-time sessions: inline, then wait until the voice's result is due."""

    async def run_blocking(fn, *args, **kwargs):
        result = fn(*args, **kwargs)
        due_s, voice.due_s = voice.due_s, None
        if due_s is not None and due_s > clock.now_s():
            await clock.sleep_until(due_s)
        return result

    return run_blocking
