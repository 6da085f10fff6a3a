"""What the avatar should say: inline [emotion] and [pause] tags, sentences, clauses, TTS-sized chunks.

A script such as "[happy] Hello! [pause 0.5s] [sad] Oh no." becomes `TextSegment`s, each spoken
with one expression. This module is the one place that knows where Chinese and English text
breaks: every voice engine, the render job, the live conversation (token by token) and the
livestream cut text with `split_sentences` / `split_clauses`, and `has_words` is the one rule for
a sentence with nothing to say. Speech engines degrade (or run out of memory) on very long inputs
and a sentence is the natural unit for per-sentence language detection, so an over-long sentence
is cut into chunks at clause breaks, then spaces, then anywhere.
"""

from __future__ import annotations

import re
import unicodedata

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
_FINAL_TERMINATOR = re.compile(_TERMINATOR.pattern + "$")
_CJK_TERMINATORS = frozenset("。！？；")
_CJK = "\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af"  # kana, Han, Hangul
_CJK_CHAR = re.compile(f"[{_CJK}]")
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
# Clause breaks (a voice pauses there): CJK marks always, ASCII ones only before a space or a CJK
# character, so "3,000" and "10:30" stay whole. "；" and ";" differ on purpose: the full-width one
# ends a sentence.
_CLAUSE_BREAK = re.compile(f"(?<=[，、：])|(?<=[,;:])(?=\\s|[{_CJK}])")
_WORD_BREAK = re.compile(r"(?<=\s)")
# Word-sized pieces of a reply, as a model streams them: a tag, one CJK character with the
# punctuation after it, a word with the spaces after it.
_PIECE = re.compile(rf"\[[a-z]+\]\s*|[{_CJK}][，。！？、；：）」』”]*|[^\s{_CJK}]+\s*|\s+")

_VALID_TAGS = ", ".join(f"[{name}]" for name in EMOTIONS) + ", [happy:0.5], [pause 0.5s], [pause 500ms]"
_EMOTION_TAG = re.compile(r"^([a-z]+)\s*(?::\s*(\S+))?$")


def parse_emotion_tag(tag: str) -> tuple[str, float] | None:
    """(emotion, intensity 0..1) for "happy" or "happy:0.5"; None when the tag names no emotion."""
    match = _EMOTION_TAG.match(tag.strip().lower())
    if match is None or match.group(1) not in EMOTIONS:
        return None
    if match.group(2) is None:
        return match.group(1), 1.0
    try:
        intensity = float(match.group(2))
    except ValueError:
        intensity = float("nan")
    if not 0.0 <= intensity <= 1.0:
        raise InputError(
            f"cannot read the intensity in [{tag}]",
            f"write it as a number from 0 to 1, like [{match.group(1)}:0.5]",
        )
    return match.group(1), intensity


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
    _refuse_unspeakable_characters(text)
    segments: list[TextSegment] = []
    emotion, intensity = default_emotion, 1.0
    position = 0

    def add_text(raw: str) -> None:
        words = _WHITESPACE.sub(" ", raw).strip()
        if words:
            segments.append(TextSegment(words, emotion, intensity=intensity))

    for match in _TAG.finditer(text):
        add_text(text[position : match.start()])
        position = match.end()
        tag = _WHITESPACE.sub(" ", match.group(1)).strip().lower()
        emotion_tag = parse_emotion_tag(tag)
        if emotion_tag is not None:
            emotion, intensity = emotion_tag
            continue
        pause_s = _parse_pause_s(tag)
        if pause_s is None:
            raise InputError(f"unknown tag [{match.group(1)}]", f"valid tags: {_VALID_TAGS}")
        if segments:
            last = segments[-1]
            segments[-1] = TextSegment(
                last.text, last.emotion, last.pause_after_s + pause_s, intensity=last.intensity
            )
        else:
            segments.append(TextSegment("", emotion, pause_s, intensity=intensity))
    add_text(text[position:])
    stray = next((c for c in "[]" if c in _TAG.sub("", text)), None)
    if stray is not None:
        raise InputError(f"unmatched '{stray}' in the text", "close every [tag] or remove the bracket")
    if not any(segment.text for segment in segments):
        raise InputError("the text has tags but no words to speak", "add the words after the tags")
    return segments


def _refuse_unspeakable_characters(text: str) -> None:
    """Control characters (NUL, escape codes) and lone surrogates in a script are a copy-paste or
    encoding accident: a voice cannot say them and some fail on them deep inside, so the text is
    refused here, with where the character is."""
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in "\t\n\r\x0b\x0c") or category == "Cs":
            raise InputError(
                f"the text contains an unprintable character (U+{ord(char):04X}) at character {index + 1}",
                "remove it (it often comes from copying text out of another program)",
            )


