"""LLM token stream -> speakable sentences, as early as each one is complete.

The first sentence of a reply must reach the TTS while the model is still writing the rest:
that is where a live avatar wins its first-response latency. Inline [emotion] tags in the model's
output are taken out of the spoken text and attached to the sentences that follow them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from avatar.core.errors import InputError
from avatar.core.text_script import (
    ends_with_sentence_end,
    first_clause_end,
    parse_emotion_tag,
    split_sentences,
)

_TAG = re.compile(r"\[([^\[\]]{0,40})\]")
MAX_SENTENCE_CHARS = 200  # a run-on reply is cut at a clause break so TTS starts in time
# A reply's first piece is cut at its first clause break once it has this many characters: a long
# opening sentence ("We are open Monday to Saturday from 9 am to 8 pm, and on Sunday ...") would
# otherwise be synthesized whole (~0.4 s on 2 cores) before the avatar makes a sound.
FIRST_CLAUSE_MIN_CHARS = 12


@dataclass(frozen=True)
class SpokenSentence:
    text: str
    emotion: str
    intensity: float = 1.0  # how strongly the face shows it ("[happy:0.5]" -> 0.5)


class SentenceStream:
    """Feed tokens as they arrive; take back the sentences that are complete."""

    def __init__(
        self,
        default_emotion: str = "neutral",
        max_chars: int = MAX_SENTENCE_CHARS,
        first_clause_min_chars: int | None = FIRST_CLAUSE_MIN_CHARS,
    ) -> None:
        """`first_clause_min_chars=None` keeps the first sentence whole."""
        self.emotion = default_emotion
        self.intensity = 1.0
        self.max_chars = max_chars
        self.first_clause_min_chars = first_clause_min_chars
        self._emitted_any = False
        self._raw = ""  # text not yet emitted, tags included, possibly ending in a partial tag
        self._pending_text = ""  # tag-free text not yet emitted
        # (emotion, intensity) active when the pending text began
        self._sentence_look: tuple[str, float] | None = None

    def feed(self, token: str) -> list[SpokenSentence]:
        self._raw += token
        return self._drain(final=False)

    def finish(self) -> list[SpokenSentence]:
        """End of the reply: whatever is left is the last sentence."""
        return self._drain(final=True)

    def _consume_tags(self, final: bool) -> str:
        """Remove complete tags from the raw buffer, updating the emotion; returns plain text.

        A '[' with no ']' yet may be the start of a tag: it stays in the buffer until it closes
        (or the reply ends, when it is spoken as plain text).
        """
        plain = []
        while True:
            match = _TAG.search(self._raw)
            open_at = self._raw.find("[")
            if match is None or (open_at != -1 and open_at < match.start()):
                if open_at == -1 or final or len(self._raw) - open_at > 42:
                    plain.append(self._raw)
                    self._raw = ""
                else:
                    plain.append(self._raw[:open_at])
                    self._raw = self._raw[open_at:]
                return "".join(plain)
            before = self._raw[: match.start()]
            plain.append(before)
            look = _emotion_of(match.group(1))
            self._raw = self._raw[match.end() :]
            if look is not None:
                # A tag changes the expression from the next sentence that starts after it.
                text_so_far = self._pending_text + "".join(plain)
                if not text_so_far.strip():
                    self._sentence_look = look
                self.emotion, self.intensity = look
            # Unknown tags from a model are dropped rather than spoken.

    def _drain(self, final: bool) -> list[SpokenSentence]:
        self._pending_text += self._consume_tags(final)
        if self._sentence_look is None and self._pending_text.strip():
            self._sentence_look = (self.emotion, self.intensity)
        out: list[SpokenSentence] = []
        first = self._first_clause()
        if first is not None:
            out.append(first)
        pieces = (
            split_sentences(self._pending_text, max_chars=self.max_chars)
            if self._pending_text.strip()
            else []
        )
        complete = pieces if final else pieces[:-1]
        if not final and pieces and ends_with_sentence_end(self._pending_text):
            complete = pieces
        if not final and pieces and len(pieces[-1]) >= self.max_chars:
            complete = pieces
        look = self._sentence_look or (self.emotion, self.intensity)
        for text in complete:
            out.append(SpokenSentence(text, *look))
            look = (self.emotion, self.intensity)
        if complete:
            consumed = _consumed_length(self._pending_text, complete)
            self._pending_text = self._pending_text[consumed:]
            self._sentence_look = (self.emotion, self.intensity) if self._pending_text.strip() else None
        self._emitted_any = self._emitted_any or bool(out)
        return out

    def _first_clause(self) -> SpokenSentence | None:
        """The reply's opening clause, cut off as soon as its clause break has arrived."""
        if self._emitted_any or self.first_clause_min_chars is None:
            return None
        text = self._pending_text
        end = first_clause_end(text, self.first_clause_min_chars)
        if end is None:
            return None
        self._pending_text = text[end:]
        look = self._sentence_look or (self.emotion, self.intensity)
        self._sentence_look = (self.emotion, self.intensity)
        self._emitted_any = True
        return SpokenSentence(text[:end].strip(), *look)


def _emotion_of(tag: str) -> tuple[str, float] | None:
    """(emotion, intensity) of a model's tag, read by the one parser of the tag language; None
    for any other tag, and for an intensity it cannot read ("[happy:lots]"): a model's slip is
    dropped like an unknown tag, the reply goes on."""
    try:
        return parse_emotion_tag(tag)
    except InputError:
        return None


def _consumed_length(text: str, sentences: list[str]) -> int:
    """Index in `text` just past the last of `sentences` (which were cut from it in order)."""
    position = 0
    for sentence in sentences:
        for word in sentence.split():
            position = text.index(word, position) + len(word)
    return position
