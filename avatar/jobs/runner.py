"""One job in one worker: render with the engines kept loaded, report progress, stop on request,
and make the output appear whole or not at all.

The batch runner's `JobRunner` (avatar.render.batch) already renders one job after another with
engines loaded once and turns every failure into a one-line outcome; `StagedRunner` adds what a
service needs on top: an engine set per engine choice, a progress callback that maps render
stages to 0..1 and checks for a cancel request, and staging. Each attempt renders into its own
folder `<output dir>/.partial/<job id>/attempt-N/`; only a finished file is renamed (atomically,
same file system) to the final path, and the job's staging folder is removed. A worker killed in
the middle leaves its attempt folder behind; the retry counts and removes it, so a retried job
still ends with exactly one complete output and no partial file next to it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from avatar.core.errors import AvatarError
from avatar.core.storage import fsync_dir
from avatar.engines.choice import EngineChoice
from avatar.jobs.spec import JobSpec
from avatar.render.batch import BatchJob, JobRunner
from avatar.render.request import RenderRequest, RenderResult

PARTIAL_DIR = ".partial"
SPEECH_SHARE = 0.25  # of a text job's progress: synthesis; the rest is frames (+ encoding)
ProgressFn = Callable[[float], None]
StopFn = Callable[[], bool]


class JobCanceled(AvatarError):
    """Raised from the progress callback when the job's cancel was requested."""


@dataclass(frozen=True)
class JobResult:
    """How one job ended, as plain data (it crosses process and node boundaries)."""

    job_id: str
    status: str  # succeeded | failed | canceled
    message: str = ""
    output_path: str = ""
    duration_s: float = 0.0
    frame_count: int = 0
    render_time_s: float = 0.0
    attempt: int = 1
    worker: str = ""  # host:pid, or the Ray node id and pid
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StagedRunner(JobRunner):
    """JobRunner with an engine set per EngineChoice, progress, cancel and staged outputs."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self.worker = worker or worker_label()
        self._sets: dict[EngineChoice, object] = {}
        self._choice = EngineChoice()
        self._progress = None

    def _render(self, request: RenderRequest) -> RenderResult:
        from avatar.engines.engine_set import EngineSet
        from avatar.render.job import render_video

        engines = self._sets.get(self._choice)
        if engines is None:
            engines = self._sets[self._choice] = EngineSet(choice=self._choice)
        return render_video(request, engines, progress=self._progress)

    def run_job(
        self, spec: JobSpec, progress: ProgressFn | None = None, stop: StopFn | None = None
    ) -> JobResult:
        """Render `spec` into its staging folder, then rename the finished file into place."""
        final = Path(spec.request.output_path)
        job_root = final.parent / PARTIAL_DIR / spec.job_id
        attempt = 1 + (sum(1 for p in job_root.iterdir() if p.is_dir()) if job_root.is_dir() else 0)
        shutil.rmtree(job_root, ignore_errors=True)  # what a killed attempt left
        staging = job_root / f"attempt-{attempt}"
        staging.mkdir(parents=True)
        self._choice = spec.choice
        self._progress = _stage_progress(progress, stop, spec.request.text is not None)
        started = time.perf_counter()
        try:
            outcome = self.run(BatchJob(0, replace(spec.request, output_path=staging / final.name)))
            canceled = stop is not None and stop()
            if outcome.ok and not canceled:
                os.replace(outcome.output_path, final)
                fsync_dir(final.parent)
        finally:
            self._progress = None
            shutil.rmtree(job_root, ignore_errors=True)
            _remove_if_empty(job_root.parent)
        common = {"job_id": spec.job_id, "attempt": attempt, "worker": self.worker}
        if canceled:
            return JobResult(status="canceled", message="canceled", **common)
        if not outcome.ok:
            return JobResult(status="failed", message=outcome.message, detail=outcome.detail, **common)
        return JobResult(
            status="succeeded",
            output_path=str(final),
            duration_s=outcome.duration_s,
            frame_count=outcome.frame_count,
            render_time_s=time.perf_counter() - started,
            **common,
        )

    def close(self) -> None:
        for engines in self._sets.values():
            engines.close()
        self._sets.clear()
        super().close()


def _stage_progress(progress: ProgressFn | None, stop: StopFn | None, has_speech_stage: bool):
    """render_video's (stage, done, total) -> one 0..1 figure; raises JobCanceled when asked to stop."""
    if progress is None and stop is None:
        return None

    def on_stage(stage: str, done: int, total: int) -> None:
        if stop is not None and stop():
            raise JobCanceled("canceled")
        share = done / max(total, 1)
        if has_speech_stage:
            fraction = (
                SPEECH_SHARE * share if stage == "speech" else SPEECH_SHARE + (1 - SPEECH_SHARE) * share
            )
        else:
            fraction = share if stage == "video" else 0.0
        if progress is not None:
            progress(min(fraction, 0.99))  # 1.0 only once the file is in place

    return on_stage


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # other jobs' attempts are in it, or it is gone already
        folder.rmdir()
