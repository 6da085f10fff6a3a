"""Long renders in bounded memory: windows that add up to the same video, audio decoded block by
block, durations known from the header, and an output that appears whole or not at all.

Windows are shrunk to 2 s here (`WINDOW_S`), so a 9-second clip exercises several cuts; the
videos are reopened with ffprobe and compared with one-window renders of the same input.
"""

from __future__ import annotations

import struct
import time
import tracemalloc

import numpy as np
import pytest
import soundfile

from avatar.core.audio_io import audio_has_sound, iter_audio, load_audio, probe_audio
from avatar.core.errors import EngineFailed, InputError
from avatar.core.types import AudioChunk, PhonemeTiming, Speech
from avatar.engines.engine_set import EngineSet
from avatar.render import windows
from avatar.render.job import render_video
from avatar.render.request import RenderRequest
from avatar.render.video_writer import Mp4Writer
from tests.conftest import SAMPLE_PORTRAIT, eval_file
from tests.support.media_probe import probe_media, read_audio, read_video_frames

FPS = 25
LIBRISPEECH = "speech/en_female_librispeech_1995-1837-0001.wav"  # 8.73 s, 16 kHz
TEXT = "Hello there. [happy] I am glad to see you today. [pause 0.5s] [sad] But the rain goes on and on."


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    engines = EngineSet(cache_dir=tmp_path_factory.mktemp("cache"))
    yield engines
    engines.close()


def streams(path):
    info = probe_media(path)
    return {s.kind: s for s in info.streams}


# --- audio decoded in blocks ------------------------------------------------------------------


@pytest.mark.parametrize("name", [LIBRISPEECH, "speech/en_male_jfk.flac"])  # 16 kHz mono; 44.1 kHz stereo
@pytest.mark.parametrize("rate_hz", [16000, 24000])
def test_blocks_are_exactly_the_samples_of_one_decode(name, rate_hz):
    path = eval_file(name)
    whole = load_audio(path, rate_hz).pcm
    blocks = list(iter_audio(path, rate_hz, block_s=0.7))
    assert len(blocks) > 5
    assert all(len(b) == round(0.7 * rate_hz) for b in blocks[:-1])
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)


