"""Text script -> one continuous Speech with phoneme timing and emotion spans on one clock.

Each sentence is synthesized separately (bounded TTS inputs, per-sentence language, each with its
segment's emotion) through `avatar.speech.speaker`, then the pieces are laid end to end with their
phoneme times shifted, so the renderer sees one track. A sentence with nothing to say is left
out; the pauses written around it stay. `lay_out_pieces` yields that timeline piece by piece (an
hour-long script is rendered window by window); `assemble_speech` joins it into one Speech.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk, PhonemeTiming, Speech, TextSegment

LEAD_IN_S = 0.3  # closed mouth before the first word
TAIL_S = 0.5  # and after the last
SENTENCE_GAP_S = 0.12


EmotionSpan = tuple[float, float, str, float]  # (start_s, end_s, emotion, intensity 0..1)


@dataclass(frozen=True)
class AssembledSpeech:
    speech: Speech
    emotion_spans: list[EmotionSpan]


@dataclass(frozen=True)
class _Spoken:
    segment_index: int
    text: str
    speech: Speech


@dataclass(frozen=True)
class LaidOutPiece:
    """One stretch of the script's timeline: a spoken sentence or the silence after it.

    Pieces come in time order and join without gaps; a long video is cut into windows inside
    pauses (`is_pause`), where no phoneme and no co-articulation crosses the cut.
    """

    pcm: np.ndarray  # mono float32 at the script's one rate (the first spoken sentence's)
    rate_hz: int
    phonemes: tuple[PhonemeTiming, ...]  # relative to the piece's start
    segment_index: int  # the script segment whose emotion shows during the piece
    emotion: str
    is_pause: bool
    text: str = ""
    language: str | None = None
    intensity: float = 1.0  # how strongly the face shows `emotion` ("[happy:0.5]": 0.5)


def assemble_speech(
    segments: list[TextSegment],
    synthesize: Callable[[str, str], Speech | None],
    split: Callable[[str], list[str]],
    resample: Callable[[np.ndarray, int, int], np.ndarray],
    on_sentence: Callable[[int, int], None] | None = None,
) -> AssembledSpeech:
    """Synthesize every sentence of every segment and join them into one Speech.

    `synthesize(sentence, emotion)` gets the segment's emotion and returns None for a sentence it
    skipped (nothing to say); an InputError when no sentence at all was spoken. Holds the whole
    script's audio: long videos use `lay_out_pieces` window by window instead."""
    pieces: list[np.ndarray] = []
    phonemes: list[PhonemeTiming] = []
    spans: list[EmotionSpan] = []
    texts: list[str] = []
    languages: list[str | None] = []
    cursor = 0  # samples
    rate_hz = 0
    span_start_s, span_segment, span_look = 0.0, None, ("neutral", 1.0)
    for piece in lay_out_pieces(segments, synthesize, split, resample, on_sentence):
        rate_hz = piece.rate_hz
        if span_segment is not None and piece.segment_index != span_segment:
            # The first expression already shows during the lead-in, so spans tile the clip.
            spans.append((span_start_s, cursor / rate_hz, *span_look))
            span_start_s = cursor / rate_hz
        span_segment, span_look = piece.segment_index, (piece.emotion, piece.intensity)
        offset_s = cursor / rate_hz
        phonemes.extend(
            PhonemeTiming(p.phoneme, offset_s + p.start_s, offset_s + p.end_s) for p in piece.phonemes
        )
        pieces.append(piece.pcm)
        cursor += len(piece.pcm)
        if not piece.is_pause:
            texts.append(piece.text)
            languages.append(piece.language)
    spans.append((span_start_s, cursor / rate_hz, *span_look))
    language = max(set(languages), key=languages.count)
    audio = AudioChunk(np.concatenate(pieces), rate_hz)
    return AssembledSpeech(Speech(audio, " ".join(texts), language, tuple(phonemes)), spans)


def lay_out_pieces(
    segments: list[TextSegment],
    synthesize: Callable[[str, str], Speech | None],
    split: Callable[[str], list[str]],
    resample: Callable[[np.ndarray, int, int], np.ndarray],
    on_sentence: Callable[[int, int], None] | None = None,
) -> Iterator[LaidOutPiece]:
    """The script's timeline piece by piece, synthesizing one sentence ahead of what it yields.

    Spoken sentences end to end: the lead-in, a short gap inside a segment, the written pause
    between segments (a segment's pause follows its last spoken sentence), the tail. The pause
    after a sentence depends on which segment speaks next, hence the one sentence of lookahead;
    memory is one sentence, however long the script.
    """
    sentences = [
        (index, sentence)
        for index, segment in enumerate(segments)
        for sentence in (split(segment.text) if segment.text.strip() else [])
    ]

    def pauses_s(first: int, stop: int) -> float:
        return sum(segment.pause_after_s for segment in segments[first:stop])

    previous: _Spoken | None = None
    rate_hz = 0
    for done, (index, sentence) in enumerate(sentences, start=1):
        speech = synthesize(sentence, segments[index].emotion)
        if on_sentence is not None:
            on_sentence(done, len(sentences))
        if speech is None:
            continue
        item = _Spoken(index, sentence, speech)
        if previous is None:
            rate_hz = speech.audio.sample_rate_hz
            # A pause before any words (e.g. "[pause 1s] Hello") lengthens the lead-in.
            lead_in_s = LEAD_IN_S + pauses_s(0, index)
            yield _silence(lead_in_s, rate_hz, index, segments[index])
        else:
            yield _pause_after(previous, index, segments, rate_hz, pauses_s)
        yield _spoken_piece(item, segments[index], rate_hz, resample)
        previous = item
    if previous is None:
        raise InputError(
            "the text has nothing to say: no words, only numbers, punctuation or symbols",
            "write the words the avatar should say",
        )
    yield _pause_after(previous, len(segments), segments, rate_hz, pauses_s)
    yield _silence(TAIL_S, rate_hz, previous.segment_index, segments[previous.segment_index])


def _silence(seconds: float, rate_hz: int, segment_index: int, segment: TextSegment) -> LaidOutPiece:
    """Silence that shows `segment`'s expression (emotion and intensity)."""
    pcm = np.zeros(int(round(seconds * rate_hz)), np.float32)
    return LaidOutPiece(
        pcm, rate_hz, (), segment_index, segment.emotion, is_pause=True, intensity=segment.intensity
    )


def _pause_after(
    item: _Spoken, following: int, segments: list[TextSegment], rate_hz: int, pauses_s
) -> LaidOutPiece:
    """The written pause (or the sentence gap) after `item`, which speaks segment `following` next."""
    pause_s = pauses_s(item.segment_index, following) if following != item.segment_index else 0.0
    segment = segments[item.segment_index]
    return _silence(pause_s or SENTENCE_GAP_S, rate_hz, item.segment_index, segment)


def _spoken_piece(item: _Spoken, segment: TextSegment, rate_hz: int, resample) -> LaidOutPiece:
    speech = item.speech
    pcm = speech.audio.pcm.astype(np.float32)
    if speech.audio.sample_rate_hz != rate_hz:
        pcm = resample(pcm, speech.audio.sample_rate_hz, rate_hz)
    return LaidOutPiece(
        pcm,
        rate_hz,
        tuple(speech.phonemes),
        item.segment_index,
        segment.emotion,
        is_pause=False,
        text=item.text,
        language=speech.language,
        intensity=segment.intensity,
    )


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
