"""Batch runner: manifests, validation of every row up front, failures isolated, real parallel workers.

Rendering is replaced by `fake_render`, which writes a real tiny MP4 through the writer, so the
outputs are checked by measurement without loading any engine.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk
from avatar.render.batch import BatchJob, JobRunner, read_manifest, run_batch
from avatar.render.request import RenderRequest, RenderResult
from tests.support.media_probe import probe_media

FPS = 25
RENDEZVOUS_TIMEOUT_S = 20.0


def fake_render(request: RenderRequest) -> RenderResult:
    """Module level so it pickles into spawned workers. Text decides the behaviour."""
    text = request.text or ""
    if "FAIL" in text:
        raise InputError("the fake engine refuses this text")
    if "CRASH" in text:
        raise ZeroDivisionError("fake bug")
    if "RENDEZVOUS" in text:
        _wait_for_a_second_worker(Path(request.output_path).parent / "rendezvous")
    if request.audio_path is not None:
        pcm, rate_hz = soundfile.read(str(request.audio_path), dtype="float32")
    else:
        rate_hz = 16000
        pcm = np.zeros(int(0.2 * rate_hz * (1 + len(text) % 3)), np.float32)
    frame_count = int(np.ceil(len(pcm) / rate_hz * FPS))
    frames = (np.full((32, 32, 3), 40 * (k % 6), np.uint8) for k in range(frame_count))
    from avatar.render.video_writer import write_mp4

    write_mp4(frames, AudioChunk(pcm, rate_hz), request.output_path)
    return RenderResult(
        request.output_path, frame_count / FPS, frame_count, 0.01, notes=(f"pid {os.getpid()}",)
    )


def _wait_for_a_second_worker(folder: Path) -> None:
    """Proves two jobs run at the same time: each announces its process and waits for another one."""
    folder.mkdir(exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + RENDEZVOUS_TIMEOUT_S
    while len(list(folder.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("no second worker ran concurrently")
        time.sleep(0.02)


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A manifest folder with a photo and a 0.5 s recording, referenced by relative paths."""
    folder = tmp_path / "jobs"
    (folder / "media").mkdir(parents=True)
    (folder / "media" / "face.jpg").write_bytes(b"\xff\xd8 not decoded by the fake")
    soundfile.write(str(folder / "media" / "hello.wav"), np.zeros(8000, np.float32), 16000)
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_csv_manifest_renders_every_row_with_default_and_explicit_outputs(inputs, tmp_path):
    manifest = inputs / "jobs.csv"
    manifest.write_text(
        "photo,text,audio,emotion,lang,size,output\n"
        "media/face.jpg,Hello there.,,happy,en,256,\n"
        'media/face.jpg,"Hi, again [sad] bye.",,,,,custom/second.mp4\n'
        "media/face.jpg,,media/hello.wav,Surprised,,,\n",
        encoding="utf-8",
    )
    out_dir = tmp_path / "videos"
    report = run_batch(manifest, out_dir=out_dir, jobs=1, render_fn=fake_render, show_progress=False)

    assert report.failed == [] and report.workers == 1
    assert [o.line for o in report.succeeded] == [2, 3, 4]
    assert [o.output_path for o in report.succeeded] == [
        out_dir / "1.mp4",
        inputs / "custom" / "second.mp4",
        out_dir / "3.mp4",
    ]
    for outcome in report.succeeded:
        (video,) = probe_media(outcome.output_path).of_kind("video")
        assert video.frame_count == outcome.frame_count > 0
    assert report.succeeded[2].frame_count == 13  # 0.5 s of audio at 25 fps, rounded up

    saved = json.loads((out_dir / "batch_report.json").read_text())
    assert saved["failed"] == [] and [job["line"] for job in saved["succeeded"]] == [2, 3, 4]
    assert report.report_path == out_dir / "batch_report.json"


def test_requests_carry_every_column(inputs, tmp_path):
    manifest = write_jsonl(
        inputs / "jobs.jsonl",
        [
            {
                "photo": "media/face.jpg",
                "text": "你好。",
                "voice": "media/hello.wav",
                "lang": "ZH",
                "face": 1,
            },
            {"photo_path": str(inputs / "media" / "face.jpg"), "audio_path": "media/hello.wav", "size": 512},
        ],
    )
    first, second = read_manifest(manifest, tmp_path / "out")
    assert first == BatchJob(
        1,
        RenderRequest(
            photo_path=inputs.resolve() / "media" / "face.jpg",
            output_path=tmp_path / "out" / "1.mp4",
            text="你好。",
            voice_sample_path=inputs.resolve() / "media" / "hello.wav",
            language="zh",
            face_index=1,
        ),
    )
    assert second.request.audio_path == inputs.resolve() / "media" / "hello.wav"
    assert second.request.size_px == 512 and second.request.text is None


