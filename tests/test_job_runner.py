"""StagedRunner: outputs appear whole or not at all; a killed attempt's leftovers are counted and
removed by the retry; cancel stops at the next progress step and leaves nothing.

Rendering is replaced by a writer of a real tiny MP4 (through avatar.render.video_writer) that
reports progress per frame like render_video does, so no engine loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar.core.types import AudioChunk
from avatar.jobs.runner import StagedRunner
from avatar.jobs.spec import JobSpec
from avatar.render.request import RenderRequest, RenderResult
from tests.support.media_probe import probe_media

FRAMES = 25


class FakeFrameRunner(StagedRunner):
    def _render(self, request: RenderRequest) -> RenderResult:
        from avatar.render.video_writer import write_mp4

        def frames():
            for index in range(FRAMES):
                if self._progress is not None:
                    self._progress("video", index + 1, FRAMES)
                yield np.full((32, 32, 3), 10 * (index % 20), np.uint8)

        audio = AudioChunk(np.zeros(16000, np.float32), 16000)
        write_mp4(frames(), audio, Path(request.output_path))
        return RenderResult(Path(request.output_path), FRAMES / 25, FRAMES, 0.01)


def _spec(tmp_path: Path, job_id: str = "job1") -> JobSpec:
    return JobSpec(job_id, RenderRequest(Path("unused.jpg"), tmp_path / "out" / f"{job_id}.mp4", text="Hi."))


def test_a_retry_after_a_killed_attempt_leaves_exactly_one_complete_file(tmp_path):
    spec = _spec(tmp_path)
    leftover = tmp_path / "out" / ".partial" / "job1" / "attempt-1"
    leftover.mkdir(parents=True)
    (leftover / "job1.mp4").write_bytes(b"half a video")  # what a killed worker left
    seen = []
    result = FakeFrameRunner(worker="w:1").run_job(spec, seen.append)
    assert result.status == "succeeded" and result.attempt == 2, result
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["job1.mp4"]
    info = probe_media(tmp_path / "out" / "job1.mp4")
    assert info.of_kind("video")[0].frame_count == FRAMES
    assert seen == sorted(seen) and 0 < seen[-1] < 1.0  # 1.0 only once the file is in place


def test_cancel_stops_the_render_and_leaves_nothing(tmp_path):
    spec = _spec(tmp_path)
    seen: list[float] = []
    result = FakeFrameRunner().run_job(spec, seen.append, stop=lambda: len(seen) >= 5)
    assert result.status == "canceled" and len(seen) == 5
    assert list((tmp_path / "out").iterdir()) == []
