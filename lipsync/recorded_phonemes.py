"""Phoneme timing for recorded speech: ASR word timestamps + grapheme-to-phoneme.

A recording has no TTS alignment, but Whisper tells when each word is spoken and espeak (inside
the piper wheel) or pypinyin tells which sounds make it up; spreading a word's phonemes over its
span (vowels longer than consonants) is enough to close the lips on /p b m/ and shape vowels.
"""

from __future__ import annotations

from collections.abc import Sequence

from avatar.types import PhonemeTiming

_VOWELS = set("aeiouæɑɐɒɔəɚɛɜɪʊʌyɯᵻø")
_SKIP = set("ˈˌːˑ")


def _weights(symbols: Sequence[str]) -> list[float]:
    return [2.0 if symbol[:1] in _VOWELS else 1.0 for symbol in symbols]


class RecordedPhonemizer:
    """Holds the espeak phonemizer (loaded once); `phonemes(words, language)` per recording."""

    def __init__(self) -> None:
        self._espeak = None

    def _english(self, word: str) -> list[str]:
        if self._espeak is None:
            from piper.phonemize_espeak import EspeakPhonemizer

            self._espeak = EspeakPhonemizer()
        sentences = self._espeak.phonemize("en-us", word)
        return [p for sentence in sentences for p in sentence if p not in _SKIP and p.strip()]

    @staticmethod
    def _mandarin(word: str) -> list[str]:
        from pypinyin import Style, lazy_pinyin

        return [s for s in lazy_pinyin(word, style=Style.TONE3, errors="ignore") if s]

    def phonemes(self, words: Sequence, language: str) -> tuple[PhonemeTiming, ...]:
        """`words` have .word, .start_s, .end_s (avatar.asr_whisper.WordTiming)."""
        timings: list[PhonemeTiming] = []
        for word in words:
            text = word.word.strip(" .,!?;:\"'，。！？；：、")
            if not text or word.end_s <= word.start_s:
                continue
            symbols = self._mandarin(text) if language == "zh" else self._english(text)
            if not symbols:
                continue
            weights = _weights(symbols) if language != "zh" else [1.0] * len(symbols)
            span_s = word.end_s - word.start_s
            cursor = word.start_s
            total = sum(weights)
            for symbol, weight in zip(symbols, weights, strict=True):
                duration = span_s * weight / total
                timings.append(PhonemeTiming(symbol, cursor, cursor + duration))
                cursor += duration
        return tuple(timings)
