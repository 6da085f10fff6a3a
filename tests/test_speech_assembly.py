"""Sentences synthesized separately are joined on one clock: exact offsets, spans and pauses."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.core.types import AudioChunk, PhonemeTiming, Speech, TextSegment
from avatar.speech.assembly import LEAD_IN_S, SENTENCE_GAP_S, TAIL_S, assemble_speech, trim_lead_in

RATE = 16000


def fake_tts(sentence: str, emotion: str = "neutral") -> Speech:
    """0.1 s of audio per word, one phoneme per word spanning it."""
    words = sentence.split()
    pcm = np.full(int(0.1 * RATE) * len(words), 0.5, np.float32)
    phonemes = tuple(PhonemeTiming(w[0], 0.1 * i, 0.1 * (i + 1)) for i, w in enumerate(words))
    return Speech(AudioChunk(pcm, RATE), sentence, "en", phonemes)


def split(text: str) -> list[str]:
    return [s.strip() + "." for s in text.split(".") if s.strip()]


def no_resample(pcm, from_hz, to_hz):
    raise AssertionError("all pieces share one rate")


def test_offsets_pauses_and_emotion_spans_are_exact():
    segments = [
        TextSegment("one two. three.", "neutral", pause_after_s=0.5),
        TextSegment("four five six.", "happy"),
    ]
    assembled = assemble_speech(segments, fake_tts, split, no_resample)
    speech = assembled.speech
    starts = [p.start_s for p in speech.phonemes]
    # lead-in, "one two." (0.2 s), gap, "three." (0.1 s), 0.5 s pause, "four five six."
    first = LEAD_IN_S
    second = first + 0.2 + SENTENCE_GAP_S
    third = second + 0.1 + 0.5
    assert starts == pytest.approx([first, first + 0.1, second, third, third + 0.1, third + 0.2])
    total_s = third + 0.3 + SENTENCE_GAP_S + TAIL_S
    assert len(speech.audio.pcm) == pytest.approx(total_s * RATE, abs=3)
    assert assembled.emotion_spans == [
        (0.0, pytest.approx(third), "neutral", 1.0),
        (pytest.approx(third), pytest.approx(len(speech.audio.pcm) / RATE), "happy", 1.0),
    ]
    # audio is silent exactly where no sentence plays
    assert np.all(speech.audio.pcm[: int(LEAD_IN_S * RATE)] == 0)
    assert speech.audio.pcm[int((first + 0.05) * RATE)] == 0.5


def test_pieces_at_other_rates_are_resampled_and_timing_kept():
    calls = []

    def mixed_tts(sentence: str, emotion: str = "neutral") -> Speech:
        speech = fake_tts(sentence)
        if sentence.startswith("b"):
            pcm = np.full(int(0.1 * 24000), 0.5, np.float32)
            return Speech(AudioChunk(pcm, 24000), sentence, "zh", speech.phonemes)
        return speech

    def resample(pcm, from_hz, to_hz):
        calls.append((from_hz, to_hz))
        return np.interp(
            np.arange(int(len(pcm) * to_hz / from_hz)) * from_hz / to_hz, np.arange(len(pcm)), pcm
        )

    assembled = assemble_speech([TextSegment("a. b.")], mixed_tts, split, resample)
    assert calls == [(24000, RATE)]
    assert assembled.speech.audio.sample_rate_hz == RATE
    assert assembled.speech.phonemes[1].start_s == pytest.approx(LEAD_IN_S + 0.1 + SENTENCE_GAP_S)


def test_leading_pause_lengthens_the_lead_in():
    segments = [TextSegment("", "neutral", pause_after_s=1.0), TextSegment("hello.", "happy")]
    assembled = assemble_speech(segments, fake_tts, split, no_resample)
    assert assembled.speech.phonemes[0].start_s == pytest.approx(LEAD_IN_S + 1.0)


def test_a_skipped_sentence_leaves_no_sound_and_keeps_the_pauses_around_it():
    def skipping_tts(sentence: str, emotion: str = "neutral") -> Speech | None:
        return None if sentence.startswith("(") else fake_tts(sentence)

    segments = [
        TextSegment("(5). one.", "neutral"),
        TextSegment("two. (6).", "happy", pause_after_s=0.7),
        TextSegment("three.", "sad"),
    ]
    assembled = assemble_speech(segments, skipping_tts, split, no_resample)
    starts = [p.start_s for p in assembled.speech.phonemes]
    # lead-in, "one." (0.1 s), the gap between segments, "two." (0.1 s), its segment's pause, "three."
    second = LEAD_IN_S + 0.1 + SENTENCE_GAP_S
    assert starts == pytest.approx([LEAD_IN_S, second, second + 0.1 + 0.7])
    assert assembled.speech.text == "one. two. three."
    assert [span[2] for span in assembled.emotion_spans] == ["neutral", "happy", "sad"]


def test_a_script_with_nothing_to_say_is_one_input_error():
    from avatar.core.errors import InputError

    with pytest.raises(InputError, match="nothing to say"):
        assemble_speech([TextSegment("(5). (6).")], lambda sentence, emotion: None, split, no_resample)


def test_trim_lead_in_keeps_10_ms_and_moves_phonemes():
    rate = 16000
    pcm = np.concatenate([np.zeros(800, np.float32), np.full(1600, 0.3, np.float32)])  # 50 ms silence
    speech = Speech(
        AudioChunk(pcm, rate),
        "a",
        "en",
        (PhonemeTiming("sil", 0.0, 0.05), PhonemeTiming("a", 0.05, 0.15)),
    )
    trimmed = trim_lead_in(speech)
    assert len(trimmed.audio.pcm) == len(pcm) - 640  # 40 ms cut, 10 ms (160 samples) kept
    assert np.flatnonzero(trimmed.audio.pcm)[0] == 160
    assert trimmed.phonemes == (
        PhonemeTiming("sil", 0.0, pytest.approx(0.01)),
        PhonemeTiming("a", pytest.approx(0.01), pytest.approx(0.11)),
    )
    silent = Speech(AudioChunk(np.zeros(100, np.float32), rate))
    assert trim_lead_in(silent) is silent
    assert trim_lead_in(trimmed).audio.pcm.shape == trimmed.audio.pcm.shape, "idempotent"


def test_a_segments_intensity_travels_with_its_span_and_into_the_windows():
    """ "[happy:0.3]" reaches the renderer: the span of each segment carries its intensity, in one
    assembled Speech and in the windows of a long render alike."""
    from avatar.render.windows import text_windows
    from avatar.speech.assembly import lay_out_pieces

    segments = [TextSegment("one two.", "happy", intensity=0.3), TextSegment("three.", "happy")]
    assembled = assemble_speech(segments, fake_tts, split, no_resample)
    assert [span[2:] for span in assembled.emotion_spans] == [("happy", 0.3), ("happy", 1.0)]
    (window,) = text_windows(lay_out_pieces(segments, fake_tts, split, no_resample), 25)
    assert [span[2:] for span in window.spans] == [("happy", 0.3), ("happy", 1.0)]
    assert window.spans[0][1] == pytest.approx(assembled.emotion_spans[0][1])
