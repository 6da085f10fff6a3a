"""Show scripts: Markdown blocks to spoken items, inline markup stripped, emotions carried, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar.broadcast.show_script import MAX_SCRIPT_CHARS, ScriptItem, load_show_script, parse_show_script
from avatar.core.errors import InputError
from avatar.core.types import TextSegment
from tests.conftest import ASSETS

SHOW = """\
# Spring tea hour

<!-- operator: camera 2 on the counter,
     teapot in frame before item 1 -->
[happy]

Welcome to **Leaf & Kettle**!
We brew every cup
to order.

## Today's teas

- Our [green tea](https://example.com/green) is picked in *April*.
* ![tin](tin.png) A __roasted__ oolong.
+ Black tea with `milk`.
1. First, warm the pot.
2) Then wait [pause 1s] and pour.

| tea | price |
|-----|------:|
| green | 4 |

```text
[not a tag] and not spoken
```

---

[pause 3s]

> [sad] Sadly the jasmine
> is sold out.

今天的乌龙茶
很香。[surprised] Really!

***

Title in setext style
=====================

Thanks for watching. <!-- wave --> See you soon.
"""


def test_a_realistic_markdown_show_becomes_exact_items():
    assert parse_show_script(SHOW) == [
        ScriptItem(
            "Welcome to Leaf & Kettle! We brew every cup to order.",
            (TextSegment("Welcome to Leaf & Kettle! We brew every cup to order.", "happy"),),
            7,
        ),
        ScriptItem(
            "Our green tea is picked in April.",
            (TextSegment("Our green tea is picked in April.", "happy"),),
            13,
        ),
        ScriptItem("A roasted oolong.", (TextSegment("A roasted oolong.", "happy"),), 14),
        ScriptItem("Black tea with milk.", (TextSegment("Black tea with milk.", "happy"),), 15),
        ScriptItem("First, warm the pot.", (TextSegment("First, warm the pot.", "happy"),), 16),
        ScriptItem(
            "Then wait [pause 1s] and pour.",
            (TextSegment("Then wait", "happy", 1.0), TextSegment("and pour.", "happy")),
            17,
        ),
        ScriptItem("[pause 3s]", (TextSegment("", "happy", 3.0),), 29),
        ScriptItem(
            "[sad] Sadly the jasmine is sold out.",
            (TextSegment("Sadly the jasmine is sold out.", "sad"),),
            31,
        ),
        ScriptItem(
            "今天的乌龙茶很香。[surprised] Really!",
            (TextSegment("今天的乌龙茶很香。", "sad"), TextSegment("Really!", "surprised")),
            34,
        ),
        ScriptItem(
            "Thanks for watching. See you soon.",
            (TextSegment("Thanks for watching. See you soon.", "surprised"),),
            42,
        ),
    ]


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        ("**bold** and __strong__ words", "bold and strong words"),
        ("*em* and _em_ words", "em and em words"),
        ("***both*** and _**mixed**_", "both and mixed"),
        (
            "keep snake_case_name and my_var, _private_var too",
            "keep snake_case_name and my_var, _private_var too",
        ),
        ("5 * 3 * 2 is thirty", "5 * 3 * 2 is thirty"),
        ("a `code **span**` stays", "a code **span** stays"),
        ('see [the menu](https://example.com/menu "menu") now', "see the menu now"),
        ("![a teapot](pot.png) Look at this pot", "Look at this pot"),
        ("an escaped \\*star\\* and \\_underscore\\_", "an escaped *star* and _underscore_"),
        ("#hashtag is not a heading", "#hashtag is not a heading"),
        ("> quoted\n> > twice", "quoted twice"),
        ("- [x] done task", "done task"),
        ("first line\nsecond line", "first line second line"),
        ("你好，\n世界。", "你好，世界。"),
        ("Hello\n世界", "Hello 世界"),
        ("spaced   out\t text ", "spaced out text"),
    ],
)
def test_inline_markup_is_not_read_aloud(markdown, spoken):
    [item] = parse_show_script(markdown)
    assert item.text == spoken


def test_tags_stay_tags_and_links_stay_links():
    [item] = parse_show_script("[happy] Try the [house blend](https://example.com) [pause 500ms] today.")
    assert item.text == "[happy] Try the house blend [pause 500ms] today."
    assert item.segments == (TextSegment("Try the house blend", "happy", 0.5), TextSegment("today.", "happy"))


def test_errors_name_the_script_by_default():
    with pytest.raises(InputError, match=r"^script line 1: unknown tag \[wave\] \(valid tags"):
        parse_show_script("[wave] Hello.")


def test_each_list_item_is_an_item_and_lazy_lines_continue_it():
    items = parse_show_script("Intro:\n- one\n  still one\n- two\n\n10. ten\n11) eleven")
    assert [(item.text, item.line) for item in items] == [
        ("Intro:", 1),
        ("one still one", 2),
        ("two", 4),
        ("ten", 6),
        ("eleven", 7),
    ]


def test_emotion_carries_across_items_until_the_next_emotion_tag():
    items = parse_show_script(
        "[sad]\n\nOne.\n\nTwo. [angry]\n\nThree.\n\n[neutral] Four. [happy] Five.\n\nSix."
    )
    assert [segment.emotion for item in items for segment in item.segments] == [
        "sad",
        "sad",
        "angry",
        "neutral",
        "happy",
        "happy",
    ]
    assert [item.text for item in items][:2] == ["One.", "Two. [angry]"]  # "[sad]" alone is no item


def test_an_emotion_line_directly_above_text_is_part_of_that_item():
    assert parse_show_script("[happy]\nHello!") == [
        ScriptItem("[happy] Hello!", (TextSegment("Hello!", "happy"),), 1)
    ]


def test_a_pause_only_paragraph_is_a_silent_item_that_may_set_the_emotion():
    items = parse_show_script("Hi.\n\n[pause 1s][pause 500ms]\n\n[sad] [pause 2s]\n\nBye.")
    assert items[1:] == [
        ScriptItem("[pause 1s][pause 500ms]", (TextSegment("", "neutral", 1.5),), 3),
        ScriptItem("[sad] [pause 2s]", (TextSegment("", "sad", 2.0),), 5),
        ScriptItem("Bye.", (TextSegment("Bye.", "sad"),), 7),
    ]


def test_line_numbers_survive_crlf_and_a_byte_order_mark():
    items = parse_show_script("\ufeff# Title\r\n\r\nOne.\r\n\r\n<!-- a\r\nnote -->\r\nTwo.\r\nstill two.")
    assert [(item.text, item.line) for item in items] == [("One.", 3), ("Two. still two.", 7)]


def test_operator_notes_end_a_paragraph_and_may_sit_inside_a_line():
    items = parse_show_script("One.\n<!-- cue the music -->\nTwo.<!-- x -->three <!-- multi\nline --> four")
    assert [item.text for item in items] == ["One.", "Two.three four"]


def test_not_spoken_blocks_drop_out_entirely():
    markdown = (
        "# heading\n###### deep heading\n\nSetext\n------\n\n- - -\n___\n\n~~~\nkept out\n~~~\n\n"
        "| a |\n| - |\n| b |\nrow without pipes\n\nSpoken.\n\n![only an image](x.png)"
    )
    assert [item.text for item in parse_show_script(markdown)] == ["Spoken."]


def test_a_code_block_may_contain_a_fence_of_another_kind_and_backticks_inline_are_no_fence():
    markdown = "````\n```\nnot spoken\n```\n````\n\n```inline``` code is spoken"
    assert [item.text for item in parse_show_script(markdown)] == ["inline code is spoken"]


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("", "show is empty", "one paragraph per item"),
        (" \n\t\n", "show is empty", "one paragraph per item"),
        (
            "x" * (MAX_SCRIPT_CHARS + 1),
            "show has 100,001 characters, more than the 100,000",
            "several scripts",
        ),
        ("# Only a heading\n\n<!-- and a note -->", "show has nothing to speak", "not read aloud"),
        ("[happy]\n\n[pause 2s]", "show has nothing to speak", "not read aloud"),
        ("One.\n\nTwo\nthree [wave] four.", r"show line 3: unknown tag \[wave\]", "valid tags: [neutral]"),
        ("One.\n\n- Two [happy", "show line 3: unmatched '\\['", "close every [tag]"),
        ("One.\n\n\n[pause 45s]", "show line 4: pause .* longer than 30 s", "shorter pause"),
        ("One.\n\n[pause 2] Two.", "show line 3: cannot read the pause tag", "[pause 0.5s]"),
        ("One.\n\n```\ncode\n", "show line 3: the code block opened here is never closed", "```"),
        ("One.\n<!-- note\nstill a note\n", "show line 2: the <!-- note opened here is never closed", "-->"),
    ],
)
def test_bad_scripts_are_input_errors_naming_the_source_and_line(text, message, hint):
    with pytest.raises(InputError, match=message) as caught:
        parse_show_script(text, source="show")
    assert hint in caught.value.hint


def test_load_reads_utf8_with_or_without_bom(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# Show\n\nHello there.\n", encoding="utf-8")
    with_bom = tmp_path / "bom.txt"
    with_bom.write_bytes("\ufeffHello there.\n".encode())
    expected = [ScriptItem("Hello there.", (TextSegment("Hello there."),), 3)]
    assert load_show_script(plain) == expected
    assert load_show_script(str(with_bom)) == [ScriptItem("Hello there.", (TextSegment("Hello there."),), 1)]


def test_load_errors_name_the_path(tmp_path):
    def error_for(path) -> InputError:
        with pytest.raises(InputError) as caught:
            load_show_script(path)
        assert str(path) in caught.value.message
        return caught.value

    assert "not found" in error_for(tmp_path / "missing.md").message
    assert "is a folder" in error_for(tmp_path).message
    latin1 = tmp_path / "latin1.md"
    latin1.write_bytes("Caf\xe9 au lait.".encode("latin-1"))
    assert error_for(latin1).hint == "save it as UTF-8"
    empty = tmp_path / "empty.md"
    empty.write_text("\n  \n", encoding="utf-8")
    assert "is empty" in error_for(empty).message
    long = tmp_path / "long.md"
    long.write_text("a" * (MAX_SCRIPT_CHARS + 1), encoding="utf-8")
    assert "100,001 characters" in error_for(long).message
    huge = tmp_path / "huge.md"
    huge.write_bytes(b"a" * (4 * MAX_SCRIPT_CHARS + 4))
    assert "too long for a show script" in error_for(huge).message
    bad_tag = tmp_path / "bad_tag.md"
    bad_tag.write_text("Fine.\n\n[wave] Hi.", encoding="utf-8")
    assert error_for(bad_tag).message == f"{bad_tag} line 3: unknown tag [wave]"


def test_load_reports_an_unreadable_file(tmp_path, monkeypatch):
    locked = tmp_path / "locked.md"
    locked.write_text("Hello.", encoding="utf-8")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # chmod 0 would not stop a test running as root
    with pytest.raises(InputError, match=r"cannot read show script .*locked.md: Permission denied"):
        load_show_script(locked)


def test_the_sample_shop_show_parses():
    items = load_show_script(ASSETS / "scripts" / "shop_show.md")
    assert len(items) == 10
    assert items[0].line == 8 and items[0].text.startswith(
        "Hello and welcome to Leaf & Kettle, the little tea shop"
    )
    assert [item.segments[0].emotion for item in items] == ["happy"] * 7 + ["surprised", "neutral", "happy"]
    assert items[5] == ScriptItem("[pause 2s]", (TextSegment("", "happy", 2.0),), 17)
    assert not any("Brewing tips" in item.text or "Operator" in item.text for item in items)
    assert "hot, not boiling: about eighty degrees" in items[6].text
