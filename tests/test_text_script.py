"""Script parsing: emotion and pause tags, sentence splitting, TTS-sized chunks, one-line errors."""

from __future__ import annotations

import pytest

from avatar.core.errors import InputError
from avatar.core.text_script import MAX_SCRIPT_CHARS, parse_script, split_sentences
from avatar.core.types import TextSegment


def test_emotion_tags_start_segments():
    assert parse_script("[happy] Hello! [sad] Oh no.") == [
        TextSegment("Hello!", "happy"),
        TextSegment("Oh no.", "sad"),
    ]


def test_text_before_any_tag_uses_the_default_emotion_and_tags_are_case_insensitive():
    assert parse_script("Hi there.  [SURPRISED]\n Really?", default_emotion="angry") == [
        TextSegment("Hi there.", "angry"),
        TextSegment("Really?", "surprised"),
    ]


def test_pauses_attach_to_the_text_before_them_and_keep_the_emotion():
    assert parse_script("[happy] One. [pause 0.5s] Two. [pause 250ms][pause 1 s] [sad] Three. [pause]") == [
        TextSegment("One.", "happy", 0.5),
        TextSegment("Two.", "happy", 1.25),
        TextSegment("Three.", "sad", 0.5),
    ]


def test_a_leading_pause_is_a_silent_segment():
    assert parse_script("[pause 800ms] Hello.") == [TextSegment("", "neutral", 0.8), TextSegment("Hello.")]


def test_chinese_text_with_tags():
    assert parse_script("[happy]你好！今天天气很好。[Sad]可是我要走了。") == [
        TextSegment("你好！今天天气很好。", "happy"),
        TextSegment("可是我要走了。", "sad"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the text is empty"),
        (" \n\t ", "the text is empty"),
        ("[happy] [pause 1s]", "no words to speak"),
        ("[excited] Hi", r"unknown tag \[excited\] \(valid tags: \[neutral\], \[happy\], \[sad\]"),
        ("[pause 2] Hi", "cannot read the pause tag"),
        ("[pause 45s] Hi", "longer than 30 s"),
        ("Hi [happy", "unmatched '\\['"),
        ("x" * (MAX_SCRIPT_CHARS + 1), "split it into several jobs"),
    ],
)
def test_bad_scripts_are_one_line_input_errors(text, message):
    with pytest.raises(InputError, match=message) as caught:
        parse_script(text)
    assert "\n" not in str(caught.value)


def test_unknown_default_emotion_is_refused():
    with pytest.raises(InputError, match="unknown emotion 'bored'"):
        parse_script("Hi", default_emotion="bored")


def test_english_sentences_keep_abbreviations_numbers_and_quotes_together():
    text = (
        "Dr. Smith paid $3.5 million, e.g. for J. K. Rowling's notes. Wow!! "
        '"Really?" she said. I was... thinking. Visit example.com today. '
        "I said no. No. 5 is next. It ends at 5 p.m. Then we go"
    )
    assert split_sentences(text) == [
        "Dr. Smith paid $3.5 million, e.g. for J. K. Rowling's notes.",
        "Wow!!",
        '"Really?" she said.',
        "I was... thinking.",
        "Visit example.com today.",
        "I said no.",
        "No. 5 is next.",
        "It ends at 5 p.m.",
        "Then we go",
    ]


def test_chinese_sentences_split_on_full_width_punctuation():
    assert split_sentences("你好。今天天气很好！你去吗？我们走吧……好的；「再见！」她说。OK.中文") == [
        "你好。",
        "今天天气很好！",
        "你去吗？",
        "我们走吧……",
        "好的；",
        "「再见！」",
        "她说。",
        "OK.",
        "中文",
    ]


def test_long_sentences_are_cut_at_commas_then_spaces_then_anywhere():
    clauses = ", ".join(f"clause number {k} goes here" for k in range(20)) + "."
    chunks = split_sentences(clauses, max_chars=100)
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert all(chunk.endswith((",", ".")) for chunk in chunks), "cut after a comma"
    assert " ".join(chunks) == clauses

    words = " ".join(["word"] * 80)
    chunks = split_sentences(words, max_chars=50)
    assert all(len(chunk) <= 50 for chunk in chunks) and " ".join(chunks) == words

    chinese = "长" * 130 + "。"
    assert split_sentences(chinese, max_chars=50) == ["长" * 50, "长" * 50, "长" * 30 + "。"]


def test_whitespace_is_collapsed_and_empty_text_gives_no_sentences():
    assert split_sentences("  One\n\ntwo  three.   Four. ") == ["One two three.", "Four."]
    assert split_sentences("   ") == []


def test_default_chunk_limit_is_300():
    chunks = split_sentences(", ".join(["abcdefghij"] * 100) + ".")
    assert max(len(chunk) for chunk in chunks) <= 300 and len(chunks) == 4
