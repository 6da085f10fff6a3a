"""The job queue of `avatar api`: the store, a backend, and one dispatcher thread between them.

Why a thread and not the web server's event loop: a backend's calls (process pool submits, Ray
calls, SQLite writes) block, and the HTTP handlers must stay quick. The thread is owned: `close()`
stops and joins it, so no work runs unseen after shutdown. The dispatcher starts queued jobs (oldest
first) while the backend has room, records outcomes, passes cancel requests on, copies progress
the backend reports, and posts webhooks from a one-thread pool so a slow receiver delays no job.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from avatar.jobs.spec import JobSpec
from avatar.jobs.store import JobRecord, JobStore

log = logging.getLogger("avatar.jobs")
MAX_ATTEMPTS = 3  # a job whose worker died is run again, up to this many times in all
WEBHOOK_TIMEOUT_S = 5.0


class JobService:
    """Submit, look up and cancel render jobs; outputs go to `outputs_dir/<id>.mp4`."""

    def __init__(
        self, store: JobStore, backend, outputs_dir: Path, *, poll_s: float = 0.1, owns_backend: bool = True
    ) -> None:
        self.store = store
        self.backend = backend
        self.owns_backend = owns_backend  # close() closes it (False: a backend shared with others)
        self.outputs_dir = Path(outputs_dir)
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        self.poll_s = poll_s
        self._inflight: dict[str, Future] = {}
        self._cancel_sent: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._webhooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhooks")

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> JobService:
        recovered = self.store.recover()
        if recovered:
            log.info("queued again after a restart: %s", ", ".join(recovered))
        self._thread = threading.Thread(target=self._dispatch_loop, name="job-dispatcher", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.owns_backend:
            self.backend.close()
        self._webhooks.shutdown(wait=True)
        self.store.close()

    # -- the API's calls ---------------------------------------------------------------------------

    def output_path(self, job_id: str) -> Path:
        return self.outputs_dir / f"{job_id}.mp4"

    def submit(
        self,
        spec: JobSpec,
        owner: str,
        *,
        idempotency_key: str | None = None,
        webhook: str | None = None,
        upload_dir: Path | None = None,
    ) -> tuple[JobRecord, bool]:
        """(record, created); the spec's output path is replaced by this service's own."""
        spec = replace(spec, request=replace(spec.request, output_path=self.output_path(spec.job_id)))
        record, created = self.store.add(
            spec.job_id,
            owner,
            spec.to_json(),
            idempotency_key=idempotency_key,
            webhook=webhook,
            upload_dir=str(upload_dir) if upload_dir else None,
        )
        self._wake.set()
        return record, created

    def cancel(self, job_id: str) -> JobRecord | None:
        record = self.store.request_cancel(job_id)
        if record is not None and record.status == "canceled":
            self._cleanup(record)
        self._wake.set()
        return record

    def describe(self) -> dict:
        return {**self.backend.describe(), "jobs": self.store.by_status()}

    # -- the dispatcher thread ---------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._dispatch_once()
            except Exception:  # a bug must not stop the queue for everyone: logged, loop goes on
                log.exception("job dispatcher step failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _dispatch_once(self) -> None:
        for job_id, future in list(self._inflight.items()):
            if future.done():
                del self._inflight[job_id]
                self._cancel_sent.discard(job_id)
                self._finished(job_id, future)
        room = self.backend.capacity - len(self._inflight)
        if room > 0:
            for record in self.store.queued(room):
                if self.store.start(record.id):
                    future = self.backend.submit(JobSpec.from_json(record.spec))
                    future.add_done_callback(lambda _: self._wake.set())  # record the outcome at once
                    self._inflight[record.id] = future
        for job_id, (fraction, worker) in self.backend.poll_progress().items():
            if job_id in self._inflight:
                self.store.set_progress(job_id, fraction, worker)
        for job_id in list(self._inflight):
            if job_id not in self._cancel_sent and self.store.cancel_requested(job_id):
                self._cancel_sent.add(job_id)
                self.backend.request_cancel(job_id)

    def _finished(self, job_id: str, future: Future) -> None:
        error = future.exception()
        if error is None:
            result = future.result()
            failed = result["status"] != "succeeded"
            record = self.store.finish(
                job_id,
                result["status"],
                error=(result["message"] or result["status"]) if failed else None,
                result={
                    k: result[k] for k in ("worker", "attempt", "duration_s", "frame_count", "render_time_s")
                },
            )
        else:
            record = self._worker_died(job_id, future, error)
            if record is None:
                return
        self._cleanup(record)
        if record.webhook:
            self._webhooks.submit(_post_webhook, record.webhook, record.public())

    def _worker_died(self, job_id: str, future: Future, error: BaseException) -> JobRecord | None:
        """Queue the job again (None) unless it has used its attempts; then fail it with a reason."""
        log.warning("job %s: worker failed: %s", job_id, error)
        self.backend.worker_failed(future, error)
        record = self.store.get(job_id)
        if record.cancel_requested:
            return self.store.finish(job_id, "canceled", error="canceled")
        if record.attempts < MAX_ATTEMPTS:
            self.store.requeue(job_id)
            return None
        message = self.backend.failure_message(error, record.attempts)
        return self.store.finish(job_id, "failed", error=message)

    def _cleanup(self, record: JobRecord) -> None:
        """Uploads are the job's own: removed once it ends (library avatars are never uploads)."""
        if record.status in ("succeeded", "failed", "canceled") and record.upload_dir:
            shutil.rmtree(record.upload_dir, ignore_errors=True)


def _post_webhook(url: str, body: dict) -> None:
    """One POST of the final state; a receiver that fails is logged, never retried forever."""
    data = json.dumps({"event": "video." + body["status"], "video": body}).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            response.read(1024)
    except OSError as error:
        log.warning("webhook %s failed: %s", url, error)
