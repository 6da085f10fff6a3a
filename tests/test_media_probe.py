"""probe_media / read_video_frames / read_audio on files made by plain ffmpeg, independent of our writer."""

from __future__ import annotations

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from avatar.core.errors import InputError
from tests.support.media_probe import probe_media, read_audio, read_video_frames


@pytest.fixture(scope="module")
def ntsc_clip(tmp_path_factory):
    """2 s of 29.97 fps 80x60 test pattern + stereo 44.1 kHz tones (left 300 Hz, right 300 Hz)."""
    path = tmp_path_factory.mktemp("probe") / "ntsc.mp4"
    command = [
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=size=80x60:rate=30000/1001:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=44100:duration=2",
        "-filter_complex", "[1:a]pan=stereo|c0=c0|c1=c0[a]",
        "-map", "0:v", "-map", "[a]",
        "-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-c:a", "aac",
        str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return path


def test_probe_reports_every_field_exactly(ntsc_clip):
    info = probe_media(ntsc_clip)
    assert info.path == ntsc_clip and "mp4" in info.format_name
    (video,) = info.of_kind("video")
    (audio,) = info.of_kind("audio")
    assert (video.codec_name, video.profile, video.width, video.height) == (
        "h264",
        "Constrained Baseline",
        80,
        60,
    )
    assert video.fps == Fraction(30000, 1001)
    assert video.frame_count == 60  # ceil(2 s * 29.97)
    assert video.duration_s == pytest.approx(60 * 1001 / 30000, abs=1e-3)
    assert (video.sample_rate_hz, video.channels) == (None, None)
    assert (audio.codec_name, audio.sample_rate_hz, audio.channels) == ("aac", 44100, 2)
    assert audio.duration_s == pytest.approx(2.0, abs=0.03)
    assert audio.fps is None and audio.width is None


def test_decoded_frame_count_matches_packet_count(ntsc_clip):
    assert probe_media(ntsc_clip, decode_frames=True).of_kind("video")[0].frame_count == 60


def test_read_video_frames_decodes_bgr(ntsc_clip):
    frames = list(read_video_frames(ntsc_clip))
    assert len(frames) == 60
    assert frames[0].shape == (60, 80, 3) and frames[0].dtype == np.uint8
    assert len(list(read_video_frames(ntsc_clip, every_n=7))) == 9  # frames 0, 7, ..., 56
    with pytest.raises(ValueError, match="every_n"):
        next(read_video_frames(ntsc_clip, every_n=0))


def test_read_audio_mixes_to_mono_at_the_stream_rate(ntsc_clip):
    audio = read_audio(ntsc_clip)
    assert audio.sample_rate_hz == 44100 and audio.pcm.dtype == np.float32 and audio.pcm.ndim == 1
    assert audio.duration_s == pytest.approx(2.0, abs=0.03)
    middle = audio.pcm[4410:-4410]
    spectrum = np.abs(np.fft.rfft(middle))
    assert abs(np.argmax(spectrum) * 44100 / len(middle) - 300) < 2


def test_audio_only_file_has_no_frames(tmp_path):
    path = tmp_path / "tone.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=200:duration=0.5", str(path)],
        check=True,
    )
    info = probe_media(path)
    assert [s.kind for s in info.streams] == ["audio"]
    assert info.streams[0].codec_name == "pcm_s16le" and info.streams[0].sample_rate_hz == 44100
    assert read_audio(path).pcm.shape == (22050,)
    with pytest.raises(InputError, match="no video stream"):
        next(read_video_frames(path))


@pytest.mark.parametrize("reader", [probe_media, read_audio, lambda p: next(read_video_frames(p))])
def test_missing_and_unreadable_files_are_input_errors(tmp_path, reader):
    with pytest.raises(InputError, match="media file not found"):
        reader(tmp_path / "nope.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 10)
    with pytest.raises(InputError, match="cannot read media file") as caught:
        reader(garbage)
    assert "\n" not in str(caught.value)
