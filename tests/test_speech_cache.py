"""Sentences said before come from the speech cache: bounded, least recently used first out, and
the openings of known replies are cut exactly as a live reply cuts them."""

from __future__ import annotations

import asyncio

import numpy as np

from avatar.core.text_script import split_into_pieces
from avatar.core.types import AudioChunk, Speech
from avatar.speech.sentence_stream import SentenceStream
from avatar.speech.speech_cache import SpeechCache, first_sentences


def speech(seconds: float) -> Speech:
    return Speech(AudioChunk(np.zeros(int(16000 * seconds), np.float32), 16000))


def test_a_repeated_sentence_is_made_once():
    cache, made = SpeechCache(), []

    def make():
        made.append(1)
        return speech(1.0)

    first = cache.get_or_make(("Hello.", "happy"), make)
    again = cache.get_or_make(("Hello.", "happy"), make)
    other = cache.get_or_make(("Hello.", "sad"), make)  # the emotion changes the sound
    assert again is first and other is not first
    assert (len(made), cache.hits, cache.misses) == (2, 1, 2)


def test_the_cache_is_bounded_by_entries_and_by_audio_length():
    cache = SpeechCache(max_entries=3, max_audio_s=10.0)
    for key in "abc":
        cache.get_or_make(key, lambda: speech(1.0))
    cache.get_or_make("a", lambda: speech(1.0))  # "a" is now the most recent: "b" goes first
    cache.get_or_make("d", lambda: speech(1.0))
    assert len(cache) == 3
    made = []
    cache.get_or_make("b", lambda: made.append(1) or speech(1.0))
    assert made == [1], "b was evicted"
    cache.get_or_make("long", lambda: speech(9.5))  # pushes the others out by audio length
    assert len(cache) == 1
    cache.get_or_make("huge", lambda: speech(11.0))  # longer than the whole bound: not kept
    assert len(cache) == 1


def test_openings_match_what_a_live_reply_says_first():
    replies = [
        "[happy] We are open Monday to Saturday from 9 am to 8 pm, and on Sunday from 10 am to 6 pm.",
        "[neutral] Sorry, I don't know the answer to that. I can tell you about: Where is the shop?",
        "[happy] 我们周一到周六早上九点到晚上八点营业，周日十点到六点。",
        "[happy] We are open Monday to Saturday from 9 am to 8 pm, and on Sunday from 10 am to 6 pm.",
    ]

    def live_first(reply: str):
        async def tokens():
            for piece in split_into_pieces(reply):
                yield piece

        async def run():
            splitter = SentenceStream()
            async for token in tokens():
                out = splitter.feed(token)
                if out:
                    return out[0]
            return splitter.finish()[0]

        first = asyncio.run(run())
        return first.text, first.emotion

    openings = first_sentences(replies)
    assert openings == [live_first(r) for r in replies[:3]]  # the duplicate is said once
    assert openings[0] == ("We are open Monday to Saturday from 9 am to 8 pm,", "happy")
