"""`avatar batch --ray`: a manifest's jobs on the Ray backend, with the report `avatar batch` writes.

The manifest is read and checked by the batch runner's own `read_manifest` (every problem at
once, before any job starts); each row becomes a JobSpec rendered by the Ray backend's actors, at
most one job per actor at a time so the load spreads over the nodes. The report is
`batch_report.json` as for local batches, plus where each job ran (`worker`, `node_id`) and how
many attempts it took. Outputs must be on a folder every node sees (`--out-dir` on shared storage).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import asdict
from pathlib import Path

from avatar.core.storage import write_text_atomically
from avatar.engines.choice import EngineChoice
from avatar.jobs.spec import JobSpec
from avatar.render.batch import REPORT_NAME, BatchReport, JobOutcome, read_manifest

MAX_ATTEMPTS = 3


def run_batch_on_ray(
    manifest_path: Path | str,
    out_dir: Path | str,
    address: str | None = "auto",
    choice: EngineChoice | None = None,
    backend=None,
) -> BatchReport:
    """Render every row on the cluster; returns the report (also written to out_dir)."""
    from avatar.jobs.spec import require_ray

    require_ray()
    from avatar.jobs.ray_backend import RayBackend

    started = time.perf_counter()
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    jobs = read_manifest(manifest_path, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.request.output_path.parent.mkdir(parents=True, exist_ok=True)
    owned = backend is None
    backend = backend or RayBackend(address)
    specs = {
        f"line-{job.line}": (job.line, JobSpec(f"line-{job.line}", job.request, choice or EngineChoice()))
        for job in jobs
    }
    pending = list(specs)
    attempts: dict[str, int] = {}
    running: dict = {}
    results: dict[str, dict] = {}
    described = backend.describe()
    try:
        while pending or running:
            while pending and len(running) < backend.capacity:
                job_id = pending.pop(0)
                attempts[job_id] = attempts.get(job_id, 0) + 1
                running[backend.submit(specs[job_id][1])] = job_id
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                job_id = running.pop(future)
                error = future.exception()
                if error is None:
                    results[job_id] = future.result()
                elif attempts[job_id] < MAX_ATTEMPTS and "RayActorError" in {
                    c.__name__ for c in type(error).__mro__
                }:
                    pending.append(job_id)  # the actor died more often than Ray retries: once more
                else:
                    message = backend.failure_message(error, attempts[job_id])
                    results[job_id] = {
                        "status": "failed",
                        "message": message,
                        "worker": "",
                        "attempt": attempts[job_id],
                    }
    finally:
        if owned:
            backend.close()
    return _report(manifest_path, out_dir, specs, results, described, time.perf_counter() - started)


def _report(manifest_path, out_dir, specs, results, described: dict, wall_time_s) -> BatchReport:
    succeeded, failed, entries = [], [], []
    for job_id, (line, spec) in sorted(specs.items(), key=lambda item: item[1][0]):
        result = results[job_id]
        ok = result["status"] == "succeeded"
        outcome = JobOutcome(
            line,
            spec.request.output_path,
            ok=ok,
            message="" if ok else result.get("message", result["status"]),
            duration_s=result.get("duration_s", 0.0),
            frame_count=result.get("frame_count", 0),
            render_time_s=result.get("render_time_s", 0.0),
            notes=(f"worker {result.get('worker', '')}", f"attempt {result.get('attempt', 1)}"),
            detail=result.get("detail", ""),
        )
        (succeeded if ok else failed).append(outcome)
        entry = {**asdict(outcome), "output_path": str(outcome.output_path), "notes": list(outcome.notes)}
        entries.append(
            {
                **entry,
                "worker": result.get("worker", ""),
                "node_id": result.get("node_id", ""),
                "attempt": result.get("attempt", 1),
            }
        )
    report = BatchReport(succeeded, failed, wall_time_s, out_dir / REPORT_NAME, workers=described["workers"])
    payload = {
        "manifest": str(manifest_path),
        "backend": described,
        "workers": described["workers"],
        "wall_time_s": round(wall_time_s, 3),
        "succeeded": [e for e in entries if e["ok"]],
        "failed": [e for e in entries if not e["ok"]],
    }
    write_text_atomically(report.report_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return report
