"""Script parsing: emotion and pause tags, sentence splitting, TTS-sized chunks, one-line errors."""

from __future__ import annotations

import pytest

from avatar.core.errors import InputError
from avatar.core.text_script import (
    MAX_SCRIPT_CHARS,
    ends_with_sentence_end,
    first_clause_end,
    has_words,
    parse_script,
    split_clauses,
    split_into_pieces,
    split_sentences,
)
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


# --- the one splitter: every engine and every way of speaking uses these ---------------------


def test_mixed_chinese_and_english_split_at_both_kinds_of_sentence_end():
    text = "我用 Python 3.11 写代码。It costs $2.50 a month, e.g. for Dr. Wang! 真的吗？Yes… 好的！OK"
    assert split_sentences(text) == [
        "我用 Python 3.11 写代码。",
        "It costs $2.50 a month, e.g. for Dr. Wang!",
        "真的吗？",
        "Yes…",
        "好的！",
        "OK",
    ]
    # a full stop between Chinese sentences ends one too; decimals and versions never do
    assert split_sentences("版本3.5很好.下一句。") == ["版本3.5很好.", "下一句。"]


def test_line_breaks_end_sentences_only_when_asked():
    text = "Opening hours\nWe open at nine. Welcome"
    assert split_sentences(text) == ["Opening hours We open at nine.", "Welcome"]
    assert split_sentences(text, line_breaks=True) == ["Opening hours", "We open at nine.", "Welcome"]
    assert split_sentences("你好。今天怎么样？\nOK", line_breaks=True) == ["你好。", "今天怎么样？", "OK"]


def test_clauses_break_after_commas_colons_and_semicolons_but_not_inside_numbers():
    assert split_clauses("春天来了，花都开了：真好。", 60) == ["春天来了，", "花都开了：", "真好。"]
    assert split_clauses("春天来了,花都开了、真好", 60) == ["春天来了,", "花都开了、", "真好"]
    assert split_clauses("We sold 3,000 units at 10:30, then left; bye.", 60) == [
        "We sold 3,000 units at 10:30,",
        "then left;",
        "bye.",
    ]
    assert split_clauses("好" * 150, 60) == ["好" * 60, "好" * 60, "好" * 30]
    words = " ".join(["word"] * 30)
    chunks = split_clauses(words, 20)
    assert all(len(chunk) <= 20 for chunk in chunks) and " ".join(chunks) == words and len(chunks) == 8


def test_has_words_is_the_one_rule_for_nothing_to_say():
    for text in ("Hi", "你", "こんにちは", "안녕", "Größe", "2024年", "(a)"):
        assert has_words(text), text
    for text in ("", "  ", "(5)", "1.", "...", "？！", "🙂🎉", "— 42 —"):
        assert not has_words(text), text


@pytest.mark.parametrize(
    ("text", "ended"),
    [
        ("Hello. ", True),
        ("Hello.", False),  # may go on as "Hello.com" or "3.5"
        ("你好。", True),
        ("好的；", True),
        ("Ask Dr. ", False),
        ("Ask J. ", False),  # "J. K. Rowling"
        ("Items No. ", True),  # the next word is assumed to start a sentence
        ('"Really?" ', True),
        ("Wait… ", True),
        ("Well, ", False),
        ("", False),
    ],
)
def test_a_stream_knows_when_its_sentence_has_certainly_ended(text, ended):
    assert ends_with_sentence_end(text) is ended


def test_the_opening_clause_ends_at_its_first_break_once_long_enough_and_followed():
    opening = "We are open Monday to Saturday,"
    assert first_clause_end(opening + " and on", 12) == len(opening)
    assert first_clause_end(opening, 12) is None, "nothing after the break yet"
    assert first_clause_end("Sure, we can do that", 12) is None, "too short"
    assert first_clause_end("Thank you! We open at nine, then", 12) is None, "a sentence ended first"
    assert first_clause_end("We sold 1,000 units this week", 12) is None
    assert first_clause_end("我们周一到周六早上九点营业，周日", 12) == len("我们周一到周六早上九点营业，")


def test_a_reply_streams_in_word_sized_pieces_that_join_back():
    text = "[happy] Hello there! 你好，我是Mia。email help@lumen.example，谢谢"
    pieces = split_into_pieces(text)
    assert "".join(pieces) == text
    assert pieces[:3] == ["[happy] ", "Hello ", "there! "]
    assert "你" in pieces and "好，" in pieces and "Mia。email " in pieces


def test_emotion_tags_take_an_intensity():
    segments = parse_script("[happy:0.5] Hi there. [sad] Oh no. [angry : 1] Stop.")
    assert [(s.emotion, s.intensity) for s in segments] == [("happy", 0.5), ("sad", 1.0), ("angry", 1.0)]
    for bad in ("[happy:1.5] Hi", "[happy:-0.1] Hi", "[happy:much] Hi"):
        with pytest.raises(
            InputError, match=r"^cannot read the intensity in \[happy:.*\] \(write it as a number"
        ):
            parse_script(bad)


@pytest.mark.parametrize("bad", ["Hello\x00 there", "Hi \x1b[31mred", "broken \ud800 text"])
def test_unprintable_characters_are_refused_with_where_they_are(bad):
    """Found by tests/test_fuzz_parsers.py: a NUL used to reach the voice as a 'word'."""
    with pytest.raises(InputError, match=r"unprintable character \(U\+[0-9A-F]{4}\) at character \d+"):
        parse_script(bad)
    assert parse_script("tabs\tand\nnew lines\r\nare fine")[0].text == "tabs and new lines are fine"
