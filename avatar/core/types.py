"""Core value types shared by every stage.

Frozen dataclasses holding numpy arrays only, so they cross threads and processes without
dragging an engine along. Audio is always mono float32 in [-1, 1]; the rate travels with it
because engines disagree (Piper 22.05 kHz, Whisper 16 kHz, the A/V clock 16 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# The expressions every stage understands: inline [tags], CLI flags, the renderer, the TTS.
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised")
# One video clock for the whole toolkit (16 kHz audio / 25 fps = 640 samples a frame).
FRAME_RATE_FPS = 25


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 PCM with its sample rate."""

    pcm: np.ndarray
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / float(self.sample_rate_hz)


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme (IPA symbol or pinyin initial/final) and the time it is spoken."""

    phoneme: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Speech:
    """Synthesized or recorded speech plus whatever timing the engine could tell us.

    `phonemes` is empty when the engine gives no timing (recorded audio, engines without
    alignment); the lip-sync renderer then falls back to the audio signal alone.
    """

    audio: AudioChunk
    text: str = ""
    language: str = ""
    phonemes: tuple[PhonemeTiming, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """What the recogniser heard, with the paralinguistic tags when the engine gives them."""

    text: str
    language: str
    emotion: str | None = None
    events: tuple[str, ...] = ()
    is_final: bool = True


@dataclass(frozen=True)
class Expression:
    """A named facial expression and how strongly to show it (0..1)."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class TTSChunk:
    """A piece of synthesized speech that knows which text it speaks."""

    speech: Speech
    is_last: bool = False


@dataclass(frozen=True)
class VideoFrame:
    """One rendered BGR uint8 frame and its index on the 25 fps clock."""

    image: np.ndarray
    index: int


@dataclass(frozen=True)
class TextSegment:
    """A run of text to speak with the expression active while it is spoken."""

    text: str
    emotion: str = "neutral"
    pause_after_s: float = 0.0
    extra: dict = field(default_factory=dict)
    intensity: float = 1.0  # how strongly the face shows the emotion, 0..1 ("[happy:0.5]")


# Listening: what the VAD and the turn detector tell the conversation.
VADEventKind = Literal["speech_start", "speech_end"]


@dataclass(frozen=True)
class VADEvent:
    """A confirmed change between silence and speech, timed where it happened in the stream.

    `sample_index` counts samples at the VAD's rate (`sample_rate_hz`) from the stream start and
    marks where speech actually began or ended; `confirmed_at_s` is when the VAD could say so
    (after its minimum speech or silence duration), so `confirmed_at_s - time_s` is the decision
    latency. `probability` is the model's speech probability for the frame at `sample_index`.
    """

    kind: VADEventKind
    sample_index: int
    time_s: float
    probability: float
    confirmed_at_s: float
    sample_rate_hz: int = 16000


@dataclass(frozen=True)
class UserSpeechStarted:
    """The user is talking: cancel the avatar's turn. `at_s` is the speech onset in the stream."""

    at_s: float
    sample_index: int
    confirmed_at_s: float


@dataclass(frozen=True)
class UserTurnEnded:
    """The user finished a turn: samples [start_sample, end_sample) at `sample_rate_hz` are it."""

    start_s: float
    end_s: float
    start_sample: int
    end_sample: int
    sample_rate_hz: int
    confirmed_at_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def sample_range(self, sample_rate_hz: int) -> tuple[int, int]:
        """The turn as [start, end) sample indices of a stream at another rate (e.g. 48 kHz mic)."""
        start = self.start_sample * sample_rate_hz // self.sample_rate_hz
        end = -(-self.end_sample * sample_rate_hz // self.sample_rate_hz)  # ceil: never cut the tail
        return start, end


@dataclass(frozen=True)
class TurnEndCheck:
    """The user has been silent `silence_s` after speech that ended at `end_s`: time to ask a turn
    model whether the turn is complete. The answer goes back to the detector (`decide`); until
    then, and after an "incomplete", the turn stays open up to the detector's fallback silence."""

    end_s: float
    end_sample: int
    sample_rate_hz: int
    at_s: float  # stream time at which the check became due
    silence_s: float


TurnEvent = UserSpeechStarted | UserTurnEnded | TurnEndCheck


TurnVerdict = Literal["complete", "unsure", "incomplete"]


@dataclass(frozen=True)
class TurnPrediction:
    """A turn model's answer to a `TurnEndCheck`: how likely the user has finished, what that means
    for the turn (end now / wait as the silence rule would / wait for the fallback), and its cost."""

    probability_complete: float
    verdict: TurnVerdict
    latency_ms: float  # wall time of features + inference
