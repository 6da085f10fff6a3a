"""Text script -> one continuous Speech with phoneme timing and emotion spans on one clock.

Each sentence is synthesized separately (bounded TTS inputs, per-sentence language), then the
pieces are laid end to end with their phoneme times shifted, so the renderer sees one track.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatar.core.types import AudioChunk, PhonemeTiming, Speech, TextSegment

LEAD_IN_S = 0.3  # closed mouth before the first word
TAIL_S = 0.5  # and after the last
SENTENCE_GAP_S = 0.12


@dataclass(frozen=True)
class AssembledSpeech:
    speech: Speech
    emotion_spans: list[tuple[float, float, str]]


def assemble_speech(
    segments: list[TextSegment],
    synthesize: Callable[[str, str], Speech],
    split: Callable[[str], list[str]],
    resample: Callable[[np.ndarray, int, int], np.ndarray],
    transform: Callable[[Speech], Speech] | None = None,
    on_sentence: Callable[[int, int], None] | None = None,
) -> AssembledSpeech:
    """Synthesize every sentence of every segment and join them; `transform` is e.g. voice matching.

    `synthesize(sentence, emotion)` gets the segment's emotion: engines that can speak it (CosyVoice
    instructions) use it, the others ignore it."""
    sentences = [
        (seg, sentence) for seg in segments for sentence in (split(seg.text) if seg.text.strip() else [])
    ]
    pieces: list[np.ndarray] = []
    phonemes: list[PhonemeTiming] = []
    spans: list[tuple[float, float, str]] = []
    rate_hz: int | None = None
    cursor = 0  # samples

    def silence(seconds: float) -> None:
        nonlocal cursor
        count = int(round(seconds * rate_hz))
        pieces.append(np.zeros(count, np.float32))
        cursor += count

    # A pause before any words (e.g. "[pause 1s] Hello") lengthens the lead-in.
    leading_pause_s = 0.0
    for seg in segments:
        if seg.text.strip():
            break
        leading_pause_s += seg.pause_after_s
    languages: list[str] = []
    last_segment: TextSegment | None = None
    span_start_s = 0.0
    for index, (segment, sentence) in enumerate(sentences):
        speech = synthesize(sentence, segment.emotion)
        if transform is not None:
            speech = transform(speech)
        if rate_hz is None:
            rate_hz = speech.audio.sample_rate_hz
            silence(LEAD_IN_S + leading_pause_s)
        pcm = speech.audio.pcm.astype(np.float32)
        if speech.audio.sample_rate_hz != rate_hz:
            pcm = resample(pcm, speech.audio.sample_rate_hz, rate_hz)
        if segment is not last_segment and last_segment is not None:
            # The first expression already shows during the lead-in, so spans tile the clip.
            spans.append((span_start_s, cursor / rate_hz, last_segment.emotion))
            span_start_s = cursor / rate_hz
        offset_s = cursor / rate_hz
        phonemes.extend(
            PhonemeTiming(p.phoneme, offset_s + p.start_s, offset_s + p.end_s) for p in speech.phonemes
        )
        pieces.append(pcm)
        cursor += len(pcm)
        languages.append(speech.language)
        is_segment_end = index + 1 == len(sentences) or sentences[index + 1][0] is not segment
        silence(segment.pause_after_s if is_segment_end and segment.pause_after_s else SENTENCE_GAP_S)
        last_segment = segment
        if on_sentence is not None:
            on_sentence(index + 1, len(sentences))
    if rate_hz is None:
        raise ValueError("no sentences to synthesize")
    silence(TAIL_S)
    spans.append((span_start_s, cursor / rate_hz, last_segment.emotion if last_segment else "neutral"))
    text = " ".join(sentence for _, sentence in sentences)
    language = max(set(languages), key=languages.count)
    audio = AudioChunk(np.concatenate(pieces), rate_hz)
    return AssembledSpeech(Speech(audio, text, language, tuple(phonemes)), spans)


LEAD_IN_KEPT_S = 0.010
LEAD_IN_THRESHOLD = 0.005  # about -46 dBFS: below any speech onset, above TTS noise


def trim_lead_in(
    speech: Speech, keep_s: float = LEAD_IN_KEPT_S, threshold: float = LEAD_IN_THRESHOLD
) -> Speech:
    """Drop the silence a TTS engine puts before the first sound, keeping `keep_s` of it.

    Piper starts every sentence with 35-60 ms of silence. In the middle of a reply that is a
    natural pause, but before a reply's first sentence it is pure response latency, so the live
    session trims it there. Phoneme times move with the audio; phonemes that fall entirely in the
    cut (the leading 'sil') shrink or go.
    """
    pcm = speech.audio.pcm
    loud = np.flatnonzero(np.abs(pcm) >= threshold)
    if len(loud) == 0:
        return speech
    cut = max(int(loud[0]) - round(keep_s * speech.audio.sample_rate_hz), 0)
    if cut == 0:
        return speech
    cut_s = cut / speech.audio.sample_rate_hz
    phonemes = tuple(
        PhonemeTiming(p.phoneme, max(p.start_s - cut_s, 0.0), p.end_s - cut_s)
        for p in speech.phonemes
        if p.end_s - cut_s > 0.0
    )
    return Speech(AudioChunk(pcm[cut:], speech.audio.sample_rate_hz), speech.text, speech.language, phonemes)
