"""Audio loading on real recordings of every rate and format we expect, and on broken files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from avatar.core.audio_io import load_audio, resample, save_wav
from avatar.core.errors import InputError
from avatar.core.types import AudioChunk

EVAL_DIR = Path(os.environ.get("AVATAR_EVAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "eval"))
SPEECH = EVAL_DIR / "speech"
needs_eval = pytest.mark.skipif(not SPEECH.is_dir(), reason=f"eval media not found at {SPEECH}")


@needs_eval
@pytest.mark.parametrize(
    ("name", "duration_s"),
    [
        ("en_female_librispeech_1995-1837-0001.wav", 8.73),  # 16 kHz PCM16
        ("en_female_ljspeech_LJ050-0131.wav", 7.658),  # 22.05 kHz
        ("zh_female_cosyvoice_zero_shot_prompt.wav", 3.48),  # 24 kHz float32
        ("en_male_jfk.flac", 11.0),  # 44.1 kHz stereo 24-bit FLAC
        ("event_applause_freesound_119028.wav", 10.498),  # 44.1 kHz stereo PCM16
    ],
)
@pytest.mark.parametrize("rate_hz", [16000, 22050])
def test_real_files_decode_to_mono_float32_at_requested_rate(name, duration_s, rate_hz):
    chunk = load_audio(SPEECH / name, rate_hz)
    assert chunk.sample_rate_hz == rate_hz
    assert chunk.pcm.dtype == np.float32 and chunk.pcm.ndim == 1
    assert chunk.duration_s == pytest.approx(duration_s, abs=0.002)
    assert 0.1 < np.abs(chunk.pcm).max() <= 1.0


@needs_eval
def test_float_samples_above_full_scale_are_clipped():
    raw, _ = soundfile.read(SPEECH / "event_laughter_esc50_4-132816-A.wav", dtype="float32")
    assert np.abs(raw).max() > 1.0  # the file really overshoots
    chunk = load_audio(SPEECH / "event_laughter_esc50_4-132816-A.wav")
    assert np.abs(chunk.pcm).max() == pytest.approx(1.0)


@needs_eval
def test_stereo_is_the_channel_average(tmp_path):
    left, rate_hz = soundfile.read(SPEECH / "en_female_librispeech_1995-1837-0001.wav", dtype="float32")
    path = tmp_path / "left_only.wav"
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), rate_hz, subtype="FLOAT")
    chunk = load_audio(path, rate_hz)
    np.testing.assert_allclose(chunk.pcm, left / 2, atol=1e-6)


@needs_eval
def test_audio_track_of_a_video_is_read():
    video = EVAL_DIR / "video" / "grid_lrwp9a.mp4"
    if not video.is_file():
        pytest.skip("eval video missing")
    assert load_audio(video).duration_s == pytest.approx(2.98, abs=0.05)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _assert_one_line_error(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as error:
        load_audio(tmp_path / "nope.wav")
    _assert_one_line_error(error, "not found", "nope.wav")


def test_zero_byte_file(tmp_path):
    with pytest.raises(InputError) as error:
        load_audio(_write(tmp_path / "empty.wav", b""))
    _assert_one_line_error(error, "empty", "empty.wav")


def test_wav_with_zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    soundfile.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError) as error:
        load_audio(path)
    _assert_one_line_error(error, "0 samples", "zero.wav")


def test_random_bytes_are_not_audio(tmp_path):
    path = _write(tmp_path / "noise.mp3", np.random.default_rng(0).bytes(4000))
    with pytest.raises(InputError) as error:
        load_audio(path)
    _assert_one_line_error(error, "noise.mp3", "export it again")


def test_text_file_is_not_audio(tmp_path):
    path = _write(tmp_path / "notes.txt", b"hello, this is not a recording\n" * 20)
    with pytest.raises(InputError) as error:
        load_audio(path)
    _assert_one_line_error(error, "notes.txt")


@needs_eval
def test_truncated_and_garbled_flac_are_corrupt(tmp_path):
    data = (SPEECH / "en_male_jfk.flac").read_bytes()
    noise = np.random.default_rng(1).bytes(20000)
    for name, payload in (("cut.flac", data[:3000]), ("garbled.flac", data[:200] + noise)):
        with pytest.raises(InputError) as error:
            load_audio(_write(tmp_path / name, payload))
        _assert_one_line_error(error, name)


@pytest.mark.parametrize("peak", [0.0, 1e-4])
def test_silence_is_rejected_unless_allowed(tmp_path, peak):
    path = tmp_path / "quiet.wav"
    soundfile.write(path, np.full(16000, peak, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(InputError) as error:
        load_audio(path)
    _assert_one_line_error(error, "contains only silence", "quiet.wav")
    assert load_audio(path, allow_silence=True).duration_s == pytest.approx(1.0)


def test_resample_keeps_duration_and_waveform():
    rate_in, rate_out = 44100, 16000
    t_in = np.arange(rate_in) / rate_in
    sine = np.sin(2 * np.pi * 440 * t_in).astype(np.float32)
    out = resample(sine, rate_in, rate_out)
    assert len(out) == rate_out and out.dtype == np.float32
    expected = np.sin(2 * np.pi * 440 * np.arange(rate_out) / rate_out)
    np.testing.assert_allclose(out[200:-200], expected[200:-200], atol=1e-3)
    assert len(resample(out, 16000, 22050)) == 22050


def test_resample_rejects_bad_rates():
    with pytest.raises(InputError):
        resample(np.zeros(10, np.float32), 0, 16000)


def test_save_wav_round_trip(tmp_path):
    pcm = (0.5 * np.sin(np.linspace(0, 200, 8000))).astype(np.float32)
    path = save_wav(tmp_path / "out.wav", AudioChunk(pcm, 8000))
    back = load_audio(path, 8000)
    np.testing.assert_allclose(back.pcm, pcm, atol=1e-4)
    with pytest.raises(InputError):
        save_wav(tmp_path / "missing" / "out.wav", AudioChunk(pcm, 8000))
