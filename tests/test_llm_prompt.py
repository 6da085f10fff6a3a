"""The system prompt and the filter that makes a model's streamed text speakable, with the sentence splitter."""

from __future__ import annotations

import pytest

from avatar.core.types import EMOTIONS
from avatar.llm.prompt import SpokenTextFilter, normalize_tag, system_prompt
from avatar.speech.sentence_stream import SentenceStream, SpokenSentence


def filtered(pieces: list[str]) -> str:
    text_filter = SpokenTextFilter()
    return "".join(text_filter.feed(piece) for piece in pieces) + text_filter.finish()


def sentences(pieces: list[str]) -> list[SpokenSentence]:
    """Model pieces -> filter -> sentence splitter, as both LLM clients feed a session."""
    text_filter, splitter = SpokenTextFilter(), SentenceStream()
    out = []
    for piece in pieces:
        out += splitter.feed(text_filter.feed(piece))
    out += splitter.feed(text_filter.finish())
    return out + splitter.finish()


def test_system_prompt_keeps_the_persona_and_asks_for_short_tagged_spoken_sentences():
    prompt = system_prompt("You are Mona, the shop's assistant.")
    assert prompt.startswith("You are Mona, the shop's assistant.")
    assert all(f"[{name}]" in prompt for name in EMOTIONS)
    assert "one to three short spoken sentences" in prompt
    assert "no markdown" in prompt and "no emoji" in prompt
    assert "(speaker sounds sad)" in prompt  # the note conversation._user_content writes
    assert "language the user speaks" in prompt


def test_system_prompt_names_the_language_and_has_a_default_persona():
    assert "Answer in Mandarin Chinese" in system_prompt("", "zh")
    assert system_prompt("  ").startswith("You are a friendly talking avatar.")
    assert "Answer in German." in system_prompt("Du bist Mona.", "German")


def test_markdown_and_emoji_are_removed_and_lines_become_sentences():
    text = "## Opening hours\nWe are open:\n- **Monday** to Friday 😀\n* Sat `9-5`\n1. Sunday closed\n"
    assert filtered([text]) == "Opening hours. We are open: Monday to Friday . Sat 9-5. Sunday closed. "
    assert filtered(["第一行\n", "第二行"]) == "第一行。第二行"


def test_text_that_only_looks_like_markup_is_kept():
    assert filtered(["-5 degrees and 3.5 cm, #1 fan"]) == "-5 degrees and 3.5 cm, #1 fan"
    assert filtered(["2024 was good"]) == "2024 was good"


def test_tags_are_normalized_known_synonyms_mapped_and_unknown_ones_dropped():
    assert filtered(["[Happy] a [excited] b [emotion: sad] c [laughs] d [1] e [pause 0.5s] f"]) == (
        "[happy] a [happy] b [sad] c  d  e [pause 0.5s] f"
    )
    assert normalize_tag("SURPRISED") == "surprised"
    assert normalize_tag("dancing") is None


def test_an_unclosed_bracket_is_spoken_as_text_at_the_end_or_once_too_long():
    assert filtered(["See [1"]) == "See [1"
    long_text = "[" + "x" * 60 + " end"
    assert filtered([long_text]) == long_text


@pytest.mark.parametrize(
    "text",
    [
        "[happy] **Great** question!\n- one\n- two\n[sad] Sorry, [laughs] no.",
        "## 标题\n1. [surprised] 真的吗？\n2. 是的。",
        "-5 degrees [excited] 12) twelve\n\n> quoted [pause 1s] done [unclosed",
    ],
)
def test_output_does_not_depend_on_where_the_stream_was_split(text):
    whole = filtered([text])
    assert filtered(list(text)) == whole  # one character per piece
    for cut in range(1, len(text)):
        assert filtered([text[:cut], text[cut:]]) == whole


def test_tags_split_across_pieces_reach_the_sentence_splitter_whole():
    pieces = [
        "[hap",
        "py] **Gr",
        "eat** news! ",
        "[exc",
        "ited] The",
        " shop\n- opens",
        " at nine",
        "\n[lau",
        "ghs]",
    ]
    assert sentences(pieces) == [
        SpokenSentence("Great news!", "happy"),
        SpokenSentence("The shop. opens at nine.", "happy"),
    ]
    assert sentences(["[s", "ad] Sorry", " about that. ", "[hap", "py]", " Bye!"]) == [
        SpokenSentence("Sorry about that.", "sad"),
        SpokenSentence("Bye!", "happy"),
    ]
