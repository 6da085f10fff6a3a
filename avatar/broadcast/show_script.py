"""The script a livestream avatar reads on air, written as plain text or Markdown.

Operators write the show in an ordinary editor and preview it as Markdown, so the parser follows
what that preview shows: headings, rules, code blocks, tables and `<!-- notes -->` are for the
operator, not the audience, and markup such as `**bold**` must not be read aloud. Each paragraph
or list item becomes one `ScriptItem`, the unit the host queues, skips and shows on the operator
page. Emotion tags carry from item to item, as they would inside one long text, so a line holding
just `[happy]` sets the mood for everything after it.

Block rules follow CommonMark where it matters to a reader: a line of `===` or `---` right under
a paragraph turns that paragraph into a heading (leave a blank line before a `---` rule), a
`<!-- note -->` on lines of its own ends the paragraph before it, and a code block or comment left
open is an error rather than a silently swallowed rest of the show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import InputError
from avatar.core.text_files import read_utf8_text
from avatar.core.text_script import MAX_SCRIPT_CHARS, parse_script
from avatar.core.types import EMOTIONS, TextSegment

__all__ = ["MAX_SCRIPT_CHARS", "ScriptItem", "load_show_script", "parse_show_script"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WHITESPACE = re.compile(r"\s+")
_TAG = re.compile(r"\[([^\[\]]*)\]")  # the tag syntax of avatar.core.text_script

# Block structure, tested on one line after its `>` quote markers are removed.
_QUOTE = re.compile(r"^\s{0,3}>[ \t]?")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s|$)")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(?:=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])(?:\s+|$)")
_TASK_BOX = re.compile(r"^\[[ xX]\]\s+")  # "- [x] done": the box is not an emotion tag
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")

# Inline markup. `_` emphasis only opens and closes outside words, so snake_case stays intact.
# An emphasis body never runs past the next delimiter of its kind (a `_` inside a word aside), so
# each opener scans only to the next candidate closer: linear time even for "*a *a *a ...".
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_IMAGE = re.compile(r"!\[[^\[\]]*\]\([^()]*\)")
_LINK = re.compile(r"\[([^\[\]]*)\]\([^()]*\)")
_STRONG_STAR = re.compile(r"\*\*(?=\S)((?:[^*]|\*(?!\*))+?)(?<=\S)\*\*")
_STRONG_UNDERSCORE = re.compile(r"(?<![^\W_])__(?=\S)((?:[^_]|_(?!_))+?)(?<=\S)__(?![^\W_])")
_EM_STAR = re.compile(r"\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*")
_EM_UNDERSCORE = re.compile(
    r"(?<![^\W_])_(?=[^\s_])((?:[^_]|(?<=[^\W_])_(?=[^\W_]))+?)(?<=[^\s_])_(?![^\W_])"
)
_PROTECTED = re.compile("\ue000(\\d+)\ue001")  # placeholders for code spans and escaped characters

# Characters written without spaces between them: a line break between two of them is no space.
_CJK = re.compile(
    r"[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]"
)
_PLACEHOLDER_WORD = "x"


@dataclass(frozen=True)
class ScriptItem:
    """One paragraph or list item, spoken as one unit.

    `text` is the cleaned paragraph with its tags (what the operator page shows), `segments` what
    is spoken, and `line` the 1-based source line where the item starts, for error messages and
    for finding the item in the file.
    """

    text: str
    segments: tuple[TextSegment, ...]
    line: int


@dataclass
class _Block:
    line: int
    is_list_item: bool
    lines: list[str]


def load_show_script(path: str | Path) -> list[ScriptItem]:
    """Read a UTF-8 (BOM or not) text or Markdown file and parse it with `parse_show_script`."""
    text = read_utf8_text(
        path,
        "show script",
        empty_hint="write what the avatar should say, one paragraph per item",
        # A character is at most 4 bytes of UTF-8 (+3 for a BOM): refuse a huge file before reading it.
        max_bytes=4 * MAX_SCRIPT_CHARS + 3,
        too_long_hint=f"keep one script under {MAX_SCRIPT_CHARS:,} characters; split the show into several",
    )
    return parse_show_script(text, source=str(path))


def parse_show_script(text: str, *, source: str = "script") -> list[ScriptItem]:
    """Items of a show script in reading order; `source` names the script in error messages."""
    if text is None or not text.strip():
        raise InputError(f"{source} is empty", "write what the avatar should say, one paragraph per item")
    if len(text) > MAX_SCRIPT_CHARS:
        raise InputError(
            f"{source} has {len(text):,} characters, more than the {MAX_SCRIPT_CHARS:,} a show script may have",
            "split the show into several scripts",
        )
    items: list[ScriptItem] = []
    emotion = "neutral"
    for line, raw in _blocks(text.removeprefix("\ufeff"), source):
        cleaned = _clean_inline(raw)
        if not cleaned:
            continue  # only markup, e.g. an image
        tags = [_WHITESPACE.sub(" ", match.group(1)).strip().lower() for match in _TAG.finditer(cleaned)]
        try:
            if _TAG.sub("", cleaned).strip():
                segments = parse_script(cleaned, default_emotion=emotion)
            elif all(tag in EMOTIONS for tag in tags):
                emotion = tags[-1]  # "[happy]" alone: the mood for the items after it
                continue
            else:
                # Only pauses: parse_script insists on words, so lend it one and drop it again;
                # that keeps the pause syntax and its limits in one place.
                segments = parse_script(f"{cleaned} {_PLACEHOLDER_WORD}", default_emotion=emotion)[:-1]
        except InputError as error:
            raise InputError(f"{source} line {line}: {error.message}", error.hint) from error
        items.append(ScriptItem(cleaned, tuple(segments), line))
        emotion = next((tag for tag in reversed(tags) if tag in EMOTIONS), emotion)
    if not any(segment.text for item in items for segment in item.segments):
        raise InputError(
            f"{source} has nothing to speak",
            "write paragraphs or list items; headings, code blocks, tables and <!-- notes --> are not read aloud",
        )
    return items


def _blocks(text: str, source: str) -> list[tuple[int, str]]:
    """(first line, raw text with its lines joined by newlines) of every spoken paragraph or list item."""
    lines = _LINE_BREAK.split(text)
    blocks: list[tuple[int, str]] = []
    current: _Block | None = None
    fence: tuple[str, int, int] | None = None  # fence character, its length, the line it opened on
    comment_line: int | None = None  # where the <!-- comment still open began
    in_table = False

    def close() -> None:
        nonlocal current
        if current is not None and current.lines:
            blocks.append((current.line, "\n".join(current.lines)))
        current = None

    for number, raw in enumerate(lines, start=1):
        if fence is not None:
            if re.match(rf"^\s*{re.escape(fence[0])}{{{fence[1]},}}\s*$", raw):
                fence = None
            continue
        line, comment_open = _strip_comments(raw, comment_line is not None)
        if comment_open and comment_line is None:
            comment_line = number
        elif not comment_open:
            comment_line = None
        while match := _QUOTE.match(line):
            line = line[match.end() :]
        if not line.strip():
            close()  # a blank line, a bare ">" or a line that held only a note
            in_table = False
            continue
        if in_table:
            continue
        fence_match = _FENCE.match(line)
        if fence_match and not (fence_match.group(1)[0] == "`" and "`" in fence_match.group(2)):
            close()
            fence = (fence_match.group(1)[0], len(fence_match.group(1)), number)
            continue
        if _HEADING.match(line):
            close()
            continue
        if current is not None and not current.is_list_item and _SETEXT_UNDERLINE.match(line):
            current = None  # the paragraph above was a heading
            continue
        if _RULE.match(line):
            close()
            continue
        if "|" in line and number < len(lines) and _is_table_delimiter(lines[number]):
            close()
            in_table = True
            continue
        if list_match := _LIST_ITEM.match(line):
            close()
            content = _TASK_BOX.sub("", line[list_match.end() :].strip())
            current = _Block(number, True, [content] if content else [])
            continue
        if current is None:
            current = _Block(number, False, [])
        current.lines.append(line.strip())
    if fence is not None:
        raise InputError(
            f"{source} line {fence[2]}: the code block opened here is never closed",
            f"end it with a line of {fence[0] * fence[1]}",
        )
    if comment_line is not None:
        raise InputError(
            f"{source} line {comment_line}: the <!-- note opened here is never closed", "end it with -->"
        )
    close()
    return blocks


def _strip_comments(line: str, inside: bool) -> tuple[str, bool]:
    """The line without its `<!-- -->` parts, and whether a comment is still open at its end."""
    kept: list[str] = []
    position = 0
    while True:
        if inside:
            end = line.find("-->", position)
            if end < 0:
                return "".join(kept), True
            position, inside = end + 3, False
        else:
            start = line.find("<!--", position)
            if start < 0:
                kept.append(line[position:])
                return "".join(kept), False
            kept.append(line[position:start])
            position, inside = start + 4, True


def _is_table_delimiter(line: str) -> bool:
    while match := _QUOTE.match(line):
        line = line[match.end() :]
    return "|" in line and _TABLE_DELIMITER.match(line) is not None


def _clean_inline(raw: str) -> str:
    """Markdown inline markup removed, tags kept, lines joined, whitespace collapsed."""
    protected: list[str] = []

    def protect(kept: str) -> str:
        protected.append(kept)
        return f"\ue000{len(protected) - 1}\ue001"

    text = _CODE_SPAN.sub(lambda match: protect(match.group(2).replace("\n", " ").strip()), raw)
    text = _ESCAPE.sub(lambda match: protect(match.group(1)), text)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    for _ in range(3):  # nested emphasis ("***both***", "_**x**_") unwraps a level per pass
        before = text
        for pattern in (_STRONG_STAR, _STRONG_UNDERSCORE, _EM_STAR, _EM_UNDERSCORE):
            text = pattern.sub(r"\1", text)
        if text == before:
            break
    text = _PROTECTED.sub(lambda match: protected[int(match.group(1))], text)
    return _WHITESPACE.sub(" ", _join_lines(text)).strip()


def _join_lines(text: str) -> str:
    """Join a paragraph's lines with a space, except between two CJK characters ("你好\\n世界")."""
    parts = text.split("\n")
    joined = parts[0].rstrip()
    for part in parts[1:]:
        part = part.strip()
        if not part:
            continue
        cjk_pair = bool(joined) and _CJK.match(joined[-1]) and _CJK.match(part[0])
        joined = f"{joined}{'' if cjk_pair else ' '}{part}" if joined else part
    return joined
