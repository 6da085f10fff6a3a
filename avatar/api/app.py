"""The FastAPI application of `avatar api`: settings, the lifespan that owns the job service and
the live workers, and the routers.

The lifespan owns everything long-lived: the JobService (its dispatcher thread and its backend's
processes or Ray actors), the live workers and the pool's monitor task. All are stopped when the
server stops, so nothing keeps running unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

API_VERSION = "1"


@dataclass(frozen=True)
class ApiSettings:
    """Everything `avatar api` is started with (the CLI builds it from flags and environment)."""

    data_dir: Path
    api_keys: tuple[str, ...] = ()
    max_queued_jobs: int = 20  # per key: queued + running
    max_upload_bytes: int = 50_000_000  # per request, all files together
    library_root: Path | None = None
    workers: int | None = None  # local backend: worker processes (default: every core)
    ray_address: str | None = None  # "auto" or host:port: the Ray backend
    outputs_dir: Path | None = None  # default data_dir/outputs; with Ray a folder every node sees
    device: str = "cpu"
    default_tts: str = "embedded"
    default_lipsync: str = "procedural"
    live_workers: int = 0
    sessions_per_worker: int = 4
    live_config: object | None = None  # avatar.engines.live_set.LiveConfig of the live workers
    live_host: str = "127.0.0.1"  # where live workers listen (their address must reach the browser)
    live_ports: tuple[int, ...] = field(default_factory=tuple)  # one per worker; empty: any free port
    jobs: bool = True  # False for `avatar serve --ray`: live sessions only, no render queue
    serve_page: bool = False  # `avatar serve --ray`: the live page at / and its `POST /offer`

    @property
    def outputs(self) -> Path:
        return self.outputs_dir or self.data_dir / "outputs"


@dataclass
class ApiState:
    settings: ApiSettings
    service: object  # avatar.jobs.service.JobService
    live_pool: object | None  # avatar.jobs.live_pool.LivePool


def build_service(settings: ApiSettings):
    """The job service on the backend the settings ask for (Ray when an address is given)."""
    from avatar.jobs.service import JobService
    from avatar.jobs.store import JobStore

    store_path = settings.data_dir / "jobs.sqlite"
    if settings.ray_address:
        from avatar.jobs.spec import require_ray

        require_ray()
        from avatar.jobs.ray_backend import RayBackend

        backend = RayBackend(settings.ray_address)
    else:
        from avatar.jobs.local import LocalBackend

        backend = LocalBackend(store_path, settings.workers)
    return JobService(JobStore(store_path), backend, settings.outputs)


async def start_live_pool(settings: ApiSettings):
    """The live workers (Ray actors with --ray, else servers in this process) in one pool."""
    from avatar.jobs.live_pool import LivePool, LocalLiveWorker

    if settings.live_workers <= 0 or settings.live_config is None:
        return None
    ports = list(settings.live_ports) or [0] * settings.live_workers
    if settings.ray_address:
        from avatar.jobs.spec import require_ray

        require_ray()
        from avatar.jobs.ray_live import start_ray_live_workers

        workers = await start_ray_live_workers(
            settings.live_config,
            settings.live_workers,
            settings.sessions_per_worker,
            settings.live_host,
            ports,
            settings.ray_address,
        )
    else:
        workers = [
            LocalLiveWorker(
                f"live{i}", settings.live_config, settings.sessions_per_worker, settings.live_host, ports[i]
            )
            for i in range(settings.live_workers)
        ]
        started = await asyncio.gather(*(worker.start() for worker in workers), return_exceptions=True)
        failures = [result for result in started if isinstance(result, BaseException)]
        if failures:  # stop the ones that did start, then say why
            await asyncio.gather(*(worker.stop() for worker in workers), return_exceptions=True)
            raise failures[0]
    return LivePool(workers)


def create_app(settings: ApiSettings, service=None):
    """The application; `service` replaces the one built from the settings (tests)."""
    from fastapi import FastAPI

    from avatar import __version__
    from avatar.api import avatars, sessions, videos
    from avatar.api.edge import install_edge

    @contextlib.asynccontextmanager
    async def lifespan(app):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        job_service = service or (build_service(settings) if settings.jobs else None)  # ray.init: main thread
        if job_service is not None:
            job_service.start()
        pool, monitor = None, None
        try:
            pool = await start_live_pool(settings)
            if pool is not None:
                monitor = asyncio.get_running_loop().create_task(pool.monitor(), name="live-pool-monitor")
            app.state.api = ApiState(settings, job_service, pool)
            yield
        finally:
            if monitor is not None:
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
            if pool is not None:
                await pool.stop()
            if job_service is not None:
                await asyncio.to_thread(job_service.close)

    app = FastAPI(
        title="Talking avatar API",
        version=__version__,
        summary="Talking-head videos from a photo and text or audio; live WebRTC conversations.",
        lifespan=lifespan,
    )
    install_edge(app, settings.api_keys, settings.max_upload_bytes)
    app.include_router(videos.router)
    app.include_router(avatars.router)
    app.include_router(sessions.router)

    @app.get("/health", tags=["service"], summary="Liveness (no key needed)")
    def health() -> dict:
        return {"ok": True, "api": API_VERSION}

    @app.get("/v1/service", tags=["service"], summary="The job backend and the queue")
    def describe() -> dict:
        state = app.state.api
        jobs = state.service.describe() if state.service is not None else {"backend": None}
        return {**jobs, "live_workers": len(state.live_pool.workers) if state.live_pool else 0}

    if settings.serve_page:
        _add_live_page(app)
    return app


def _add_live_page(app) -> None:
    """`avatar serve --ray`: the live page of `avatar serve`, whose `POST /offer` is placed on a
    worker exactly as `POST /v1/sessions` is."""
    from fastapi.responses import FileResponse

    from avatar.api.sessions import create_session
    from avatar.live.server import STATIC_DIR

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html")

    app.add_api_route("/offer", create_session, methods=["POST"], include_in_schema=False)