def long_sparse_wav(path, duration_s: float, rate_hz: int = 8000):
    """A real `duration_s` WAV (8-bit silence after 0.1 s of tone) as a sparse file: instant to
    make, a few KB on disk, and every byte of it readable."""
    data_bytes = int(duration_s * rate_hz)
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate_hz, rate_hz, 1, 8)
    header += b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as handle:
        handle.write(header + bytes([200, 56]) * (rate_hz // 20))
        handle.truncate(len(header) + data_bytes)  # the rest reads as 0x00: full-scale negative DC
    return path


def test_duration_comes_from_the_header_and_a_long_file_is_refused_before_decoding(tmp_path):
    path = long_sparse_wav(tmp_path / "long.wav", 3 * 3600)
    assert probe_audio(path).duration_s == pytest.approx(3 * 3600, rel=1e-6)
    started = time.perf_counter()
    with pytest.raises(InputError) as error:
        load_audio(path, max_duration_s=600)
    assert time.perf_counter() - started < 0.5
    assert "long.wav is 3.0 h long, more than the 10.0 min this accepts" in str(error.value)
    assert "\n" not in str(error.value)


def test_hours_of_silence_are_scanned_in_bounded_memory(tmp_path):
    path = tmp_path / "silence.flac"
    rate_hz = 16000
    with soundfile.SoundFile(path, "w", rate_hz, 1, format="FLAC") as sound:
        for _ in range(20):  # 20 minutes, written a minute at a time
            sound.write(np.zeros(60 * rate_hz, np.float32))
    tracemalloc.start()
    try:
        assert audio_has_sound(path) is False
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 20e6, f"{peak_bytes / 1e6:.0f} MB traced for 20 min of silence"  # whole: 77 MB
    assert audio_has_sound(eval_file(LIBRISPEECH)) is True


# --- the writer takes audio as it comes ---------------------------------------------------------


def test_audio_streamed_in_pieces_is_the_audio_of_the_video(tmp_path):
    rate_hz, frames = 24000, 60  # 2.4 s
    t = np.arange(int(2.3 * rate_hz)) / rate_hz  # 0.1 s short: the writer pads to the last frame
    pcm = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    out = tmp_path / "pieces.mp4"
    with Mp4Writer(out, 64, 48, FPS, audio_sample_rate_hz=rate_hz) as writer:
        for start in range(0, len(pcm), 7000):
            writer.write_audio(pcm[start : start + 7000])
        for k in range(frames):
            writer.write(np.full((48, 64, 3), k * 4, np.uint8))
    found = streams(out)
    assert found["video"].frame_count == frames
    assert abs(found["audio"].duration_s - frames / FPS) < 0.03
    decoded = read_audio(out)
    level = np.sqrt(np.mean(decoded.pcm[: int(2.2 * decoded.sample_rate_hz)] ** 2))
    assert level == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    tail = decoded.pcm[int(2.33 * decoded.sample_rate_hz) :]
    assert np.abs(tail).max() < 0.02  # the padding is silence


# --- windows ------------------------------------------------------------------------------------


def test_text_windows_cut_in_pauses_and_add_up_to_the_whole_timeline():
    rate_hz = 16000
    pieces = []
    from avatar.speech.assembly import LaidOutPiece

    for k in range(12):  # 12 sentences of 0.9 s, a 0.3 s pause after each
        phonemes = (PhonemeTiming("a", 0.1, 0.8),)
        pieces.append(
            LaidOutPiece(
                np.full(int(0.9 * rate_hz), 0.1, np.float32),
                rate_hz,
                phonemes,
                k,
                "happy" if k > 5 else "neutral",
                False,
            )
        )
        pieces.append(
            LaidOutPiece(
                np.zeros(int(0.3 * rate_hz), np.float32),
                rate_hz,
                (),
                k,
                "happy" if k > 5 else "neutral",
                True,
            )
        )
    out = list(windows.text_windows(pieces, FPS, window_s=2.0))
    total_samples = sum(len(p.pcm) for p in pieces)
    assert len(out) >= 4
    assert [w.start_frame for w in out] == list(np.cumsum([0] + [w.frame_count for w in out[:-1]]))
    assert sum(w.frame_count for w in out) == int(np.ceil(total_samples * FPS / rate_hz))
    for window in out[:-1]:
        end_s = (window.start_frame + window.frame_count) / FPS
        assert (end_s % 1.2) > 0.9 - 1 / FPS, f"cut at {end_s:.2f} s is inside a sentence"
        assert all(p.start_s >= 0 and p.end_s <= window.frame_count / FPS for p in window.speech.phonemes)
    assert sum(len(w.speech.phonemes) for w in out) == 12


def test_window_expressions_equal_one_plan_of_the_whole_video(engines):
    """Expressions blend across cuts exactly as in a single plan (the look-ahead reaches them)."""
    renderer = engines.renderer(SAMPLE_PORTRAIT, 256, None)
    spans = ((0.0, 3.1, "neutral"), (3.1, 6.0, "happy"), (6.0, 9.0, "sad"))
    whole = renderer.expression_plan(list(spans), 9 * FPS)
    rows = []
    for start in range(0, 9 * FPS, 40):  # cuts at 1.6 s, 3.2 s (inside the blend), ...
        count = min(40, 9 * FPS - start)
        speech = Speech(AudioChunk(np.zeros(count * 640, np.float32), 16000))
        rows.append(windows.expression_rows(renderer, windows.SpeechWindow(speech, start, count, spans)))
    np.testing.assert_allclose(np.concatenate(rows), whole, atol=1e-5)


def _render(engines, tmp_path, name, **fields):
    out = tmp_path / name
    request = RenderRequest(photo_path=SAMPLE_PORTRAIT, output_path=out, size_px=256, **fields)
    return out, render_video(request, engines)


def replay_the_voice(monkeypatch) -> None:
    """Each sentence is synthesized once and replayed after, so two renders hear the same speech."""
    from avatar.render import job

    spoken: dict[tuple[str, str], Speech | None] = {}
    real = job.text_voice

    def replaying(request, engines):
        synthesize = real(request, engines)

        def once(sentence: str, emotion: str):
            if (sentence, emotion) not in spoken:
                spoken[sentence, emotion] = synthesize(sentence, emotion)
            return spoken[sentence, emotion]

        return once

    monkeypatch.setattr(job, "text_voice", replaying)


@pytest.mark.parametrize("source", ["audio", "text"])
def test_windowed_render_has_the_streams_and_length_of_a_one_window_render(
    engines, tmp_path, monkeypatch, source
):
    fields = {"audio_path": eval_file(LIBRISPEECH)} if source == "audio" else {"text": TEXT}
    replay_the_voice(monkeypatch)  # Piper's sampling noise changes durations from run to run
    one_out, one = _render(engines, tmp_path, "one.mp4", **fields)
    monkeypatch.setattr(windows, "WINDOW_S", 2.0)
    many_out, many = _render(engines, tmp_path, "many.mp4", **fields)
    one_streams, many_streams = streams(one_out), streams(many_out)
    assert set(many_streams) == {"video", "audio"} == set(one_streams)
    assert many.frame_count == one.frame_count == many_streams["video"].frame_count
    if source == "audio":
        assert many.frame_count == int(np.ceil(8.73 * FPS))
    assert abs(many_streams["audio"].duration_s - many_streams["video"].duration_s) < 1 / FPS
    assert (many_streams["video"].width, many_streams["video"].height) == (
        one_streams["video"].width,
        one_streams["video"].height,
    )
    a, b = read_audio(one_out).pcm, read_audio(many_out).pcm
    np.testing.assert_allclose(a[: len(b)], b[: len(a)], atol=2e-3)  # same sound, AAC-coded twice
    # Same blinks, sway and expressions; mouths differ only by each window's loudness reference.
    diffs = [
        float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean())
        for x, y in zip(
            read_video_frames(one_out, every_n=10), read_video_frames(many_out, every_n=10), strict=False
        )
    ]
    assert max(diffs) < 2.0, f"mean pixel difference per sampled frame: {np.round(diffs, 2)}"


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_an_error_in_a_later_window_leaves_no_file_and_keeps_the_old_one(
    engines, tmp_path, monkeypatch, error
):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"the previous video")
    monkeypatch.setattr(windows, "WINDOW_S", 2.0)
    real = windows.window_frames
    seen = []

    def failing(renderer, window, motion):
        seen.append(window.start_frame)
        if len(seen) == 3:  # two windows are encoded already
            raise error("stopped mid-render")
        yield from real(renderer, window, motion)

    monkeypatch.setattr(windows, "window_frames", failing)
    # A renderer's bug ends the render as EngineFailed naming the stage; Ctrl-C stays Ctrl-C.
    with pytest.raises(EngineFailed if error is Boom else error):
        render_video(
            RenderRequest(SAMPLE_PORTRAIT, out, audio_path=eval_file(LIBRISPEECH), size_px=256), engines
        )
    assert len(seen) == 3
    assert out.read_bytes() == b"the previous video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]  # no temp video, audio or partial


def test_silent_recording_is_refused_before_rendering(engines, tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000 * 30, np.float32), 16000)
    with pytest.raises(InputError, match="only silence"):
        _render(engines, tmp_path, "x.mp4", audio_path=silent)
    assert not (tmp_path / "x.mp4").exists()
