"""What a chat model is told, and what of its output may be read aloud.

Everything a model writes is spoken by the TTS and drives the face, so the system prompt asks for
short spoken sentences with inline emotion tags, and `SpokenTextFilter` removes what models write
anyway: markdown (`**bold**`, `# headings`, `- bullets`), emoji, and tags outside `EMOTIONS`
(`[excited]` becomes `[happy]`, an unknown one such as `[laughs]` is dropped, as `SentenceStream`
drops it). Both LLM clients run their output through the filter, so the live session and the
livestream host (which parses whole answers with `parse_script`, where an unknown tag is an error)
receive only tags they understand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from avatar.core.types import EMOTIONS

_LANGUAGE_NAMES = {"en": "English", "zh": "Mandarin Chinese (simplified characters)"}
_DEFAULT_PERSONA = "You are a friendly talking avatar."

# Words models put in brackets for a mood, mapped to the nearest face we can show.
_EMOTION_SYNONYMS = {
    "happy": "excited joyful joy cheerful glad delighted pleased smiling smile smiles laughing amused playful "
    "enthusiastic grateful proud warm friendly",
    "sad": "sorry apologetic sympathetic empathetic disappointed unhappy worried concerned sigh sighs regretful",
    "angry": "annoyed frustrated irritated mad furious stern anger",
    "surprised": "surprise amazed astonished shocked wow impressed",
    "neutral": "calm serious thoughtful thinking gentle curious informative",
}
_TAG_NAMES = {name: name for name in EMOTIONS} | {
    synonym: emotion for emotion, synonyms in _EMOTION_SYNONYMS.items() for synonym in synonyms.split()
}
MAX_TAG_CHARS = 40  # a '[' not closed within this many characters is text, as in SentenceStream

# Markup that may open a line: headings, quotes, bullets, numbered items ("1.", "2)", "3、").
_LINE_MARKUP = re.compile(r"[ \t]*(?:#{1,6}[ \t]+|>[ \t]+|[-*+•][ \t]+|\d{1,3}[.)][ \t]+|\d{1,3}、)")
# Text at a line start that may still turn into such markup once the next piece arrives.
_LINE_MARKUP_PREFIX = re.compile(r"[ \t]*(?:#{1,6}|>|[-*+•]|\d{1,3}[.)]?)?")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d]")
_DROPPED_CHARS = "*`"
_PAUSES_SPEECH = ".!?,;:。！？，；：、…"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def system_prompt(persona: str, language_hint: str | None = None) -> str:
    """The avatar's persona plus the rules that make a chat model's reply speakable."""
    persona = (persona or "").strip() or _DEFAULT_PERSONA
    tags = ", ".join(f"[{name}]" for name in EMOTIONS)
    if language_hint:
        language = _LANGUAGE_NAMES.get(language_hint.lower(), language_hint)
        language_rule = f"Answer in {language}."
    else:
        language_rule = "Answer in the language the user speaks."
    return "\n".join(
        (
            persona,
            "",
            "You speak out loud through a talking avatar: a speech engine reads every word you write.",
            "- Answer in one to three short spoken sentences.",
            "- Write plain sentences only: no markdown, no lists, no headings, no emoji, no links.",
            f"- Start each sentence whose mood differs from the one before with one tag: {tags}. "
            'For example: "[happy] Great question! [neutral] The shop opens at nine." Use no other tags.',
            "- A note in parentheses after the user's words, such as (speaker sounds sad), tells how "
            "they sound: adapt your tone to it and never mention the note itself.",
            f"- {language_rule}",
        )
    )


def normalize_tag(name: str) -> str | None:
    """The emotion (or pause) tag a model meant by `[name]`, or None when it should be dropped."""
    words = name.strip().lower()
    if ":" in words:  # "[emotion: happy]"
        words = words.rsplit(":", 1)[1].strip()
    if words == "pause" or words.startswith("pause "):
        return name.strip().lower()  # text_script's [pause 0.5s]; SentenceStream drops it
    return _TAG_NAMES.get(words)


class SpokenTextFilter:
    """One reply's text pieces in, speakable text out (markdown, emoji and unknown tags removed).

    Pieces split anywhere: a tag (`[hap` + `py]`) or a bullet (`-` + ` item`) split across two
    pieces is held back until it is complete, so what comes out is always whole.
    """

    def __init__(self) -> None:
        self._held = ""  # text not decided yet: an open tag or the start of a line
        self._at_line_start = True
        self._line_has_text = False
        self._last_char = ""  # the last non-space character given out

    def feed(self, piece: str) -> str:
        self._held += piece
        return self._drain(final=False)

    def finish(self) -> str:
        """End of the reply: held text is given out as it is (an unclosed '[' is spoken as text)."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        text = self._held
        position = 0
        while position < len(text):
            if self._at_line_start:
                rest = text[position:]
                markup = _LINE_MARKUP.match(rest)
                if markup is not None:
                    position += markup.end()
                elif not final and _LINE_MARKUP_PREFIX.fullmatch(rest):
                    break  # "-" or "12" may still become a bullet: wait for the next piece
                self._at_line_start = False
                continue
            char = text[position]
            if char == "\n":
                out.append(self._line_break())
                position += 1
            elif char == "[":
                close = text.find("]", position, position + MAX_TAG_CHARS + 2)
                if close == -1 and not final and len(text) - position <= MAX_TAG_CHARS + 1:
                    break  # possibly a tag split across pieces: wait for its end
                if close == -1:
                    out.append(self._give(char))
                    position += 1
                else:
                    tag = normalize_tag(text[position + 1 : close])
                    out.append(f"[{tag}]" if tag else "")
                    position = close + 1
            else:
                if char not in _DROPPED_CHARS and not _EMOJI.match(char):
                    out.append(self._give(char))
                position += 1
        self._held = text[position:]
        return "".join(out)

    def _give(self, char: str) -> str:
        if not char.isspace():
            self._last_char = char
            self._line_has_text = True
        return char

    def _line_break(self) -> str:
        """A line break ends what was on the line: a list item or heading becomes a sentence."""
        self._at_line_start = True
        if not self._line_has_text:
            return ""
        self._line_has_text = False
        if self._last_char in _PAUSES_SPEECH:
            return " "
        if _CJK.match(self._last_char):
            self._last_char = "。"
            return "。"
        self._last_char = "."
        return ". "


