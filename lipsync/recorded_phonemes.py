"""Phoneme timing for recorded speech: ASR word timestamps + grapheme-to-phoneme.

A recording has no TTS alignment, but Whisper tells when each word is spoken and espeak (inside
the piper wheel) or pypinyin tells which sounds make it up; spreading a word's phonemes over its
span (vowels longer than consonants) is enough to close the lips on /p b m/ and shape vowels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatar.core.types import PhonemeTiming

_VOWELS = set("aeiouæɑɐɒɔəɚɛɜɪʊʌyɯᵻø")
_SKIP = set("ˈˌːˑ")


def _weights(symbols: Sequence[str]) -> list[float]:
    return [2.0 if symbol[:1] in _VOWELS else 1.0 for symbol in symbols]


VOICED_HOP_S = 0.01
VOICED_BELOW_PEAK_DB = 25.0


def _voiced_mask(audio) -> np.ndarray:
    """One bool per 10 ms: louder than (loudest 10 ms - 25 dB)."""
    hop = max(1, int(audio.sample_rate_hz * VOICED_HOP_S))
    n = len(audio.pcm) // hop
    frames = np.asarray(audio.pcm[: n * hop], np.float64).reshape(n, hop)
    level_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return level_db > level_db.max() - VOICED_BELOW_PEAK_DB


def _trim_to_sound(start_s: float, end_s: float, voiced: np.ndarray | None) -> tuple[float, float]:
    if voiced is None:
        return start_s, end_s
    a, b = int(start_s / VOICED_HOP_S), int(np.ceil(end_s / VOICED_HOP_S))
    inside = np.flatnonzero(voiced[a:b])
    if len(inside) < 3:  # no sound found: keep Whisper's span rather than invent one
        return start_s, end_s
    return (a + inside[0]) * VOICED_HOP_S, (a + inside[-1] + 1) * VOICED_HOP_S


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

    def phonemes(self, words: Sequence, language: str, audio=None) -> tuple[PhonemeTiming, ...]:
        """`words` have .word, .start_s, .end_s (avatar.asr.whisper.WordTiming).

        With `audio` (an AudioChunk), each word's span is trimmed to where there is sound:
        Whisper's word boundaries are often a few hundred ms early, e.g. the first word of a clip
        starting at 0.0 s.
        """
        voiced = _voiced_mask(audio) if audio is not None else None
        timings: list[PhonemeTiming] = []
        for word in words:
            text = word.word.strip(" .,!?;:\"'，。！？；：、")
            if not text or word.end_s <= word.start_s:
                continue
            start_s, end_s = _trim_to_sound(word.start_s, word.end_s, voiced)
            symbols = self._mandarin(text) if language == "zh" else self._english(text)
            if not symbols:
                continue
            weights = _weights(symbols) if language != "zh" else [1.0] * len(symbols)
            span_s = end_s - start_s
            cursor = start_s
            total = sum(weights)
            for symbol, weight in zip(symbols, weights, strict=True):
                duration = span_s * weight / total
                timings.append(PhonemeTiming(symbol, cursor, cursor + duration))
                cursor += duration
        return tuple(timings)
