"""The render tab's tag helper: buttons that insert `[happy]`, `[pause 0.5s]`, ... into the text.

Kept apart from the Gradio layer so the spacing rules (a tag never glues itself to a word) are
unit-tested; the tags themselves are the ones `avatar.core.text_script.parse_script` understands.
"""

from __future__ import annotations

from avatar.core.types import EMOTIONS

# Order of the buttons in the page: the common ones first, neutral (the "reset") last.
EMOTION_TAGS: tuple[str, ...] = tuple(
    f"[{name}]" for name in ("happy", "sad", "angry", "surprised", "neutral") if name in EMOTIONS
)
PAUSE_TAG = "[pause 0.5s]"
ALL_TAGS: tuple[str, ...] = (*EMOTION_TAGS, PAUSE_TAG)


def insert_tag(text: str | None, tag: str, position: int | None = None) -> str:
    """`text` with `tag` inserted at `position` (default: the end), separated by single spaces.

    The browser's textbox does not report its caret to the server, so the page appends; the
    position argument exists for callers that know where the caret is. Unknown tags are refused
    so a typo in the page code cannot produce a script the renderer rejects later.
    """
    if tag not in ALL_TAGS:
        raise ValueError(f"unknown tag {tag!r}; use one of: {', '.join(ALL_TAGS)}")
    text = text or ""
    if position is None or position > len(text):
        position = len(text)
    position = max(0, position)
    before, after = text[:position], text[position:]
    if before and not before[-1].isspace():
        before += " "
    if after and not after[0].isspace():
        after = " " + after
    elif not after:
        after = " "
    return before + tag + after
