"""The `local` backend: a pool of worker processes on this machine (the default of `avatar api`).

Each worker process keeps a `StagedRunner` (engines loaded once) for all the jobs it is given,
like `avatar batch`'s workers. Workers report progress and read cancel requests through the job
store (SQLite handles several processes), so no extra channel is needed. A worker that dies
breaks the pool; the service then asks for a fresh pool (`reset`) and queues the job again.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from avatar.jobs.spec import JobSpec

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
PROGRESS_EVERY_S = 0.3  # at most this often a worker writes progress to the store


class LocalBackend:
    """Jobs in `workers` spawned processes of this machine."""

    name = "local"

    def __init__(self, store_path: Path, workers: int | None = None) -> None:
        self.store_path = Path(store_path)
        self.capacity = max(1, workers or os.cpu_count() or 1)
        self._generation = 0
        self._executor = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.capacity)
        return ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(str(self.store_path), threads),
        )

    def submit(self, spec: JobSpec) -> Future:
        """A future of the job's JobResult as a dict."""
        future = self._executor.submit(_run_in_worker, spec.to_json())
        future.pool_generation = self._generation
        return future

    def request_cancel(self, job_id: str) -> None:
        """Nothing to send: workers read the store's cancel flag at every progress step."""

    def poll_progress(self) -> dict[str, tuple[float, str]]:
        return {}  # workers write their progress to the store themselves

    def worker_failed(self, future: Future, error: BaseException) -> None:
        """A fresh pool after a worker died (a broken pool refuses new work), once per broken pool:
        every job that was in it fails at the same moment."""
        if (
            isinstance(error, BrokenProcessPool)
            and getattr(future, "pool_generation", -1) == self._generation
        ):
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._generation += 1
            self._executor = self._new_pool()

    @staticmethod
    def failure_message(error: BaseException, attempts: int) -> str:
        if isinstance(error, BrokenProcessPool):
            return f"the worker process died {attempts} times (out of memory? try fewer --workers)"
        return f"internal error {type(error).__name__}: {error}"

    def describe(self) -> dict:
        return {"backend": self.name, "workers": self.capacity, "nodes": 1}

    def close(self) -> None:
        """Stop now, not after the running renders: their jobs are still `running` in the store,
        so the next start queues them again. The pool has no public way to stop a busy worker,
        hence its process table (processes this backend started)."""
        processes = list(getattr(self._executor, "_processes", {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(10)


# The one piece of per-process state, and only in worker processes (see avatar.render.batch: the
# pool pickles each task afresh, so the loaded engines reach later tasks only through this slot).
_worker: dict = {}


def _init_worker(store_path: str, threads: int) -> None:
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    import cv2

    cv2.setNumThreads(threads)
    from avatar.jobs.runner import StagedRunner
    from avatar.jobs.store import JobStore

    runner = StagedRunner()
    _worker.update(runner=runner, store=JobStore(store_path))
    multiprocessing.util.Finalize(runner, runner.close, exitpriority=10)


def _run_in_worker(spec_json: str) -> dict:
    runner, store = _worker["runner"], _worker["store"]
    spec = JobSpec.from_json(spec_json)
    last_write_s = [0.0]

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - last_write_s[0] >= PROGRESS_EVERY_S:
            last_write_s[0] = now
            store.set_progress(spec.job_id, fraction, runner.worker)

    store.set_progress(spec.job_id, 0.0, runner.worker)
    return runner.run_job(spec, progress, lambda: store.cancel_requested(spec.job_id)).to_dict()
