"""Embedded Whisper base: weight assembly from the split wheels, and transcription of real speech."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from avatar.asr import whisper as asr_whisper
from avatar.asr.whisper import (
    MODEL_BIN_SHA256,
    MODEL_BIN_SIZE_BYTES,
    WhisperASR,
    assemble_whisper_base,
    transcribe_file,
)
from avatar.core.audio_io import load_audio
from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.storage import sha256_file
from avatar.core.types import AudioChunk
from tests.support.text_metrics import cer, wer

EVAL_DIR = Path(os.environ.get("AVATAR_EVAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "eval"))
SPEECH = EVAL_DIR / "speech"
LIBRISPEECH_REFERENCE = (
    "IT WAS THE FIRST GREAT SORROW OF HIS LIFE IT WAS NOT SO MUCH THE LOSS OF THE COTTON "
    "ITSELF BUT THE FANTASY THE HOPES THE DREAMS BUILT AROUND IT"
)
needs_eval = pytest.mark.skipif(not SPEECH.is_dir(), reason=f"eval media not found at {SPEECH}")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def asr(models_dir) -> WhisperASR:
    return WhisperASR(cache_dir=models_dir).load()


def test_assembly_verifies_hash_and_is_a_cheap_cache_hit(tmp_path):
    model_dir = assemble_whisper_base(tmp_path)
    model_bin = model_dir / "model.bin"
    assert model_bin.stat().st_size == MODEL_BIN_SIZE_BYTES
    assert (model_dir / "model.bin.sha256").read_text().strip() == MODEL_BIN_SHA256
    assert {p.name for p in model_dir.iterdir()} == {
        "model.bin",
        "model.bin.sha256",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }  # fmt: skip  (no temp files left behind)
    inode = model_bin.stat().st_ino
    assemble_whisper_base(tmp_path)
    assert model_bin.stat().st_ino == inode  # cache hit: not rewritten


def test_damaged_cache_is_rebuilt(tmp_path):
    model_bin = assemble_whisper_base(tmp_path) / "model.bin"
    with model_bin.open("r+b") as handle:
        handle.truncate(1000)
    assemble_whisper_base(tmp_path)
    assert model_bin.stat().st_size == MODEL_BIN_SIZE_BYTES
    (tmp_path / "whisper-base" / "model.bin.sha256").write_text("0" * 64)
    assert sha256_file(assemble_whisper_base(tmp_path) / "model.bin") == MODEL_BIN_SHA256


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path))
    assert asr_whisper.default_cache_dir() == tmp_path / "models"


def test_missing_package_names_the_pip_package(monkeypatch, tmp_path):
    from avatar.core import optional

    real_find_spec = optional.importlib_util.find_spec

    def find_spec(name, *args):
        return None if name == "faster_whisper" else real_find_spec(name, *args)

    monkeypatch.setattr(optional.importlib_util, "find_spec", find_spec)
    with pytest.raises(EngineUnavailable, match="pip install faster-whisper"):
        WhisperASR(cache_dir=tmp_path).load()


def test_empty_audio_is_an_input_error(asr):
    with pytest.raises(InputError, match="0 samples"):
        asr.transcribe(AudioChunk(np.zeros(0, np.float32), 16000))


@needs_eval
def test_jfk(asr):
    text = asr.transcribe(load_audio(SPEECH / "en_male_jfk.flac")).text
    assert "my fellow americans" in text.lower()


@needs_eval
def test_librispeech_matches_reference(asr):
    transcript = asr.transcribe(load_audio(SPEECH / "en_female_librispeech_1995-1837-0001.wav"))
    assert transcript.language == "en"
    assert wer(LIBRISPEECH_REFERENCE, transcript.text) == 0.0


@needs_eval
def test_funasr_mandarin_example_is_exact_and_simplified(asr):
    # language detected, not hinted: Whisper must recognise Mandarin by itself
    transcript = transcribe_file_with(asr, SPEECH / "zh_male_funasr_asr_example.wav")
    assert transcript.language == "zh"
    assert transcript.text.rstrip("。") == "欢迎大家来体验达摩院推出的语音识别模型"


@needs_eval
def test_traditional_output_is_converted_to_simplified(asr):
    # Whisper base answers this AISHELL clip in Traditional characters (廣州市...)
    text = asr.transcribe(load_audio(SPEECH / "zh_female_aishell1_BAC009S0724W0121.wav"), "zh").text
    assert text.startswith("广州市")
    assert cer("广州市房地产中介协会分析", text) <= 0.25  # base mishears 房->佛, 介->间


@needs_eval
def test_word_timestamps_are_ordered_and_inside_the_audio(asr):
    audio = load_audio(SPEECH / "en_male_jfk.flac")
    transcript, words = asr.transcribe_words(audio, language="en")
    assert [w.word.strip(",.").lower() for w in words][:5] == ["and", "so", "my", "fellow", "americans"]
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start_s <= w.end_s <= audio.duration_s + 0.05 for w in words)
    assert "fellow" in transcript.text


@needs_eval
def test_transcribe_file_function(monkeypatch, tmp_path):
    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path))
    transcript = transcribe_file(SPEECH / "en_female_ljspeech_LJ050-0131.wav", language="en")
    assert "system is established" in transcript.text.lower()


def transcribe_file_with(asr: WhisperASR, path: Path):
    return asr.transcribe(load_audio(path))


@pytest.fixture(scope="module")
def short_asr(models_dir) -> WhisperASR:
    return WhisperASR(cache_dir=models_dir, beam_size=1, short_window=True).load()


@needs_eval
def test_short_window_hears_the_same_english(short_asr):
    transcript = short_asr.transcribe(load_audio(SPEECH / "en_female_librispeech_1995-1837-0001.wav"))
    assert transcript.language == "en"  # detected from the short encoding
    assert wer(LIBRISPEECH_REFERENCE, transcript.text) == 0.0


@needs_eval
def test_short_window_mandarin_is_simplified_without_spaces(short_asr):
    transcript = short_asr.transcribe(load_audio(SPEECH / "zh_female_aishell1_BAC009S0724W0121.wav"))
    assert transcript.language == "zh"
    assert " " not in transcript.text
    assert cer("广州市房地产中介协会分析", transcript.text) <= 0.25


def test_short_window_leaves_long_audio_to_the_sliding_window(short_asr, monkeypatch):
    calls = []
    monkeypatch.setattr(short_asr, "_transcribe_short", lambda pcm, language: calls.append(len(pcm)))
    short_asr.transcribe(AudioChunk(np.zeros(16000 * 30, np.float32), 16000), "en")
    assert calls == []
    short_asr.transcribe(AudioChunk(np.zeros(16000 * 3, np.float32), 16000), "en")
    assert calls == [48000]


def test_short_window_on_silence_stays_short(short_asr):
    # the token cap stops Whisper's loops on non-speech: at most 15 tokens/s + 24
    text = short_asr.transcribe(AudioChunk(np.zeros(16000, np.float32), 16000), "en").text
    assert len(text.split()) <= 39
