"""The MP4 writer, measured the way a player sees its output: streams, frame counts, durations, pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import AudioChunk
from avatar.render.video_writer import Mp4Writer, fit_audio_to_frames, write_mp4
from tests.support.media_probe import probe_media, read_audio, read_video_frames

FPS = 25
FRAME_S = 1.0 / FPS
BGR = (30, 120, 200)


def tone(duration_s: float, rate_hz: int, freq_hz: float = 440.0) -> AudioChunk:
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    return AudioChunk((0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), rate_hz)


def solid_frames(count: int, width: int, height: int, bgr=BGR):
    """Lazily, like a renderer: the writer must not need the frames up front."""
    for _ in range(count):
        yield np.full((height, width, 3), bgr, np.uint8)


def leftovers(folder: Path, keep: set[str] = frozenset()) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize(
    ("duration_s", "rate_hz", "size"),
    [
        (1.0, 16000, (64, 48)),
        (1.013, 16000, (63, 47)),  # odd sides and audio ending mid-frame
        (3.37, 22050, (96, 64)),
        (2.0, 24000, (64, 64)),
    ],
)
def test_streams_frame_count_and_equal_av_durations(tmp_path, duration_s, rate_hz, size):
    width, height = size
    frame_count = int(np.ceil(duration_s * FPS))
    out = tmp_path / "clip.mp4"
    written = write_mp4(solid_frames(frame_count, width, height), tone(duration_s, rate_hz), out)

    info = probe_media(out)
    (video,) = info.of_kind("video")
    (audio,) = info.of_kind("audio")
    assert len(info.streams) == 2
    assert (video.codec_name, video.profile, video.pix_fmt) == ("h264", "High", "yuv420p")
    assert (audio.codec_name, audio.channels, audio.sample_rate_hz) == ("aac", 1, 48000)
    assert video.fps == FPS
    assert video.frame_count == frame_count == written.frame_count
    assert (video.width, video.height) == (width + width % 2, height + height % 2)
    assert video.duration_s == pytest.approx(frame_count / FPS, abs=1e-3)
    assert abs(audio.duration_s - video.duration_s) < FRAME_S
    # and as decoded (the decoder outputs the last AAC frame whole: up to 1023 samples = 21 ms more)
    decoded = read_audio(out)
    assert abs(decoded.duration_s - video.duration_s) < FRAME_S
    assert leftovers(tmp_path) == ["clip.mp4"]


def test_pixels_and_sound_survive_the_round_trip(tmp_path):
    out = tmp_path / "colours.mp4"
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (200, 200, 200)]
    frames = (np.full((48, 64, 3), colours[k // 5], np.uint8) for k in range(20))
    write_mp4(frames, tone(0.8, 16000, freq_hz=500.0), out)

    decoded = list(read_video_frames(out))
    assert len(decoded) == 20
    for k, frame in enumerate(decoded):
        assert frame.shape == (48, 64, 3)
        error = np.abs(frame[8:-8, 8:-8].astype(int) - np.array(colours[k // 5])).mean()
        assert error < 12, f"frame {k} colour off by {error:.1f}"
    assert [f.shape for f in read_video_frames(out, every_n=5)] == [(48, 64, 3)] * 4

    audio = read_audio(out)
    assert audio.sample_rate_hz == 48000
    middle = audio.pcm[4800:-4800]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    peak_hz = np.argmax(spectrum) * audio.sample_rate_hz / len(middle)
    assert abs(peak_hz - 500.0) < 5
    assert 0.25 < np.abs(middle).max() < 0.35


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8].decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def test_moov_comes_before_the_media_data_for_streaming_playback(tmp_path):
    out = write_mp4(solid_frames(10, 32, 32), tone(0.4, 16000), tmp_path / "fast.mp4").output_path
    boxes = top_level_boxes(out)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat")


def test_odd_size_is_padded_by_repeating_the_edge(tmp_path):
    out = tmp_path / "odd.mp4"
    with Mp4Writer(out, 33, 21, audio=tone(0.2, 16000)) as writer:
        for _ in range(5):
            writer.write(np.full((21, 33, 3), (10, 200, 90), np.uint8))
    assert writer.result.frame_count == 5
    assert (writer.result.width, writer.result.height) == (34, 22)
    last = next(iter(read_video_frames(out)))
    assert np.abs(last[-1, -1].astype(int) - (10, 200, 90)).max() < 20, "padding is not black"


def test_audio_longer_than_the_frames_is_trimmed_and_no_audio_is_allowed(tmp_path):
    trimmed = write_mp4(solid_frames(10, 32, 32), tone(3.0, 16000), tmp_path / "trim.mp4")
    info = probe_media(trimmed.output_path)
    assert abs(info.of_kind("audio")[0].duration_s - 0.4) < FRAME_S

    silent = write_mp4(solid_frames(10, 32, 32), None, tmp_path / "silent.mp4")
    assert [s.kind for s in probe_media(silent.output_path).streams] == ["video"]


def test_fit_audio_to_frames_uses_the_frame_clock():
    chunk = AudioChunk(np.ones(1000, np.float32), 16000)
    assert len(fit_audio_to_frames(chunk, 3, 25)) == 3 * 640
    assert fit_audio_to_frames(chunk, 3, 25)[1000:].max() == 0.0
    assert len(fit_audio_to_frames(chunk, 1, 25)) == 640
    assert len(fit_audio_to_frames(AudioChunk(np.ones(10, np.float32), 22050), 3, 25)) == 3 * 882


def test_error_inside_the_block_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with (
        pytest.raises(RuntimeError, match="renderer exploded"),
        Mp4Writer(out, 32, 32, audio=tone(1, 16000)) as w,
    ):
        for _ in range(5):
            w.write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("renderer exploded")
    assert leftovers(tmp_path) == []


def test_interrupt_from_a_lazy_frame_source_leaves_no_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"previous good video")

    def frames():
        yield from solid_frames(3, 32, 32)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_mp4(frames(), tone(1, 16000), out)
    assert leftovers(tmp_path) == ["video.mp4"]
    assert out.read_bytes() == b"previous good video"


def test_wrong_frame_shape_is_refused_and_cleaned_up(tmp_path):
    with (
        pytest.raises(ValueError, match="expected \\(32, 32, 3\\) uint8"),
        Mp4Writer(tmp_path / "x.mp4", 32, 32) as w,
    ):
        w.write(np.zeros((32, 32, 3), np.uint8))
        w.write(np.zeros((16, 32, 3), np.uint8))
    assert leftovers(tmp_path) == []


def test_no_frames_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no video frames"):
        write_mp4(iter(()), tone(1, 16000), tmp_path / "empty.mp4")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("make_path", "message"),
    [
        (lambda tmp: tmp / "missing" / "out.mp4", "output folder does not exist"),
        (lambda tmp: tmp, "output path is a folder"),
        (lambda tmp: tmp / "file.txt" / "out.mp4", "output folder is not a folder"),
        (lambda tmp: Path("/proc/avatar-test-out.mp4"), "output folder is not writable: /proc"),
    ],
)
def test_bad_destinations_fail_before_any_frame_is_pulled(tmp_path, make_path, message):
    (tmp_path / "file.txt").write_text("not a folder")
    pulled = []

    def frames():
        pulled.append(1)
        yield np.zeros((32, 32, 3), np.uint8)

    with pytest.raises(InputError, match=message) as caught:
        write_mp4(frames(), tone(1, 16000), make_path(tmp_path))
    assert "\n" not in str(caught.value)
    assert not pulled


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder_is_an_input_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            write_mp4(solid_frames(2, 32, 32), None, folder / "out.mp4")
    finally:
        folder.chmod(0o700)


def test_missing_ffmpeg_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineUnavailable, match="apt-get install ffmpeg") as caught:
        write_mp4(solid_frames(2, 32, 32), None, tmp_path / "out.mp4")
    assert "make setup" in str(caught.value)


def test_encoder_failure_surfaces_ffmpeg_stderr(tmp_path):
    out = tmp_path / "out.mp4"
    with (
        pytest.raises(Exception, match="ffmpeg") as caught,
        Mp4Writer(out, 32, 32, preset="no-such-preset") as w,
    ):
        for _ in range(200):
            w.write(np.zeros((32, 32, 3), np.uint8))
    assert "preset" in str(caught.value).lower()
    assert leftovers(tmp_path) == []
