"""The contract of every pipeline stage, one `typing.Protocol` each.

Engines never import this module: they conform by shape (structural typing), so `voices/` and
`lipsync/` stay free of the engine layer and a third-party engine needs no base class. What ties
them to these contracts is `tests/test_protocols.py`, which builds every engine the registry names
(tiny or real) and checks it against its protocol with `isinstance` (runtime-checkable: method
names) and `inspect.signature` (keyword names such as `emotion`).

Stage by stage, microphone to screen:

    VoiceActivityDetector -> TurnDetector (+ TurnModel) -> SpeechRecognizer -> ChatModel
      -> (tagged text -> sentences: avatar.speech) -> SpeechSynthesizer [-> VoiceMatcher]
      -> LipSyncRenderer (batch video) | LiveLipSync (paired audio + frames on the live clock)

and, once per photo before any of it, a FaceDetector finds the face the renderers animate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from avatar.core.types import (
        AudioChunk,
        Speech,
        Transcript,
        TTSChunk,
        TurnEvent,
        TurnPrediction,
        VADEvent,
    )

# (start_s, end_s, emotion) or (start_s, end_s, emotion, intensity 0..1) on the speech's clock
EmotionSpans = list[tuple[float, float, str] | tuple[float, float, str, float]]


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """16 kHz microphone audio in, speech start/end events out (Silero VAD)."""

    def process(self, chunk: AudioChunk) -> list[VADEvent]: ...

    def flush(self) -> list[VADEvent]: ...

    def reset(self) -> None: ...


@runtime_checkable
class TurnDetector(Protocol):
    """VAD events in, user turn events out: speech started (barge-in) and turn ended."""

    def process(self, events: Iterable[VADEvent], stream_time_s: float) -> list[TurnEvent]: ...

    def finish(self, stream_time_s: float) -> list[TurnEvent]: ...

    def reset(self) -> None: ...


@runtime_checkable
class TurnModel(Protocol):
    """The user's audio so far (ending in a short silence) in: has the user finished? (Smart Turn)
    `language` (as the recogniser names it; None: not known yet) may choose how to read the answer."""

    def predict(self, audio: AudioChunk, language: str | None = None) -> TurnPrediction: ...


@runtime_checkable
class SpeechRecognizer(Protocol):
    """One finished utterance in, its text with language, emotion and audio events out."""

    def transcribe(self, audio: AudioChunk, language: str | None = None) -> Transcript: ...


@runtime_checkable
class ChatModel(Protocol):
    """Chat messages in, text pieces out as they are generated.

    `stream` is an async generator: closing it (`aclose()`, or cancelling the task iterating it)
    stops generation, which is how barge-in ends a reply."""

    def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]: ...


@runtime_checkable
class SpeechSynthesizer(Protocol):
    """Text in, speech out. `emotion` is one of `avatar.core.types.EMOTIONS` or None.

    Engines that can speak an emotion use it (CosyVoice instructions, prosody on the embedded
    voices); an engine that cannot must still accept the keyword. `stream` yields chunks that carry
    the text they speak, the last one flagged, so playout can start before the whole text is done.
    """

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech: ...

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]: ...

    def close(self) -> None: ...


@runtime_checkable
class VoiceMatcher(Protocol):
    """Synthetic speech in, the same words in a voice closer to the avatar's sample out (DSP)."""

    def match(self, speech: Speech) -> Speech: ...


@runtime_checkable
class FaceDetector(Protocol):
    """A photo (BGR uint8) in, its faces' landmarks out, largest face first (MediaPipe's 478-point
    mesh with blendshapes, or face-alignment's 68 points)."""

    def detect(self, image_bgr: np.ndarray) -> list[Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class LipSyncRenderer(Protocol):
    """Batch video: one prepared photo + speech -> every frame (BGR uint8), with expressions."""

    def render(self, speech: Speech, emotion_spans: EmotionSpans | None = None) -> Iterator[np.ndarray]: ...


@runtime_checkable
class LiveLipSync(Protocol):
    """Live video on the 16 kHz / 25 fps session clock: speech in, paired audio and frames out."""

    def prepare(self, speech: Speech) -> tuple[np.ndarray, Any]: ...

    def idle_frame(self, frame_index: int | None = None) -> np.ndarray: ...

    def reset(self) -> None: ...

    def set_expression(self, emotion: str, strength: float = 1.0) -> None: ...
