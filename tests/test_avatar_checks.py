"""Photo and voice-sample checks: real photos and recordings, every bad input explained with a hint."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from avatar.core.errors import InputError
from avatar.library.checks import check_photo, check_voice_sample, speech_to_noise_db
from tests.conftest import SAMPLE_PORTRAIT, SAMPLE_VOICE, eval_file

BOX_RGB = (255, 220, 0)  # lipsync.preview draws the face box in BGR (0, 220, 255)


def _input_error(call, *args, **kwargs) -> InputError:
    """Run `call`, require an InputError with a hint, and return it for message checks."""
    with pytest.raises(InputError) as caught:
        call(*args, **kwargs)
    assert caught.value.hint, f"no hint for: {caught.value.message}"
    return caught.value


@pytest.fixture(scope="module")
def sample_check(landmarker):
    return check_photo(SAMPLE_PORTRAIT, landmarker=landmarker)


@pytest.fixture(scope="module")
def voice_pcm():
    import soundfile

    pcm, rate_hz = soundfile.read(str(SAMPLE_VOICE), dtype="float32")
    return pcm, rate_hz


def _write_wav(path: Path, pcm: np.ndarray, rate_hz: int) -> Path:
    import soundfile

    soundfile.write(str(path), np.asarray(pcm, dtype=np.float32), rate_hz, subtype="FLOAT")
    return path


def _modified_portrait(tmp_path: Path, name: str, change) -> Path:
    import cv2

    image = cv2.imread(str(SAMPLE_PORTRAIT))
    path = tmp_path / name
    assert cv2.imwrite(str(path), change(image))
    return path


# -- photos ------------------------------------------------------------------------------------------


def test_sample_portrait_has_one_clean_face_and_a_drawn_preview(sample_check):
    import cv2

    assert sample_check.face_count == 1
    assert sample_check.warnings == ()
    assert 110 < sample_check.face_height_px < 160  # 133 px in the 410x512 check image
    preview = sample_check.preview_rgb
    assert preview.dtype == np.uint8 and preview.shape == (512, 410, 3)
    plain = cv2.resize(cv2.imread(str(SAMPLE_PORTRAIT)), (410, 512), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    changed = np.any(preview != plain, axis=2)
    assert 0.02 < changed.mean() < 0.5, "landmarks and contours drawn on the face, not the whole photo"
    x0, y0, x1, y1 = (int(v) for v in sample_check.face_box_xyxy)
    assert tuple(preview[y0, (x0 + x1) // 2]) == BOX_RGB, "face box drawn at the reported face box (RGB)"
    assert y1 - y0 == pytest.approx(sample_check.face_height_px, abs=1)


def test_two_faces_warn_and_use_the_largest_or_the_chosen_one(landmarker):
    photo = eval_file("faces/two_faces_obama_biden.jpg")
    largest = check_photo(photo, landmarker=landmarker)
    assert largest.face_count == 2
    assert (
        largest.warnings[0]
        == "2 faces found: using the largest (pass face index 0-1 to choose another; 0 = largest)"
    )
    second = check_photo(photo, face_index=1, landmarker=landmarker)
    assert not any("faces found" in warning for warning in second.warnings)
    assert second.face_box_xyxy != largest.face_box_xyxy
    error = _input_error(check_photo, photo, face_index=5, landmarker=landmarker)
    assert error.message == "face index 5 does not exist: two_faces_obama_biden.jpg has 2 face(s)"
    assert "0 to 1" in error.hint


@pytest.mark.parametrize("name", ["faces/no_face_coffee_cup.png", "faces/no_human_face_cat_chelsea.png"])
def test_photos_without_a_human_face_are_refused(landmarker, name):
    photo = eval_file(name)
    error = _input_error(check_photo, photo, landmarker=landmarker)
    assert error.message == f"no face found in {photo.name}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "photo file is empty"),
        (b"GIF89a definitely not a portrait", r"cannot read bad\.jpg as an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, r"cannot read bad\.jpg as an image"),  # truncated JPEG
    ],
)
def test_unreadable_photos_are_refused_with_a_hint(tmp_path, landmarker, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    error = _input_error(check_photo, path, landmarker=landmarker)
    assert re.search(message, error.message)


def test_missing_photo_and_folder_are_refused(tmp_path, landmarker):
    assert (
        "photo not found" in _input_error(check_photo, tmp_path / "nope.jpg", landmarker=landmarker).message
    )
    assert "is a folder" in _input_error(check_photo, tmp_path, landmarker=landmarker).message


def test_face_too_small_to_animate(landmarker):
    error = _input_error(check_photo, SAMPLE_PORTRAIT, size_px=128, landmarker=landmarker)
    assert "too small to animate" in error.message and "64+ px" in error.hint


def test_small_face_is_a_warning_not_an_error(landmarker):
    result = check_photo(eval_file("faces/painting_mona_lisa.jpg"), landmarker=landmarker)
    assert result.face_count == 1
    assert any(w.startswith("the face is small (93 px tall in a 512 px image)") for w in result.warnings)


def test_dark_photo_warns_with_its_brightness(tmp_path, landmarker):
    dark = _modified_portrait(tmp_path, "dark.png", lambda image: (image * 0.3).astype(np.uint8))
    result = check_photo(dark, landmarker=landmarker)
    (warning,) = [w for w in result.warnings if "dark" in w]
    assert warning.startswith("the photo is dark (mean face brightness 3")  # ~35/255
    assert not any("blurry" in w for w in result.warnings), "darkness alone is not blur"


def test_blurry_photo_warns(tmp_path, landmarker):
    import cv2

    blurry = _modified_portrait(tmp_path, "blurry.png", lambda image: cv2.GaussianBlur(image, (0, 0), 2.5))
    result = check_photo(blurry, landmarker=landmarker)
    assert any(w.startswith("the photo is blurry") for w in result.warnings)


# -- voice samples -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper():
    from avatar.asr.whisper import WhisperASR

    return WhisperASR().load()


def test_sample_voice_is_measured_and_transcribed(whisper):
    result = check_voice_sample(SAMPLE_VOICE, asr=whisper)
    assert result.duration_s == pytest.approx(7.66, abs=0.01)
    assert result.sample_rate_hz == 22050  # the file's own rate, not the analysis rate
    assert result.language == "en"
    assert "system is established for the frequent formal review" in result.transcript.lower()
    assert result.snr_db > 30 and result.clipped_fraction == 0.0
    assert result.warnings == ()


def test_transcription_can_be_skipped():
    result = check_voice_sample(SAMPLE_VOICE, transcribe=False)
    assert result.transcript == "" and result.language is None
    assert result.duration_s == pytest.approx(7.66, abs=0.01)


@pytest.mark.parametrize(
    ("seconds", "message"),
    [(2.0, "voice sample is too short: 2.0 s, need 3-30 s"), (31.0, "voice sample is too long: 31.0 s")],
)
def test_too_short_and_too_long_samples_are_refused(tmp_path, voice_pcm, seconds, message):
    pcm, rate_hz = voice_pcm
    clip = np.tile(pcm, 5)[: int(seconds * rate_hz)]
    error = _input_error(
        check_voice_sample, _write_wav(tmp_path / "clip.wav", clip, rate_hz), transcribe=False
    )
    assert error.message.startswith(message)


def test_silent_empty_corrupt_and_missing_samples_are_refused(tmp_path):
    silent = _write_wav(tmp_path / "silent.wav", np.zeros(16000 * 5), 16000)
    assert "only silence" in _input_error(check_voice_sample, silent, transcribe=False).message
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert "empty" in _input_error(check_voice_sample, empty, transcribe=False).message
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    assert "cannot read" in _input_error(check_voice_sample, corrupt, transcribe=False).message
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(SAMPLE_VOICE.read_bytes()[:3000])
    assert "is corrupt" in _input_error(check_voice_sample, truncated, transcribe=False).message
    image = tmp_path / "photo.wav"
    image.write_bytes(SAMPLE_PORTRAIT.read_bytes())
    assert "is not an audio file" in _input_error(check_voice_sample, image, transcribe=False).message
    assert "not found" in _input_error(check_voice_sample, tmp_path / "nope.wav", transcribe=False).message


def test_noisy_clipped_quiet_and_long_samples_warn(tmp_path, voice_pcm):
    pcm, rate_hz = voice_pcm
    rng = np.random.default_rng(0)
    noisy = check_voice_sample(
        _write_wav(tmp_path / "noisy.wav", pcm + 0.04 * rng.standard_normal(len(pcm)), rate_hz),
        transcribe=False,
    )
    assert noisy.snr_db < 15 and any(w.startswith("voice sample is noisy") for w in noisy.warnings)
    clipped = check_voice_sample(
        _write_wav(tmp_path / "clipped.wav", np.clip(pcm * 12, -1, 1), rate_hz), transcribe=False
    )
    assert clipped.clipped_fraction > 0.001 and any("clipped" in w for w in clipped.warnings)
    quiet = check_voice_sample(_write_wav(tmp_path / "quiet.wav", pcm * 0.03, rate_hz), transcribe=False)
    assert any(w.startswith("voice sample is quiet") for w in quiet.warnings)
    long = check_voice_sample(_write_wav(tmp_path / "long.wav", np.tile(pcm, 3), rate_hz), transcribe=False)
    assert long.duration_s == pytest.approx(22.97, abs=0.01)
    assert any(w.startswith("voice sample is long (23.0 s)") for w in long.warnings)


def test_laughter_is_flagged_as_noisy():
    result = check_voice_sample(eval_file("speech/event_laughter_esc50_4-132816-A.wav"), transcribe=False)
    assert result.snr_db < 15 and any("noisy" in w for w in result.warnings)


def test_snr_compares_speech_frames_with_pauses():
    rate_hz = 16000
    t = np.arange(rate_hz * 2) / rate_hz
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    gated = np.where((t % 0.5) < 0.25, tone, 0.005 * np.sin(2 * np.pi * 50 * t))  # 40 dB down
    assert speech_to_noise_db(gated, rate_hz) == pytest.approx(40.0, abs=0.5)
