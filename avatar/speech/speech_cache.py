"""Sentences the avatar says again come from memory, not from the voice.

An avatar repeats itself: its greeting, "Sorry, I don't know the answer to that.", the opening
line of every FAQ answer, a livestream's recurring lines. Synthesizing such a sentence again
costs ~100-250 ms of CPU on the reply's critical path (the first sentence is what the user waits
for), so the server keeps what it said, keyed by everything that shapes the sound (the text, the
emotion, the voice), in a bounded least-recently-used table shared by every session. Speech is
immutable by convention (nothing downstream writes into its arrays), so one copy serves all.

`first_sentences` gives the opening sentence of replies the avatar knows in advance (the offline
answerer's), so a server can say them once at start-up and answer the first question of each
kind as fast as the hundredth.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

from avatar.core.types import Speech

DEFAULT_MAX_ENTRIES = 256
DEFAULT_MAX_AUDIO_S = 900.0  # ~60 MB of 16-bit-equivalent float audio at 22 kHz: a bound on memory


class SpeechCache:
    """Thread-safe LRU of Speech by key, bounded by entries and by total audio seconds."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_audio_s: float = DEFAULT_MAX_AUDIO_S
    ) -> None:
        self.max_entries = max_entries
        self.max_audio_s = max_audio_s
        self._entries: OrderedDict[Hashable, Speech] = OrderedDict()
        self._audio_s = 0.0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], Speech]) -> Speech:
        """The cached speech for `key`, else `make()`'s (kept unless it alone exceeds the bound).
        `make` runs outside the lock: two sessions asking for the same new sentence at once may
        both synthesize it, which is cheaper than making every session wait on one voice."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        speech = make()
        self._keep(key, speech)
        return speech

    def get(self, key: Hashable) -> Speech | None:
        """The cached speech for `key`, or None (a streamed sentence is kept with `keep` once it
        has been spoken to its end)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def keep(self, key: Hashable, speech: Speech) -> None:
        self._keep(key, speech)

    def __len__(self) -> int:
        return len(self._entries)

    def _keep(self, key: Hashable, speech: Speech) -> None:
        duration_s = speech.audio.duration_s
        if duration_s > self.max_audio_s:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._audio_s -= previous.audio.duration_s
            self._entries[key] = speech
            self._audio_s += duration_s
            while len(self._entries) > self.max_entries or self._audio_s > self.max_audio_s:
                _, dropped = self._entries.popitem(last=False)
                self._audio_s -= dropped.audio.duration_s


def first_sentences(tagged_replies: Iterable[str]) -> list[tuple[str, str]]:
    """(text, emotion) of the first spoken sentence of each reply (with its inline [emotion] tag),
    cut exactly as a live reply is: fed piece by piece as the answerer streams it, through
    `SentenceStream`; without duplicates."""
    from avatar.core.text_script import split_into_pieces
    from avatar.speech.sentence_stream import SentenceStream

    seen: dict[tuple[str, str], None] = {}
    for reply in tagged_replies:
        splitter = SentenceStream()
        sentences = []
        for piece in split_into_pieces(reply):
            sentences += splitter.feed(piece)
            if sentences:
                break
        sentences = sentences or splitter.finish()
        if sentences:
            seen.setdefault((sentences[0].text, sentences[0].emotion), None)
    return list(seen)
