"""End to end: text or audio -> MP4, reopened and measured like a viewer would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar.engines.engine_set import EngineSet
from avatar.render.job import render_video
from avatar.render.request import RenderRequest
from tests.conftest import ROOT, SAMPLE_PORTRAIT, eval_file
from tests.support.lipsync_measure import best_lag_correlation, measure_frames, rms_envelope, smile_score

FPS = 25


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    engines = EngineSet(cache_dir=tmp_path_factory.mktemp("cache"))
    yield engines
    engines.close()


@pytest.fixture(scope="module")
def english_video(engines, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "hello.mp4"
    request = RenderRequest(
        photo_path=SAMPLE_PORTRAIT,
        output_path=out,
        text="Hello there. [pause 0.8s] My name is Mona, and I am glad to meet you.",
        size_px=384,
    )
    result = render_video(request, engines)
    return out, result


def test_mp4_has_one_h264_and_one_aac_stream_with_equal_durations(english_video):
    from tests.support.media_probe import probe_media

    path, result = english_video
    info = probe_media(path)
    video = [s for s in info.streams if s.kind == "video"]
    audio = [s for s in info.streams if s.kind == "audio"]
    assert len(video) == 1 and len(audio) == 1 and len(info.streams) == 2
    assert video[0].codec_name == "h264" and audio[0].codec_name == "aac"
    assert float(video[0].fps) == 25.0
    assert video[0].frame_count == result.frame_count
    assert abs(video[0].frame_count - video[0].duration_s * FPS) < 0.5, "frame count = duration x fps"
    assert abs(audio[0].duration_s - video[0].duration_s) < 1.0 / FPS, "A/V durations within one frame"
    assert (video[0].width, video[0].height) == (306, 384)  # 512x640 photo scaled to 384, even sides


def test_rendered_mouth_follows_the_speech_in_the_decoded_video(english_video, landmarker):
    from tests.support.media_probe import read_audio, read_video_frames

    path, _ = english_video
    frames = list(read_video_frames(path))
    audio = read_audio(path)
    openings, _ = measure_frames(frames, landmarker)
    assert np.isfinite(openings).mean() > 0.98
    envelope = rms_envelope(audio.pcm, audio.sample_rate_hz, FPS, len(frames))
    lag, corr = best_lag_correlation(openings, envelope)
    assert abs(lag) <= 1, f"best lag {lag} frames"
    assert corr > 0.6, f"correlation {corr:.2f}"
    quiet = envelope < 0.02 * envelope.max()
    assert quiet.sum() >= 15, "lead-in, the 0.8 s pause and the tail are silent"
    assert np.nanmax(openings[quiet]) < 0.015, "mouth closed in silence"


def test_happy_tag_raises_smile_in_the_video(engines, tmp_path, landmarker):
    from tests.support.media_probe import read_video_frames

    out = tmp_path / "tags.mp4"
    render_video(
        RenderRequest(
            photo_path=SAMPLE_PORTRAIT,
            output_path=out,
            text="[neutral] This part is calm and neutral. [happy] And this part is happy!",
            size_px=384,
        ),
        engines,
    )
    frames = list(read_video_frames(out))
    _, shapes = measure_frames(frames, landmarker)
    smiles = np.array([smile_score(s) for s in shapes])
    first, last = smiles[: len(smiles) // 3].mean(), smiles[-len(smiles) // 4 :].mean()
    assert last > first + 0.1, f"smile neutral part {first:.2f}, happy part {last:.2f}"


def test_audio_driven_render_of_a_recording(engines, tmp_path):
    from tests.support.media_probe import probe_media

    speech = eval_file("speech/en_female_librispeech_1995-1837-0001.wav")
    out = tmp_path / "recorded.mp4"
    result = render_video(
        RenderRequest(photo_path=SAMPLE_PORTRAIT, output_path=out, audio_path=speech, size_px=256), engines
    )
    info = probe_media(out)
    video = next(s for s in info.streams if s.kind == "video")
    audio = next(s for s in info.streams if s.kind == "audio")
    assert result.frame_count == video.frame_count == int(np.ceil(8.73 * FPS))
    assert abs(audio.duration_s - video.duration_s) < 1.0 / FPS


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "avatar", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--photo", "missing.jpg", "--text", "hi"], "error: photo not found"),
        (["--photo", "{no_face}", "--text", "hi"], "error: no face found in no_face_coffee_cup.png"),
        (["--photo", "{photo}", "--text", "   "], "error: the text is empty"),
        (["--photo", "{photo}", "--text", "[joyful] hi"], "error: unknown"),
        (["--photo", "{photo}", "--audio", "{silent}"], "silence"),
        (["--photo", "{photo}", "--audio", "{corrupt}"], "error: "),
        (
            ["--photo", "{photo}", "--text", "hi", "-o", "{nodir}/out.mp4"],
            "error: output folder does not exist",
        ),
    ],
)
def test_cli_bad_inputs_are_one_line_errors_and_leave_no_file(tmp_path, args, message):
    import soundfile

    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000 * 2, np.float32), 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    values = {
        "photo": str(SAMPLE_PORTRAIT),
        "no_face": str(eval_file("faces/no_face_coffee_cup.png")),
        "silent": str(silent),
        "corrupt": str(corrupt),
        "nodir": str(tmp_path / "does-not-exist"),
    }
    args = [a.format(**values) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.mp4")]
    result = run_cli("render", "--quiet", *args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {result.stderr}"
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.mp4")), "no partial output"


def test_cli_render_prints_summary(tmp_path):
    out = tmp_path / "cli.mp4"
    result = run_cli(
        "render", "--quiet", "--photo", str(SAMPLE_PORTRAIT), "--text", "Hi!", "--size", "256", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert out.stat().st_size > 1000


def test_cli_batch_renders_every_job_and_reports_failures(tmp_path):
    import json

    from tests.support.media_probe import probe_media

    photo = tmp_path / "me.jpg"
    photo.write_bytes(SAMPLE_PORTRAIT.read_bytes())
    (tmp_path / "jobs.jsonl").write_text(
        "\n".join(
            json.dumps(row, ensure_ascii=False)
            for row in (
                {"photo": "me.jpg", "text": "[happy] Welcome!", "size": 256, "output": "a.mp4"},
                {"photo": "me.jpg", "text": "你好。", "size": 256, "output": "b.mp4"},
                {"photo": "me.jpg", "text": "[sad] Bye.", "size": 256, "face": 3, "output": "c.mp4"},
            )
        ),
        encoding="utf-8",
    )
    result = run_cli("batch", str(tmp_path / "jobs.jsonl"), "--out-dir", str(tmp_path / "out"), "--jobs", "2")
    assert result.returncode == 1, "one job asks for a face that does not exist"
    assert "2 succeeded, 1 failed" in result.stdout
    assert "--face 3 does not exist" in result.stderr
    for name in ("a.mp4", "b.mp4"):
        streams = {s.kind: s for s in probe_media(tmp_path / name).streams}
        assert streams["video"].codec_name == "h264" and streams["audio"].codec_name == "aac"
    assert not (tmp_path / "c.mp4").exists()
    report = json.loads((tmp_path / "out" / "batch_report.json").read_text())
    assert len(report["succeeded"]) == 2 and len(report["failed"]) == 1


def test_a_photo_replaced_under_the_same_path_is_prepared_again(engines, tmp_path):
    """Long-lived processes (the web console) keep one EngineSet: the cache must see a new file."""
    import os
    import shutil

    photo = tmp_path / "me.jpg"
    shutil.copyfile(SAMPLE_PORTRAIT, photo)
    first = engines.renderer(photo, 512, None)
    assert engines.renderer(photo, 512, None) is first, "same file: reused"
    shutil.copyfile(eval_file("faces/painting_mona_lisa.jpg"), photo)
    os.utime(photo, ns=(0, photo.stat().st_mtime_ns + 1_000_000_000))
    assert engines.renderer(photo, 512, None) is not first, "replaced file: prepared again"
