"""What the distribution layer costs: the same render jobs on the `local` backend (a process pool)
and on the `ray` backend (a local Ray cluster), through the same JobService, same cores.

    python bench/api_cluster.py --jobs 20 --size 256 --json docs/measurements/api_cluster.json

For each backend: warm-up (every worker renders one job, so engines are loaded; the cold start is
reported), then throughput (all jobs submitted at once: jobs per minute), then per-job overhead
(jobs one at a time: end-to-end time seen by the store minus the render time measured inside the
worker, i.e. queueing, dispatch, result transport and bookkeeping). The Ray cluster has two nodes
on 127.0.0.1 with one CPU each; the local pool has two worker processes: the same two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHOTO = ROOT / "assets" / "sample_portrait.jpg"
TEXT = "Thank you for your order. It ships tomorrow morning."


def _spec(job_id: str, out_dir: Path, size: int):
    from avatar.jobs.spec import JobSpec
    from avatar.render.request import RenderRequest

    return JobSpec(job_id, RenderRequest(PHOTO, out_dir / f"{job_id}.mp4", text=TEXT, size_px=size))


def _wait_all(service, ids: list[str], timeout_s: float = 1800.0) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = [service.store.get(i) for i in ids]
        if all(r.status in ("succeeded", "failed", "canceled") for r in records):
            failed = [r for r in records if r.status != "succeeded"]
            if failed:
                raise RuntimeError(f"{len(failed)} jobs failed: {failed[0].error}")
            return records
        time.sleep(0.05)
    raise TimeoutError("jobs did not finish")


def measure(service, workers: int, jobs: int, sequential: int, size: int, tag: str) -> dict:
    out = service.outputs_dir
    started = time.perf_counter()
    warm = [service.submit(_spec(f"{tag}-warm{i}", out, size), "bench")[0].id for i in range(workers)]
    _wait_all(service, warm)
    cold_s = time.perf_counter() - started

    started = time.perf_counter()
    ids = [service.submit(_spec(f"{tag}-tp{i}", out, size), "bench")[0].id for i in range(jobs)]
    records = _wait_all(service, ids)
    wall_s = time.perf_counter() - started
    render_s = [r.result["render_time_s"] for r in records]
    placement = {}
    for record in records:
        placement[record.worker.split(":")[0]] = placement.get(record.worker.split(":")[0], 0) + 1

    overheads_ms = []
    for index in range(sequential):
        (record,) = _wait_all(service, [service.submit(_spec(f"{tag}-seq{index}", out, size), "bench")[0].id])
        overheads_ms.append(1000 * (record.updated_s - record.created_s - record.result["render_time_s"]))
    overheads_ms.sort()
    return {
        "workers": workers,
        "cold_start_s": round(cold_s, 2),
        "jobs": jobs,
        "throughput_wall_s": round(wall_s, 2),
        "jobs_per_minute": round(60 * jobs / wall_s, 1),
        "render_time_s_median": round(statistics.median(render_s), 3),
        "jobs_per_host_or_node": placement,
        "overhead_ms_n": len(overheads_ms),
        "overhead_ms_median": round(statistics.median(overheads_ms), 1),
        "overhead_ms_p95": round(overheads_ms[min(len(overheads_ms) - 1, int(0.95 * len(overheads_ms)))], 1),
        "overhead_ms_max": round(overheads_ms[-1], 1),
    }


def run_local(jobs: int, sequential: int, size: int, workers: int) -> dict:
    from avatar.jobs.local import LocalBackend
    from avatar.jobs.service import JobService
    from avatar.jobs.store import JobStore

    with tempfile.TemporaryDirectory(prefix="bench-local-") as folder:
        store = Path(folder) / "jobs.sqlite"
        service = JobService(JobStore(store), LocalBackend(store, workers), Path(folder) / "out").start()
        try:
            return {
                "backend": "local",
                "nodes": 1,
                **measure(service, workers, jobs, sequential, size, "local"),
            }
        finally:
            service.close()


def run_ray(jobs: int, sequential: int, size: int, nodes: int) -> dict:
    from avatar.jobs.ray_backend import RayBackend
    from avatar.jobs.service import JobService
    from avatar.jobs.store import JobStore
    from tests.support.ray_cluster import local_cluster

    with (
        tempfile.TemporaryDirectory(prefix="bench-ray-") as folder,
        local_cluster(nodes, base_port=18360) as cluster,
    ):
        backend = RayBackend(cluster.loopback_address)
        service = JobService(JobStore(Path(folder) / "jobs.sqlite"), backend, Path(folder) / "out").start()
        try:
            return {
                "backend": "ray",
                "nodes": nodes,
                **measure(service, backend.capacity, jobs, sequential, size, "ray"),
            }
        finally:
            service.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--sequential", type=int, default=8, help="jobs run one at a time for the overhead")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", choices=("local", "ray"))
    args = parser.parse_args()
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
    }
    results = []
    if args.only in (None, "local"):
        results.append(run_local(args.jobs, args.sequential, args.size, workers=2))
        print(json.dumps(results[-1]), flush=True)
    if args.only in (None, "ray"):
        results.append(run_ray(args.jobs, args.sequential, args.size, nodes=2))
        print(json.dumps(results[-1]), flush=True)
    machine["load_after"] = os.getloadavg()
    payload = {"machine": machine, "size_px": args.size, "text": TEXT, "results": results}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps(machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
