"""What the avatar should say: inline [emotion] and [pause] tags, sentences, TTS-sized chunks.

A script such as "[happy] Hello! [pause 0.5s] [sad] Oh no." becomes `TextSegment`s, each spoken
with one expression. Speech engines degrade (or run out of memory) on very long inputs and a
sentence is the natural unit for per-sentence language detection, so `split_sentences` cuts a
segment into sentences and any over-long sentence into chunks at commas, then spaces.
"""

from __future__ import annotations

import re

from avatar.core.errors import InputError
from avatar.core.types import EMOTIONS, TextSegment

MAX_SCRIPT_CHARS = 100_000  # ~2 hours of speech; longer jobs belong in a batch manifest
DEFAULT_CHUNK_CHARS = 300
MIN_CHUNK_CHARS = 20
DEFAULT_PAUSE_S = 0.5
MAX_PAUSE_S = 30.0

_TAG = re.compile(r"\[([^\[\]]*)\]")
_PAUSE = re.compile(r"^pause(?:\s+(\d+(?:\.\d+)?)\s*(ms|s))?$")
_WHITESPACE = re.compile(r"\s+")

# A run of sentence-ending punctuation plus the closing quotes/brackets that belong to it.
_TERMINATOR = re.compile(r"[.!?。！？；…]+[\"'”’」』）)\]]*")
_CJK_TERMINATORS = frozenset("。！？；")
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")
# Words whose trailing period does not end a sentence ("Dr. Smith", "e.g. This"). Words that
# often do end one ("etc.", "p.m.", "Inc.") are left out: before a lowercase word nothing splits
# anyway, and before a capital they usually close the sentence.
_ABBREVIATIONS = frozenset(
    (
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "gen",
        "col",
        "lt",
        "capt",
        "sgt",
        "rev",
        "hon",
        "vs",
        "cf",
        "e.g",
        "i.e",
        "approx",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    )
)
_NUMBER_ABBREVIATIONS = frozenset(("no", "nos", "fig", "vol", "p", "pp"))  # only before a number: "No. 5"
_CLAUSE_BREAK = re.compile(r"(?<=[,，、;:：])")
_WORD_BREAK = re.compile(r"(?<=\s)")

_VALID_TAGS = ", ".join(f"[{name}]" for name in EMOTIONS) + ", [pause 0.5s], [pause 500ms]"


def _parse_pause_s(tag: str) -> float | None:
    """Seconds for a [pause ...] tag, None when the tag is not a pause."""
    match = _PAUSE.match(tag)
    if match is None:
        if tag.startswith("pause"):
            raise InputError(
                f"cannot read the pause tag [{tag}]", "write it like [pause 0.5s] or [pause 500ms]"
            )
        return None
    number, unit = match.groups()
    if number is None:
        return DEFAULT_PAUSE_S
    seconds = float(number) / (1000.0 if unit == "ms" else 1.0)
    if seconds > MAX_PAUSE_S:
        raise InputError(f"pause [{tag}] is longer than {MAX_PAUSE_S:g} s", "use a shorter pause")
    return seconds


def parse_script(text: str, default_emotion: str = "neutral") -> list[TextSegment]:
    """Split a script at its tags; an emotion lasts until the next emotion tag, pauses attach to
    the text before them (a leading pause becomes a segment with empty text)."""
    if default_emotion not in EMOTIONS:
        raise InputError(f"unknown emotion '{default_emotion}'", f"use one of: {', '.join(EMOTIONS)}")
    if text is None or not text.strip():
        raise InputError("the text is empty", "give the words the avatar should say")
    if len(text) > MAX_SCRIPT_CHARS:
        raise InputError(
            f"the text has {len(text):,} characters, more than the {MAX_SCRIPT_CHARS:,} one job accepts",
            "split it into several jobs in a batch manifest",
        )
    segments: list[TextSegment] = []
    emotion = default_emotion
    position = 0

    def add_text(raw: str) -> None:
        words = _WHITESPACE.sub(" ", raw).strip()
        if words:
            segments.append(TextSegment(words, emotion))

    for match in _TAG.finditer(text):
        add_text(text[position : match.start()])
        position = match.end()
        tag = _WHITESPACE.sub(" ", match.group(1)).strip().lower()
        if tag in EMOTIONS:
            emotion = tag
            continue
        pause_s = _parse_pause_s(tag)
        if pause_s is None:
            raise InputError(f"unknown tag [{match.group(1)}]", f"valid tags: {_VALID_TAGS}")
        if segments:
            last = segments[-1]
            segments[-1] = TextSegment(last.text, last.emotion, last.pause_after_s + pause_s)
        else:
            segments.append(TextSegment("", emotion, pause_s))
    add_text(text[position:])
    stray = next((c for c in "[]" if c in _TAG.sub("", text)), None)
    if stray is not None:
        raise InputError(f"unmatched '{stray}' in the text", "close every [tag] or remove the bracket")
    if not any(segment.text for segment in segments):
        raise InputError("the text has tags but no words to speak", "add the words after the tags")
    return segments


def _ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the terminator run text[start:end] ends a sentence, judged from its neighbours."""
    run = text[start:end]
    if any(char in _CJK_TERMINATORS for char in run):
        return True
    following = text[end : end + 1]
    if following and not following.isspace() and not _CJK_CHAR.match(following):
        return False  # "3.5", "Yahoo!Inc", "example.com"
    if text[end:].lstrip()[:1].islower():
        return False  # "I was... thinking", "etc. and", '"Really?" she said'
    punctuation = run.rstrip("\"'”’」』）)]")
    if punctuation == ".":
        word = re.split(r"\s", text[:start])[-1].lstrip("\"'“‘(「『（").lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False  # "Dr. Smith", "J. K. Rowling"
        if word in _NUMBER_ABBREVIATIONS and text[end:].lstrip()[:1].isdigit():
            return False  # "No. 5", "Fig. 2"
    return True


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive pieces into chunks of at most max_chars (pieces fit already)."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len((current + piece).strip()) > max_chars:
            chunks.append(current.strip())
            current = ""
        current += piece
    if current.strip():
        chunks.append(current.strip())
    return chunks


def _chunk_sentence(sentence: str, max_chars: int) -> list[str]:
    """Cut at commas first, then at spaces, then anywhere (CJK text without punctuation)."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _CLAUSE_BREAK.split(sentence):
        if len(clause.strip()) <= max_chars:
            pieces.append(clause)
            continue
        for word in _WORD_BREAK.split(clause):
            if len(word.strip()) <= max_chars:
                pieces.append(word)
            else:
                pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    return _pack(pieces, max_chars)


def split_sentences(text: str, max_chars: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """Sentences of `text` in order, none longer than `max_chars` characters, whitespace collapsed."""
    if max_chars < MIN_CHUNK_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_CHUNK_CHARS}, got {max_chars}")
    text = _WHITESPACE.sub(" ", text).strip()
    sentences: list[str] = []
    start = 0
    for match in _TERMINATOR.finditer(text):
        if _ends_sentence(text, match.start(), match.end()):
            sentences.append(text[start : match.end()].strip())
            start = match.end()
    sentences.append(text[start:].strip())
    return [chunk for sentence in sentences if sentence for chunk in _chunk_sentence(sentence, max_chars)]