def test_every_bad_row_is_reported_at_once_before_anything_runs(inputs, tmp_path):
    manifest = write_jsonl(
        inputs / "bad.jsonl",
        [
            {"photo": "media/face.jpg", "text": "fine", "output": "a.mp4"},
            {"photo": "media/missing.jpg", "text": "photo missing"},
            {"photo": "media/face.jpg"},
            {"photo": "media/face.jpg", "text": "both", "audio": "media/hello.wav"},
            {"photo": "media/face.jpg", "text": "hi", "emotion": "bored"},
            {"photo": "media/face.jpg", "text": "same output", "output": "a.mp4"},
            {"photo": "media/face.jpg", "text": "[excited] tag"},
            {"photo": "media/face.jpg", "text": "hi", "size": "big", "emtion": "sad"},
        ],
    )
    (inputs / "bad.jsonl").write_text(manifest.read_text() + "{not json\n")
    out_dir = tmp_path / "videos"
    with pytest.raises(InputError) as caught:
        run_batch(manifest, out_dir=out_dir, render_fn=fake_render, show_progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("bad.jsonl has 9 problems: ")
    for expected in [
        "line 2: photo not found:",
        "line 3: give either text or audio",
        "line 4: give text or audio, not both",
        "line 5: unknown emotion 'bored'",
        "line 6: output ",
        "is also written by line 1",
        "line 7: text: unknown tag [excited]",
        "line 8: unknown column(s) emtion",
        "line 8: size must be a whole number, got 'big'",
        "line 9: invalid JSON",
    ]:
        assert expected in message
    assert not out_dir.exists(), "nothing may start when the manifest has problems"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("jobs.txt", "photo,text\n", "unknown manifest type '.txt'"),
        ("jobs.csv", "photo,text\n", "manifest has no jobs"),
        ("missing.csv", None, "manifest not found"),
    ],
)
def test_unusable_manifests(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        run_batch(tmp_path / name, out_dir=tmp_path / "out", render_fn=fake_render, show_progress=False)


def test_failing_jobs_do_not_stop_the_others_in_parallel(inputs, tmp_path):
    rows = [
        {"photo": "media/face.jpg", "text": text} for text in ("one", "FAIL here", "three", "CRASH", "five")
    ]
    out_dir = tmp_path / "videos"
    report = run_batch(
        write_jsonl(inputs / "jobs.jsonl", rows),
        out_dir=out_dir,
        jobs=2,
        render_fn=fake_render,
        show_progress=False,
    )
    assert report.workers == 2
    assert [o.line for o in report.succeeded] == [1, 3, 5]
    assert [(o.line, o.message) for o in report.failed] == [
        (2, "the fake engine refuses this text"),
        (4, "internal error ZeroDivisionError: fake bug"),
    ]
    assert "Traceback" in report.failed[1].detail
    assert str(report.failed[0]) == f"line 2 -> {out_dir / '2.mp4'}: the fake engine refuses this text"
    assert sorted(p.name for p in out_dir.iterdir()) == ["1.mp4", "3.mp4", "5.mp4", "batch_report.json"]
    saved = json.loads((out_dir / "batch_report.json").read_text())
    assert [job["line"] for job in saved["failed"]] == [2, 4]
    assert saved["failed"][0]["message"] == "the fake engine refuses this text"


def test_two_workers_render_at_the_same_time(inputs, tmp_path):
    rows = [{"photo": "media/face.jpg", "text": f"RENDEZVOUS {k}"} for k in range(4)]
    report = run_batch(
        write_jsonl(inputs / "jobs.jsonl", rows),
        out_dir=tmp_path / "videos",
        jobs=2,
        render_fn=fake_render,
        show_progress=False,
    )
    assert report.failed == [], [str(f) for f in report.failed]
    worker_pids = {o.notes[0] for o in report.succeeded}
    assert len(worker_pids) == 2 and f"pid {os.getpid()}" not in worker_pids
    for outcome in report.succeeded:
        assert probe_media(outcome.output_path).of_kind("video")[0].frame_count == outcome.frame_count


def test_job_runner_turns_errors_into_outcomes(tmp_path):
    runner = JobRunner(fake_render)
    request = RenderRequest(photo_path=Path("p.jpg"), output_path=tmp_path / "x.mp4", text="FAIL")
    outcome = runner.run(BatchJob(7, request))
    assert (outcome.ok, outcome.line, outcome.message) == (False, 7, "the fake engine refuses this text")
    runner.close()


def test_bad_jobs_argument(inputs, tmp_path):
    manifest = write_jsonl(inputs / "jobs.jsonl", [{"photo": "media/face.jpg", "text": "hi"}])
    with pytest.raises(InputError, match="--jobs must be at least 1"):
        run_batch(manifest, out_dir=tmp_path, jobs=0, render_fn=fake_render)