# --- knowledge under a chat model -------------------------------------------------------------------
MAX_NOTE_CHARS = 600  # one passage; a long document section is cut, its start is what retrieval matched
_NOTES_HEADER = (
    "What you know: notes from your knowledge file that may answer the user's last question. Answer "
    "from them in your own words, and keep names, numbers, times, prices and phone numbers exactly as "
    "written."
)
_NOTES_FOOTER = (
    "When the question is about something the notes do not cover, say so briefly instead of guessing."
)


def knowledge_notes(passages: Iterable[tuple[str, str]]) -> str:
    """The retrieved (question, answer) passages as a block for the system prompt ("" for none).

    Entries are written as the knowledge file writes them ("Q: ..." then "A: ..."), and the rule
    for questions they do not cover comes after them: tried on SmolLM2-135M, the smallest model we
    test with, that layout made it copy a time and a phone number from its notes where bullets, or
    the rule before the notes, made it invent them. A passage without a question is a "Note:"."""
    lines = []
    for question, text in passages:
        text = " ".join(text.split())
        if len(text) > MAX_NOTE_CHARS:
            text = text[: MAX_NOTE_CHARS - 1].rstrip() + "…"
        question = " ".join(question.split())
        lines += [f"Q: {question}", f"A: {text}"] if question else [f"Note: {text}"]
    return "\n".join((_NOTES_HEADER, *lines, _NOTES_FOOTER)) if lines else ""


def with_knowledge(messages: list[dict], notes: str) -> list[dict]:
    """A copy of `messages` whose system message ends with `notes` (a system message is added in
    front when there is none); the session's own history is never changed."""
    if not notes:
        return list(messages)
    for index, message in enumerate(messages):
        if message.get("role") == "system":
            grounded = {**message, "content": f"{message.get('content', '').rstrip()}\n\n{notes}"}
            return [*messages[:index], grounded, *messages[index + 1 :]]
    return [{"role": "system", "content": notes}, *messages]