def has_words(text: str) -> bool:
    """Whether `text` has something a voice can say: a letter of any script (Latin, Han, kana...).

    The one rule for a sentence with nothing to say, wherever the avatar speaks. Punctuation,
    emoji and digits alone ("(5)", the "1." of a numbered list, "...") are skipped: there is no
    word to say and no language to say it in, and an embedded voice refuses some of them (Piper
    raises on "...", which used to fail a whole live reply)."""
    return any(char.isalpha() for char in text)


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


def _word_pieces(clause: str, max_chars: int) -> list[str]:
    """An over-long clause in pieces of at most max_chars: at spaces, else anywhere."""
    pieces: list[str] = []
    for word in _WORD_BREAK.split(clause):
        if len(word.strip()) <= max_chars:
            pieces.append(word)
        else:
            pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    return pieces


def _clause_pieces(sentence: str, max_chars: int) -> list[str]:
    """Clauses with their surrounding spaces; an over-long one cut at spaces, then anywhere."""
    pieces: list[str] = []
    for clause in _CLAUSE_BREAK.split(sentence):
        pieces.extend([clause] if len(clause.strip()) <= max_chars else _word_pieces(clause, max_chars))
    return pieces


def _sentences(text: str) -> list[str]:
    """Whole sentences of whitespace-collapsed `text`, however long."""
    sentences: list[str] = []
    start = 0
    for match in _TERMINATOR.finditer(text):
        if _ends_sentence(text, match.start(), match.end()):
            sentences.append(text[start : match.end()].strip())
            start = match.end()
    sentences.append(text[start:].strip())
    return [sentence for sentence in sentences if sentence]


def split_sentences(
    text: str, max_chars: int = DEFAULT_CHUNK_CHARS, *, line_breaks: bool = False
) -> list[str]:
    """Sentences of `text` in order, none longer than `max_chars` characters, whitespace collapsed.

    An over-long sentence is cut at clause breaks first, then at spaces, then anywhere (CJK text
    without punctuation). `line_breaks=True` also ends a sentence at every line break, as a
    heading or the lines of a poem are read; by default a line break is a space."""
    if max_chars < MIN_CHUNK_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_CHUNK_CHARS}, got {max_chars}")
    chunks: list[str] = []
    for line in text.split("\n") if line_breaks else [text]:
        for sentence in _sentences(_WHITESPACE.sub(" ", line).strip()):
            fits = len(sentence) <= max_chars
            chunks.extend([sentence] if fits else _pack(_clause_pieces(sentence, max_chars), max_chars))
    return chunks


def split_clauses(sentence: str, max_chars: int) -> list[str]:
    """The clauses of one sentence, cut after commas, colons and semicolons, where a voice pauses;
    a clause longer than `max_chars` is cut at spaces, then anywhere. Whitespace collapsed."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    clauses: list[str] = []
    for clause in _CLAUSE_BREAK.split(_WHITESPACE.sub(" ", sentence).strip()):
        if len(clause.strip()) <= max_chars:
            clauses.append(clause.strip())
        else:
            clauses.extend(_pack(_word_pieces(clause, max_chars), max_chars))
    return [clause for clause in clauses if clause]


def ends_with_sentence_end(text: str) -> bool:
    """Whether a text still being written (a model's reply, token by token) ends a sentence for sure.

    A CJK end mark does at once; ".!?…" only once a space follows and the word before is no
    abbreviation, since "3." may go on as "3.5" and "Dr. " waits for the name. The next word is
    assumed to start the next sentence (a model writes a capital there)."""
    stripped = text.rstrip()
    match = _FINAL_TERMINATOR.search(stripped)
    if match is None:
        return False
    if any(char in _CJK_TERMINATORS for char in match.group()):
        return True
    return len(stripped) < len(text) and _ends_sentence(text, match.start(), match.end())


def first_clause_end(text: str, min_chars: int) -> int | None:
    """Where the opening clause of `text` ends (the index just past its break), once it has at
    least `min_chars` characters and more text has come after it; None when the first sentence
    ends before any clause break does, or none has come yet."""
    for match in _CLAUSE_BREAK.finditer(text):
        head = text[: match.end()]
        if _TERMINATOR.search(head):
            return None
        if len(head.strip()) >= min_chars and text[match.end() :].strip():
            return match.end()
    return None


def split_into_pieces(text: str) -> list[str]:
    """Word-sized pieces (a CJK character keeps its trailing punctuation) that join to `text`: how
    a model streams a reply, for engines that have the whole reply at once."""
    return _PIECE.findall(text)
