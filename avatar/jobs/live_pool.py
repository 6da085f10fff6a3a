"""Live conversations spread over workers: each worker is an `avatar serve` server (LiveServer)
holding up to K sessions; the pool places a new session on the least-loaded worker with room.

A worker is either a Ray actor on some node (avatar.jobs.ray_live) or, without Ray, a LiveServer
in this process (`LocalLiveWorker`). Either way the pool talks to it the same way: it asks for its
load (the ids of its sessions), and forwards the browser's offer, already checked at the API's
edge, to the worker's own `POST /offer` with the worker's private token. The answer carries the
worker's ICE candidates, so media then flows between the browser and that worker directly; the
API only signals.

The pool's monitor (a task the API owns) asks every worker for its load once a second. A worker
that does not answer because it died is dropped: each of its sessions ends with the event
`{"type": "session_ended", "reason": "worker_died", ...}` on the session's event stream, and new
sessions go to the workers left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("avatar.live_pool")
LOAD_TIMEOUT_S = 5.0
OFFER_TIMEOUT_S = 30.0
MONITOR_EVERY_S = 1.0


class PlacementError(Exception):
    """No session could be opened; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class WorkerGone(Exception):
    """The worker process is gone (a Ray actor that died, a server that stopped)."""


@dataclass
class SessionRecord:
    session_id: str
    worker_id: str
    owner: str = "anonymous"  # the API key's owner name that opened it
    status: str = "active"  # active | ended
    reason: str | None = None
    created_s: float = field(default_factory=time.time)
    events: list[dict] = field(default_factory=list)

    def public(self) -> dict:
        return {"id": self.session_id, "status": self.status, "worker": self.worker_id, "reason": self.reason}


class LocalLiveWorker:
    """A LiveServer on this process's event loop, on its own port (`avatar api` without --ray)."""

    def __init__(
        self, worker_id: str, config, max_sessions: int, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.worker_id, self.config, self.max_sessions = worker_id, config, max_sessions
        self.host, self.port = host, port
        self.token = None
        self.url = ""
        self._runner = None
        self._server = None

    async def start(self) -> LocalLiveWorker:
        import secrets

        from aiohttp import web

        from avatar.engines.live_set import LiveEngines
        from avatar.live.server import LiveServer

        engines = await asyncio.to_thread(lambda: LiveEngines(self.config).load())
        self.token = secrets.token_urlsafe(24)
        self._server = LiveServer(engines, token=self.token, max_sessions=self.max_sessions)
        self._runner = web.AppRunner(self._server.app())
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def load(self) -> dict:
        if self._server is None:
            raise WorkerGone(self.worker_id)
        return {"sessions": list(self._server.sessions), "max_sessions": self.max_sessions, "node": "local"}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            self._server.engines.close()
            self._server = None


class LivePool:
    """Placement of live sessions on workers, and their bookkeeping."""

    def __init__(self, workers: list) -> None:
        self.workers = {worker.worker_id: worker for worker in workers}
        self.sessions: dict[str, SessionRecord] = {}

    async def loads(self) -> dict[str, dict]:
        """worker id -> its load; workers that are gone are dropped (and their sessions ended)."""
        ids = list(self.workers)
        answers = await asyncio.gather(
            *(asyncio.wait_for(self.workers[i].load(), LOAD_TIMEOUT_S) for i in ids), return_exceptions=True
        )
        loads = {}
        for worker_id, answer in zip(ids, answers, strict=True):
            if isinstance(answer, BaseException):
                if is_gone(answer):
                    self._worker_died(worker_id, answer)
                else:
                    log.warning("live worker %s did not report its load: %r", worker_id, answer)
                continue
            loads[worker_id] = answer
            self._note_closed(worker_id, set(answer["sessions"]))
        return loads

    async def place(self, sdp: str, owner: str = "anonymous") -> dict:
        """Open a session on the least-loaded worker with room; its answer and where it runs."""
        if not self.workers:
            raise PlacementError(
                503, "no_live_workers", "no live worker is running: start `avatar api` with --live-workers N"
            )
        loads = await self.loads()
        ranked = sorted(
            (len(load["sessions"]), worker_id)
            for worker_id, load in loads.items()
            if len(load["sessions"]) < load["max_sessions"]
        )
        if not ranked:
            raise PlacementError(
                503, "workers_full", f"every live worker is full ({len(loads)} workers); try again later"
            )
        last_error = None
        for _, worker_id in ranked:
            try:
                answer = await self._offer(self.workers[worker_id], sdp)
            except PlacementError as error:
                if error.status != 503:
                    raise
                last_error = error  # filled up meanwhile: the next one
                continue
            record = SessionRecord(f"{worker_id}.{answer['session_id']}", worker_id, owner)
            record.events.append({"type": "session_placed", "worker": worker_id})
            self.sessions[record.session_id] = record
            return {
                "sdp": answer["sdp"],
                "type": answer["type"],
                "session_id": record.session_id,
                "worker": worker_id,
            }
        raise last_error or PlacementError(503, "workers_full", "every live worker is full; try again later")

    async def _offer(self, worker, sdp: str) -> dict:
        import httpx

        headers = {"Authorization": f"Bearer {worker.token}"}
        try:
            async with httpx.AsyncClient(timeout=OFFER_TIMEOUT_S) as http:
                response = await http.post(
                    f"{worker.url}/offer", json={"sdp": sdp, "type": "offer"}, headers=headers
                )
        except httpx.HTTPError as error:
            raise PlacementError(
                503, "worker_unreachable", f"live worker {worker.worker_id} did not answer: {error}"
            ) from None
        body = (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )
        if response.status_code != 200:
            message = str(body.get("error") or response.text)[:300]
            code = "invalid_offer" if response.status_code == 400 else "workers_full"
            raise PlacementError(
                response.status_code if response.status_code in (400, 503) else 502, code, message
            )
        return body

    def _note_closed(self, worker_id: str, live_ids: set[str]) -> None:
        for record in self.sessions.values():
            gone = record.session_id.split(".", 1)[1] not in live_ids
            if record.worker_id == worker_id and record.status == "active" and gone:
                self._end(record, "closed", "the connection closed")

    def _worker_died(self, worker_id: str, error: BaseException) -> None:
        log.warning("live worker %s died: %s", worker_id, error)
        self.workers.pop(worker_id, None)
        for record in self.sessions.values():
            if record.worker_id == worker_id and record.status == "active":
                self._end(record, "worker_died", f"the live worker {worker_id} died; start a new session")

    def _end(self, record: SessionRecord, reason: str, message: str) -> None:
        record.status, record.reason = "ended", reason
        record.events.append({"type": "session_ended", "reason": reason, "message": message})

    async def monitor(self) -> None:
        """Forever: notice dead workers and closed sessions. Run as a task its owner cancels."""
        while True:
            await self.loads()
            await asyncio.sleep(MONITOR_EVERY_S)

    async def stop(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.workers.values()), return_exceptions=True)


def is_gone(error: BaseException) -> bool:
    """A worker that died (Ray's actor errors, matched by name so Ray need not be imported)."""
    if isinstance(error, WorkerGone):
        return True
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"RayActorError", "ActorDiedError", "ActorUnavailableError"})
