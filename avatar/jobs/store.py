"""Every job's state in one SQLite file, so a restart of `avatar api` loses no queued work.

Why SQLite: it is in the standard library, survives a crash (WAL journal), and lets the local
backend's worker processes report progress and read a cancel request without a channel of their
own. Each call opens a short transaction on a connection of its own thread; writers wait up to
`BUSY_TIMEOUT_S` for each other.

States: queued -> running -> succeeded | failed | canceled, and queued -> canceled. A job found
`running` when the store is opened again was cut off by the restart and is queued again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "canceled")
BUSY_TIMEOUT_S = 15.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    spec TEXT NOT NULL,
    webhook TEXT,
    upload_dir TEXT,
    created_s REAL NOT NULL,
    updated_s REAL NOT NULL,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (owner, idempotency_key);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_s);
"""


@dataclass(frozen=True)
class JobRecord:
    """One row, as the API shows it (`public()`) and the service uses it."""

    id: str
    owner: str
    idempotency_key: str | None
    status: str
    progress: float
    error: str | None
    spec: str
    webhook: str | None
    upload_dir: str | None
    created_s: float
    updated_s: float
    worker: str | None
    attempts: int
    cancel_requested: bool
    result: dict | None

    def public(self) -> dict:
        body = {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "error": self.error,
        }
        body["created_at"] = _iso(self.created_s)
        body["updated_at"] = _iso(self.updated_s)
        if self.worker:
            body["worker"] = self.worker
        if self.result:
            body["result"] = self.result
        return body


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class JobStore:
    """The jobs table. Safe to use from several threads and processes at once."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)  # its own transaction (executescript commits first)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- writing -----------------------------------------------------------------------------------

    def add(
        self,
        job_id: str,
        owner: str,
        spec_json: str,
        *,
        idempotency_key: str | None = None,
        webhook: str | None = None,
        upload_dir: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """(record, created). With an idempotency key already used by this owner, the existing job
        comes back and nothing is added (created=False)."""
        now = time.time()
        with self._transaction() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner, idempotency_key)
                ).fetchone()
                if row is not None:
                    return _record(row), False
            db.execute(
                "INSERT INTO jobs (id, owner, idempotency_key, status, spec, webhook, upload_dir, created_s, "
                "updated_s) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, owner, idempotency_key, spec_json, webhook, upload_dir, now, now),
            )
        return self.get(job_id), True

    def start(self, job_id: str) -> bool:
        """queued -> running; False when it is no longer queued (canceled meanwhile)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_s = ? "
                "WHERE id = ? AND status = 'queued'",
                (time.time(), job_id),
            )
            return cursor.rowcount == 1

    def set_progress(self, job_id: str, progress: float, worker: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET progress = MAX(progress, ?), worker = COALESCE(?, worker), updated_s = ? "
                "WHERE id = ? AND status = 'running'",
                (min(max(progress, 0.0), 1.0), worker, time.time(), job_id),
            )

    def finish(
        self, job_id: str, status: str, *, error: str | None = None, result: dict | None = None
    ) -> JobRecord:
        """running (or queued, for a cancel) -> a terminal state; a terminal job stays as it is."""
        if status not in TERMINAL:
            raise ValueError(f"not a terminal status: {status}")
        worker = (result or {}).get("worker")
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = ?, error = ?, result = ?, worker = COALESCE(?, worker), "
                "progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END, updated_s = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (status, error, json.dumps(result) if result else None, worker, status, time.time(), job_id),
            )
        return self.get(job_id)

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """A queued job is canceled at once; a running one is flagged for its worker to stop."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))
            db.execute(
                "UPDATE jobs SET status = 'canceled', cancel_requested = 1, error = 'canceled', updated_s = ? "
                "WHERE id = ? AND status = 'queued'",
                (time.time(), job_id),
            )
        return self.find(job_id)

    def requeue(self, job_id: str) -> None:
        """running -> queued: its worker died and the job may run again."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'queued', progress = 0, updated_s = ? WHERE id = ? AND status = 'running'",
                (time.time(), job_id),
            )

    def recover(self) -> list[str]:
        """After a restart: jobs left `running` were cut off; queue them again (ids returned)."""
        with self._transaction() as db:
            ids = [row["id"] for row in db.execute("SELECT id FROM jobs WHERE status = 'running'")]
            db.execute(
                "UPDATE jobs SET status = 'queued', progress = 0, updated_s = ? WHERE status = 'running'",
                (time.time(),),
            )
        return ids

    # -- reading -----------------------------------------------------------------------------------

    def find(self, job_id: str) -> JobRecord | None:
        row = self._connection().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None else None

    def get(self, job_id: str) -> JobRecord:
        record = self.find(job_id)
        if record is None:
            raise KeyError(job_id)
        return record

    def find_by_key(self, owner: str, idempotency_key: str) -> JobRecord | None:
        row = (
            self._connection()
            .execute("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner, idempotency_key))
            .fetchone()
        )
        return _record(row) if row is not None else None

    def cancel_requested(self, job_id: str) -> bool:
        row = (
            self._connection().execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )
        return bool(row and row[0])

    def queued(self, limit: int) -> list[JobRecord]:
        """The oldest queued jobs first (first come, first served)."""
        rows = self._connection().execute(
            "SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_s, id LIMIT ?", (limit,)
        )
        return [_record(row) for row in rows]

    def count_active(self, owner: str) -> int:
        row = (
            self._connection()
            .execute(
                "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')", (owner,)
            )
            .fetchone()
        )
        return int(row[0])

    def by_status(self) -> dict[str, int]:
        rows = self._connection().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        return {status: count for status, count in rows}


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        owner=row["owner"],
        idempotency_key=row["idempotency_key"],
        status=row["status"],
        progress=float(row["progress"]),
        error=row["error"],
        spec=row["spec"],
        webhook=row["webhook"],
        upload_dir=row["upload_dir"],
        created_s=float(row["created_s"]),
        updated_s=float(row["updated_s"]),
        worker=row["worker"],
        attempts=int(row["attempts"]),
        cancel_requested=bool(row["cancel_requested"]),
        result=json.loads(row["result"]) if row["result"] else None,
    )
