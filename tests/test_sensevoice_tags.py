"""SenseVoice tag parsing on strings in the model's real output format (and funasr's emoji form)."""

from __future__ import annotations

import pytest

from avatar.asr.sensevoice_tags import EMOTIONS, EVENTS, SenseVoiceSegment, SenseVoiceTags, parse_sensevoice

# Raw model tag -> the lowercase emotion name a Transcript carries.
RAW_EMOTIONS = {
    "HAPPY": "happy",
    "SAD": "sad",
    "ANGRY": "angry",
    "NEUTRAL": "neutral",
    "FEARFUL": "fearful",
    "DISGUSTED": "disgusted",
    "SURPRISED": "surprised",
    "EMO_UNKNOWN": "unknown",
}


def test_one_utterance_in_the_models_format():
    tags = parse_sensevoice("<|en|><|HAPPY|><|Speech|><|withitn|>Hello there.")
    assert tags == SenseVoiceTags(
        text="Hello there.",
        language="en",
        emotion="happy",
        events=("Speech",),
        itn=True,
        other_tags=(),
        segments=(SenseVoiceSegment("Hello there.", "en", "happy", ("Speech",), True, ()),),
    )


@pytest.mark.parametrize(("raw_tag", "emotion"), RAW_EMOTIONS.items())
def test_every_emotion(raw_tag, emotion):
    tags = parse_sensevoice(f"<|zh|><|{raw_tag}|><|Speech|><|woitn|>欢迎大家")
    assert tags.emotion == emotion
    assert (tags.text, tags.language, tags.itn) == ("欢迎大家", "zh", False)
    assert set(RAW_EMOTIONS.values()) == set(EMOTIONS)


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_label(event):
    tags = parse_sensevoice(f"<|en|><|NEUTRAL|><|{event}|><|woitn|>ok")
    assert tags.events == (event,)
    assert tags.other_tags == ()


def test_required_event_spellings_are_the_tokenizers():
    assert {"Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough"} <= set(EVENTS)


@pytest.mark.parametrize(
    ("raw_language", "language"),
    [("zh", "zh"), ("en", "en"), ("yue", "yue"), ("ja", "ja"), ("ko", "ko"), ("nospeech", "")],
)
def test_every_language(raw_language, language):
    assert parse_sensevoice(f"<|{raw_language}|><|NEUTRAL|><|Speech|><|woitn|>").language == language


def test_no_speech_with_an_event_only():
    tags = parse_sensevoice("<|nospeech|><|EMO_UNKNOWN|><|Laughter|><|woitn|>")
    assert (tags.text, tags.language, tags.emotion, tags.events, tags.itn) == (
        "",
        "",
        "unknown",
        ("Laughter",),
        False,
    )


def test_several_segments_join_text_and_summarise_tags():
    raw = (
        "<|en|><|NEUTRAL|><|Speech|><|withitn|>It is 3 o'clock."
        "<|en|><|HAPPY|><|Laughter|><|withitn|>Ha, that's funny!"
        "<|zh|><|HAPPY|><|Speech|><|withitn|>好的。"
        "<|zh|><|SAD|><|Applause|><|withitn|>谢谢"
    )
    tags = parse_sensevoice(raw)
    assert tags.text == "It is 3 o'clock. Ha, that's funny!好的。谢谢"  # no space next to Han
    assert len(tags.segments) == 4
    assert [segment.language for segment in tags.segments] == ["en", "en", "zh", "zh"]
    assert tags.language == "en"  # 2 vs 2: the earliest wins
    assert tags.emotion == "happy"  # the most frequent
    assert tags.events == ("Speech", "Laughter", "Applause")  # first appearance, once each
    assert tags.itn is True


def test_emotion_prefers_a_known_one_over_unknown():
    raw = "<|en|><|EMO_UNKNOWN|><|Speech|><|woitn|>a<|en|><|EMO_UNKNOWN|><|Speech|><|woitn|>b<|en|><|SAD|><|Speech|><|woitn|>c"
    assert parse_sensevoice(raw).emotion == "sad"
    assert parse_sensevoice(raw).text == "a b c"


def test_text_without_tags():
    tags = parse_sensevoice("  just words,\nno tags ")
    assert tags == SenseVoiceTags(
        text="just words, no tags",
        language="",
        emotion=None,
        events=(),
        itn=False,
        segments=(SenseVoiceSegment("just words, no tags", None, None, (), None, ()),),
    )
    assert parse_sensevoice("").text == ""


def test_garbage_and_unknown_tags_are_kept_aside():
    raw = "<|en|><|HAPPY|><|Event_UNK|><|GBG|><|woitn|>one <|foo|>two<||> three <|Speech|><| bad <|foo|>"
    tags = parse_sensevoice(raw)
    assert tags.other_tags == ("<|Event_UNK|>", "<|GBG|>", "<|foo|>", "<||>")
    assert tags.text == "one two three <| bad"  # an unclosed "<|" is text, not a tag
    assert tags.events == ("Speech",)
    assert (tags.language, tags.emotion, tags.itn) == ("en", "happy", False)


def test_tags_in_any_case_and_order():
    tags = parse_sensevoice("<|Laughter|><|happy|><|EN|>hi")
    assert (tags.text, tags.language, tags.emotion, tags.events) == ("hi", "en", "happy", ("Laughter",))
    assert len(tags.segments) == 1  # a language tag after tags only still opens the first segment


def test_funasr_emoji_form_is_read_back():
    # rich_transcription_postprocess output: events in front, emotion behind.
    tags = parse_sensevoice("🎼😀Hello there.😊")
    assert (tags.text, tags.emotion, tags.events) == ("Hello there.", "happy", ("BGM", "Laughter"))
    for emoji, event in {"👏": "Applause", "😭": "Cry", "🤧": "Sneeze", "😷": "Cough"}.items():
        assert parse_sensevoice(f"{emoji}ok").events == (event,)
    for emoji, emotion in {
        "😔": "sad",
        "😡": "angry",
        "😰": "fearful",
        "🤢": "disgusted",
        "😮": "surprised",
    }.items():
        assert parse_sensevoice(f"ok{emoji}").emotion == emotion
    nothing = parse_sensevoice("❓")
    assert (nothing.text, nothing.language, nothing.other_tags) == ("", "", ("<|Event_UNK|>",))
