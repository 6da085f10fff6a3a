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

The phoneme timing the engine reports stays with the speech (matching keeps every sample where
it was; an emotion's speaking rate scales the times with the audio), which is what the lip-sync
needs. Text is cut into sentences with the one splitter,
`avatar.core.text_script` (a live reply token by token through `avatar.speech.sentence_stream`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from avatar.core.errors import AvatarError
from avatar.core.text_script import has_words

if TYPE_CHECKING:
    from avatar.core.protocols import SpeechSynthesizer, VoiceMatcher
    from avatar.core.types import Speech, TTSChunk

NOTHING_TO_SAY = "nothing to say: no word in it"


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
    ) -> None:
        if embedded is None and cloned is None:
            raise ValueError("an avatar voice needs an embedded voice or a cloned one")
        self._embedded, self._language, self._matcher, self._cloned = embedded, language, matcher, cloned

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
    return voice.synthesize(text, emotion=emotion)


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
        return await run_blocking(voice.synthesize, text, emotion=emotion)
    except AvatarError as error:
        _report(on_skip, SkippedSentence(text, str(error)))
        return None


def _report(on_skip: SkipSink | None, skipped: SkippedSentence) -> None:
    if on_skip is not None:
        on_skip(skipped)
