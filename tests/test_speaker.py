"""The one way to speak: which voice, the sentence's emotion, voice matching, skipping wordless text.

Engines are recording fakes: every assertion is about what a voice was asked to say, with which
emotion, and what came back.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from avatar.core.errors import InputError
from avatar.core.protocols import SpeechSynthesizer, VoiceMatcher
from avatar.core.types import AudioChunk, PhonemeTiming, Speech
from avatar.render.request import RenderRequest
from avatar.speech.speaker import NOTHING_TO_SAY, AvatarVoice, SkippedSentence, speak, speak_now
from tests.support.fakes import ToneTTS


class LabelledTTS(ToneTTS):
    """A ToneTTS whose speech says which engine made it (in `language`) and carries timing."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        speech = super().synthesize(text, emotion=emotion)
        timing = (PhonemeTiming("a", 0.0, speech.audio.duration_s),)
        return replace(speech, language=self.label, phonemes=timing)


class HalvingMatcher:
    """A VoiceMatcher that halves the amplitude, so matched speech is recognisable."""

    def __init__(self) -> None:
        self.matched = 0

    def match(self, speech: Speech) -> Speech:
        self.matched += 1
        return replace(speech, audio=AudioChunk(speech.audio.pcm * 0.5, speech.audio.sample_rate_hz))


def embedded_voices() -> dict[str, LabelledTTS]:
    return {"en": LabelledTTS("en"), "zh": LabelledTTS("zh")}


async def inline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def test_the_fakes_and_the_avatar_voice_have_the_stage_shapes():
    engines = embedded_voices()
    voice = AvatarVoice(engines.__getitem__, matcher=HalvingMatcher())
    assert isinstance(voice, SpeechSynthesizer) and isinstance(ToneTTS(), SpeechSynthesizer)
    assert isinstance(HalvingMatcher(), VoiceMatcher)


def test_embedded_voice_follows_the_language_of_each_sentence_and_gets_the_emotion():
    engines = embedded_voices()
    voice = AvatarVoice(engines.__getitem__)
    assert voice.synthesize("Good morning.", emotion="happy").language == "en"
    assert voice.synthesize("早上好。", emotion="sad").language == "zh"
    assert (engines["en"].emotions, engines["zh"].emotions) == (["happy"], ["sad"])
    pinned = AvatarVoice(engines.__getitem__, language="zh")
    assert pinned.synthesize("Hello.").language == "zh", "a configured language wins over detection"


def test_a_voice_profile_is_matched_on_the_embedded_voice_with_its_timing_kept():
    engines, matcher = embedded_voices(), HalvingMatcher()
    voice = AvatarVoice(engines.__getitem__, matcher=matcher)
    plain = engines["en"].synthesize("Hello there.")
    matched = voice.synthesize("Hello there.", emotion="happy")
    np.testing.assert_allclose(matched.audio.pcm, plain.audio.pcm * 0.5)
    assert matched.phonemes == plain.phonemes, "the mouth keeps its timing"
    chunks = list(voice.stream("Hello there.", emotion="sad"))
    assert [(c.speech.text, c.is_last) for c in chunks] == [("Hello there.", True)]
    np.testing.assert_allclose(chunks[0].speech.audio.pcm, plain.audio.pcm * 0.5)
    assert matcher.matched == 2 and engines["en"].emotions[-1] == "sad"


def test_a_cloned_voice_speaks_alone_with_the_emotion_and_no_matching_on_top():
    engines, matcher, cloned = embedded_voices(), HalvingMatcher(), LabelledTTS("cloned")
    voice = AvatarVoice(engines.__getitem__, matcher=matcher, cloned=cloned)
    speech = voice.synthesize("早上好。", emotion="angry")
    assert speech.language == "cloned" and cloned.emotions == ["angry"]
    np.testing.assert_allclose(speech.audio.pcm, cloned.synthesize("早上好。").audio.pcm)
    assert [c.speech.language for c in voice.stream("Hi.", emotion="happy")] == ["cloned"]
    assert matcher.matched == 0 and not engines["en"].spoken and not engines["zh"].spoken


@pytest.mark.parametrize("text", ["(5)", "1.", "...", "🙂", "—", "  "])
def test_a_sentence_without_a_word_is_skipped_and_reported_never_sent_to_the_voice(text):
    tts, skipped = ToneTTS(), []
    assert speak_now(tts, text, "happy", on_skip=skipped.append) is None
    assert asyncio.run(speak(tts, text, "happy", run_blocking=inline, on_skip=skipped.append)) is None
    assert skipped == [SkippedSentence(text, NOTHING_TO_SAY)] * 2 and tts.spoken == []


@pytest.mark.parametrize("text", ["OK.", "你好", "Größe?", "こんにちは", "2024年"])
def test_a_word_in_any_script_is_spoken_with_the_emotion(text):
    tts = ToneTTS()
    assert speak_now(tts, text, "surprised") is not None
    assert asyncio.run(speak(tts, text, "sad", run_blocking=inline)) is not None
    assert tts.spoken == [text, text] and tts.emotions == ["surprised", "sad"]


def test_a_sentence_the_voice_refuses_is_skipped_live_but_fails_a_video():
    class Refusing(ToneTTS):
        def synthesize(self, text, *, emotion=None):
            raise InputError("no Mandarin text to speak")

    skipped = []
    assert asyncio.run(speak(Refusing(), "Hello.", None, run_blocking=inline, on_skip=skipped.append)) is None
    assert skipped == [SkippedSentence("Hello.", "no Mandarin text to speak")]
    with pytest.raises(InputError, match="no Mandarin text"):  # a file must not silently lose words
        speak_now(Refusing(), "Hello.")


def test_a_rendered_script_speaks_each_sentence_with_its_segments_emotion(tmp_path: Path):
    from avatar.render.job import speech_from_text

    english = LabelledTTS("en")
    engines = SimpleNamespace(choice=SimpleNamespace(tts="embedded"), tts=lambda language: english)
    request = RenderRequest(
        tmp_path / "face.png",
        tmp_path / "out.mp4",
        text="[happy] Great news. (5). [pause 0.4s] [sad] But sorry.",
        emotion="neutral",
    )
    assembled = speech_from_text(request, engines, None)
    assert english.spoken == ["Great news.", "But sorry."]
    assert english.emotions == ["happy", "sad"]
    assert assembled.speech.text == "Great news. But sorry."
    assert [span[2] for span in assembled.emotion_spans] == ["happy", "sad"]
