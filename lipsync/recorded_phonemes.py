"""Phoneme timing for recorded speech: ASR words, then forced alignment against a TTS reference.

A recording has no TTS alignment. Whisper tells which words are spoken and roughly when; a TTS
voice given the same words says them with exact phoneme timing, and `forced_align` warps that
reference onto the recording, so every phoneme (the /p/ in "P nine", the rounding of "now")
lands where the speaker made it. The recording is aligned in chunks cut at Whisper's pauses, which
keeps the warp small on long recordings and lets one misheard chunk not shift the others.

Without a reference voice (or when it fails) each word's phonemes are spread over its Whisper
span trimmed to where there is sound (vowels longer than consonants), as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from avatar.core.types import AudioChunk, PhonemeTiming, Speech
from lipsync.forced_align import align_to_reference

_VOWELS = set("aeiouæɑɐɒɔəɚɛɜɪʊʌyɯᵻø")
_SKIP = set("ˈˌːˑ")
_STRIP = " .,!?;:\"'，。！？；：、"
VOICED_HOP_S = 0.01
VOICED_BELOW_PEAK_DB = 25.0
CHUNK_GAP_S = 0.35  # a pause this long between Whisper's words starts a new alignment chunk
CHUNK_MAX_S = 12.0
CHUNK_MARGIN_S = 0.25  # audio kept around a chunk's words (Whisper's boundaries can be early or late)

EDGE_S = 0.03  # kept around the first and last sound when both sides are cut to speech


def _cut(audio: AudioChunk, start_s: float, end_s: float) -> AudioChunk:
    rate = audio.sample_rate_hz
    return AudioChunk(np.asarray(audio.pcm[int(start_s * rate) : int(end_s * rate)]), rate)


ReferenceVoice = Callable[[str, str], Speech]  # (text, language) -> speech with phoneme timing


def _weights(symbols: Sequence[str]) -> list[float]:
    return [2.0 if symbol[:1] in _VOWELS else 1.0 for symbol in symbols]


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


def _chunks(words: Sequence) -> list[list]:
    """Words grouped at Whisper's pauses, each group at most CHUNK_MAX_S long."""
    groups: list[list] = []
    for word in words:
        if not word.word.strip(_STRIP) or word.end_s <= word.start_s:
            continue
        if (
            groups
            and word.start_s - groups[-1][-1].end_s < CHUNK_GAP_S
            and word.end_s - groups[-1][0].start_s < CHUNK_MAX_S
        ):
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


class RecordedPhonemizer:
    """Holds the espeak phonemizer and the optional reference voice; `phonemes(...)` per recording.

    `reference_voice(text, language)` is a TTS that returns phoneme timing (the engine set passes
    its embedded voices; lipsync itself may not import them)."""

    def __init__(self, reference_voice: ReferenceVoice | None = None) -> None:
        self._espeak = None
        self.reference_voice = reference_voice

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

        With `audio` (an AudioChunk) and a reference voice, each chunk of words is force-aligned;
        otherwise (or where that fails) each word's span is trimmed to where there is sound and
        its phonemes spread over it."""
        timings: list[PhonemeTiming] = []
        voiced = _voiced_mask(audio) if audio is not None else None
        groups = _chunks(words)
        for index, group in enumerate(groups):
            aligned = None
            if audio is not None and self.reference_voice is not None:
                lo = groups[index - 1][-1].end_s if index else 0.0
                hi = groups[index + 1][0].start_s if index + 1 < len(groups) else audio.duration_s
                start_s = max(lo, group[0].start_s - CHUNK_MARGIN_S, 0.0)
                end_s = min(hi, group[-1].end_s + CHUNK_MARGIN_S, audio.duration_s)
                aligned = self._aligned(group, language, audio, start_s, end_s)
            timings.extend(aligned if aligned is not None else self._spread(group, language, voiced))
        return tuple(timings)

    def _aligned(self, group, language: str, audio, start_s: float, end_s: float):
        text = " ".join(w.word.strip() for w in group)
        try:
            reference = self.reference_voice(text, language)
        except Exception as error:
            logging.getLogger("avatar.lipsync").info("no reference voice for %r: %s", text, error)
            return None
        # Align sound to sound: background noise before the first word looks like a fricative to
        # the warp, so both sides are cut to where there is speech first.
        voiced = np.flatnonzero(_voiced_mask(_cut(audio, start_s, end_s)))
        spoken = [p for p in reference.phonemes if p.phoneme != "sil"]
        if len(voiced) < 5 or not spoken:
            return None
        rec_from_s = start_s + max(voiced[0] * VOICED_HOP_S - EDGE_S, 0.0)
        rec_to_s = min(start_s + (voiced[-1] + 1) * VOICED_HOP_S + EDGE_S, end_s)
        ref_from_s = max(spoken[0].start_s - EDGE_S, 0.0)
        ref_to_s = min(spoken[-1].end_s + EDGE_S, reference.audio.duration_s)
        shifted = [
            PhonemeTiming(p.phoneme, max(p.start_s - ref_from_s, 0.0), min(p.end_s, ref_to_s) - ref_from_s)
            for p in reference.phonemes
            if p.end_s > ref_from_s and p.start_s < ref_to_s
        ]
        aligned = align_to_reference(
            _cut(audio, rec_from_s, rec_to_s), _cut(reference.audio, ref_from_s, ref_to_s), shifted
        )
        return [PhonemeTiming(p.phoneme, p.start_s + rec_from_s, p.end_s + rec_from_s) for p in aligned]

    def _spread(self, group, language: str, voiced) -> list[PhonemeTiming]:
        timings: list[PhonemeTiming] = []
        for word in group:
            text = word.word.strip(_STRIP)
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
        return timings
