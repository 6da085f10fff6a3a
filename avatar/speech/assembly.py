"""Text script -> one continuous Speech with phoneme timing and emotion spans on one clock.

Each sentence is synthesized separately (bounded TTS inputs, per-sentence language, each with its
segment's emotion) through `avatar.speech.speaker`, then the pieces are laid end to end with their
phoneme times shifted, so the renderer sees one track. A sentence with nothing to say is left
out; the pauses written around it stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk, PhonemeTiming, Speech, TextSegment

LEAD_IN_S = 0.3  # closed mouth before the first word
TAIL_S = 0.5  # and after the last
SENTENCE_GAP_S = 0.12


@dataclass(frozen=True)
class AssembledSpeech:
    speech: Speech
    emotion_spans: list[tuple[float, float, str]]


@dataclass(frozen=True)
class _Spoken:
    segment_index: int
    text: str
    speech: Speech


def assemble_speech(
    segments: list[TextSegment],
    synthesize: Callable[[str, str], Speech | None],
    split: Callable[[str], list[str]],
    resample: Callable[[np.ndarray, int, int], np.ndarray],
    on_sentence: Callable[[int, int], None] | None = None,
) -> AssembledSpeech:
    """Synthesize every sentence of every segment and join them.

    `synthesize(sentence, emotion)` gets the segment's emotion and returns None for a sentence it
    skipped (nothing to say); an InputError when no sentence at all was spoken."""
    sentences = [
        (index, sentence)
        for index, segment in enumerate(segments)
        for sentence in (split(segment.text) if segment.text.strip() else [])
    ]
    spoken: list[_Spoken] = []
    for done, (index, sentence) in enumerate(sentences, start=1):
        speech = synthesize(sentence, segments[index].emotion)
        if speech is not None:
            spoken.append(_Spoken(index, sentence, speech))
        if on_sentence is not None:
            on_sentence(done, len(sentences))
    if not spoken:
        raise InputError(
            "the text has nothing to say: no words, only numbers, punctuation or symbols",
            "write the words the avatar should say",
        )
    return _lay_out(segments, spoken, resample)


def _lay_out(
    segments: list[TextSegment], spoken: list[_Spoken], resample: Callable[[np.ndarray, int, int], np.ndarray]
) -> AssembledSpeech:
    """Spoken sentences end to end: the lead-in, a short gap inside a segment, the written pause
    between segments (a segment's pause follows its last spoken sentence), the tail."""
    rate_hz = spoken[0].speech.audio.sample_rate_hz
    pieces: list[np.ndarray] = []
    phonemes: list[PhonemeTiming] = []
    spans: list[tuple[float, float, str]] = []
    cursor = 0  # samples

    def silence(seconds: float) -> None:
        nonlocal cursor
        count = int(round(seconds * rate_hz))
        pieces.append(np.zeros(count, np.float32))
        cursor += count

    def pauses_s(first: int, stop: int) -> float:
        return sum(segment.pause_after_s for segment in segments[first:stop])

    # A pause before any words (e.g. "[pause 1s] Hello") lengthens the lead-in.
    silence(LEAD_IN_S + pauses_s(0, spoken[0].segment_index))
    span_start_s = 0.0
    for position, item in enumerate(spoken):
        if position and item.segment_index != spoken[position - 1].segment_index:
            # The first expression already shows during the lead-in, so spans tile the clip.
            spans.append(
                (span_start_s, cursor / rate_hz, segments[spoken[position - 1].segment_index].emotion)
            )
            span_start_s = cursor / rate_hz
        speech = item.speech
        pcm = speech.audio.pcm.astype(np.float32)
        if speech.audio.sample_rate_hz != rate_hz:
            pcm = resample(pcm, speech.audio.sample_rate_hz, rate_hz)
        offset_s = cursor / rate_hz
        phonemes.extend(
            PhonemeTiming(p.phoneme, offset_s + p.start_s, offset_s + p.end_s) for p in speech.phonemes
        )
        pieces.append(pcm)
        cursor += len(pcm)
        following = spoken[position + 1].segment_index if position + 1 < len(spoken) else len(segments)
        pause_s = pauses_s(item.segment_index, following) if following != item.segment_index else 0.0
        silence(pause_s or SENTENCE_GAP_S)
    silence(TAIL_S)
    spans.append((span_start_s, cursor / rate_hz, segments[spoken[-1].segment_index].emotion))
    languages = [item.speech.language for item in spoken]
    language = max(set(languages), key=languages.count)
    text = " ".join(item.text for item in spoken)
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
