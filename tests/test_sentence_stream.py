"""Token stream -> sentences: emitted as soon as they are certainly complete, tags become emotions."""

from __future__ import annotations

from avatar.speech.sentence_stream import SentenceStream, SpokenSentence


def run(tokens: list[str]) -> list[tuple[int, SpokenSentence]]:
    """(index of the token after which each sentence came out, sentence); index len = finish()."""
    stream = SentenceStream()
    out = []
    for index, token in enumerate(tokens):
        out += [(index, s) for s in stream.feed(token)]
    out += [(len(tokens), s) for s in stream.finish()]
    return out


def test_sentences_come_out_as_soon_as_they_are_certain():
    tokens = ["Hel", "lo!", " How", " are", " you", "?", " Fine."]
    assert run(tokens) == [
        (2, SpokenSentence("Hello!", "neutral")),  # the space after "!" settles it
        (6, SpokenSentence("How are you?", "neutral")),
        (7, SpokenSentence("Fine.", "neutral")),
    ]


def test_chinese_sentences_end_without_a_space():
    assert run(["你好", "，欢迎", "光临。", "今天", "天气很好"]) == [
        (2, SpokenSentence("你好，欢迎光临。", "neutral")),
        (5, SpokenSentence("今天天气很好", "neutral")),
    ]


def test_emotion_tags_split_across_tokens_are_removed_and_applied():
    tokens = ["[hap", "py] Great", " news! ", "[s", "ad]", " But it", " rains."]
    assert [s for _, s in run(tokens)] == [
        SpokenSentence("Great news!", "happy"),
        SpokenSentence("But it rains.", "sad"),
    ]


def test_unknown_tags_are_dropped_and_a_stray_bracket_is_spoken_at_the_end():
    assert [s.text for _, s in run(["[laughs] Ok", ". See [1"])] == ["Ok.", "See [1"]


def test_abbreviations_do_not_end_a_sentence_early():
    tokens = ["Ask ", "Dr. ", "Smith ", "today. ", "Bye"]
    assert [s.text for _, s in run(tokens)] == ["Ask Dr. Smith today.", "Bye"]


def test_run_on_text_is_cut_at_a_clause_break_before_the_reply_ends():
    stream = SentenceStream(max_chars=40)
    emitted = []
    for word in ("one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, " * 2).split(
        " "
    ):
        emitted += stream.feed(word + " ")
    assert emitted, "long text without a full stop must still reach the TTS"
    assert all(len(s.text) <= 40 for s in emitted)


def test_a_long_opening_sentence_speaks_its_first_clause_as_soon_as_it_arrives():
    tokens = [
        "[happy] We are",
        " open Monday to Saturday",
        " from 9 am to 8 pm,",
        " and on",
        " Sunday 10 to 6.",
        " Bye.",
    ]
    assert run(tokens) == [
        (
            3,
            SpokenSentence("We are open Monday to Saturday from 9 am to 8 pm,", "happy"),
        ),  # the next word settles it
        (5, SpokenSentence("and on Sunday 10 to 6.", "happy")),
        (6, SpokenSentence("Bye.", "happy")),
    ]
    # Chinese clause marks need no space; later sentences are never cut this way.
    assert [
        s.text for _, s in run(["我们周一到周六早上九点", "营业，周日", "十点营业。", "欢迎，再见。"])
    ] == [
        "我们周一到周六早上九点营业，",
        "周日十点营业。",
        "欢迎，再见。",
    ]


def test_short_openings_numbers_and_early_sentence_ends_are_not_cut():
    assert [s.text for _, s in run(["Sure, we can do that."])] == ["Sure, we can do that."]
    assert [s.text for _, s in run(["We sold 1,000 units", " this week."])] == [
        "We sold 1,000 units this week."
    ]
    assert [s.text for _, s in run(["Thank you! We open at nine, then close at six."])] == [
        "Thank you!",
        "We open at nine, then close at six.",
    ]
    stream = SentenceStream(first_clause_min_chars=None)
    assert [s.text for s in stream.feed("We are open from nine to eight, every day. ")] == [
        "We are open from nine to eight, every day."
    ]


def test_an_intensity_tag_sets_how_strongly_the_face_shows_the_emotion():
    tokens = ["[happy:0", ".4] Nice.", " [sad] Oh.", " [happy:lots] Still sad."]
    assert [s for _, s in run(tokens)] == [
        SpokenSentence("Nice.", "happy", 0.4),
        SpokenSentence("Oh.", "sad", 1.0),
        SpokenSentence("Still sad.", "sad", 1.0),  # a tag it cannot read is dropped, not spoken
    ]
