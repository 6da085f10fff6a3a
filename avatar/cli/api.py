"""`avatar api`: the HTTP service (avatar.api) for videos, avatars and live sessions.

Jobs run on the `local` backend (worker processes of this machine) unless `--ray auto|ADDRESS`
puts them on a Ray cluster; `--live-workers N` starts live conversation workers (in this process,
or as Ray actors with --ray) that `POST /v1/sessions` places sessions on. Any bind other than
loopback needs an API key (`--api-key` or $AVATAR_API_KEY, several separated by commas).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from avatar.core.errors import InputError

API_EXAMPLES = """examples:
  avatar api                                   # http://127.0.0.1:8000/docs, jobs on every core
  AVATAR_API_KEY=secret avatar api --host 0.0.0.0 --max-queued-jobs 50
  avatar api --ray auto --shared-dir /mnt/shared/avatar   # jobs on the Ray cluster of this node
  avatar api --live-workers 2 --sessions-per-worker 4 --avatar Mona
  curl -F photo=@me.jpg -F text="Hello!" http://127.0.0.1:8000/v1/videos
"""


def add_api_parser(sub) -> None:
    from avatar.cli.live import add_on_air_options

    api = sub.add_parser(
        "api",
        help="HTTP API for videos, avatars and live sessions (OpenAPI at /docs)",
        description=__doc__.split("\n\n")[0],
        epilog=API_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_on_air_options(api, default_port=8000, listening=True)  # --host/--port, and the live workers' avatar
    add_service_options(api)
    api.set_defaults(run=cmd_api)


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """Keys, limits, storage and the backend: shared by `avatar api` and `avatar serve --ray`."""
    group = parser.add_argument_group("service")
    group.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this key (repeatable; or $AVATAR_API_KEY)",
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        help="jobs database, uploads, outputs (default ~/.local/share/talking-avatar/api)",
    )
    group.add_argument("--workers", type=int, help="local backend: worker processes (default: every core)")
    group.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run jobs and live workers on a Ray cluster: auto, or the head's host:port",
    )
    group.add_argument(
        "--shared-dir", type=Path, help="with --ray: where outputs go, a folder every node sees"
    )
    group.add_argument(
        "--max-queued-jobs", type=int, default=20, help="per key, queued + running (default 20)"
    )
    group.add_argument("--max-upload-mb", type=float, default=50.0, help="per request (default 50)")
    group.add_argument(
        "--live-workers", type=int, default=0, help="live conversation workers (default 0: none)"
    )
    group.add_argument(
        "--sessions-per-worker", type=int, default=4, help="sessions each live worker holds (default 4)"
    )
    group.add_argument(
        "--live-host", default="127.0.0.1", help="address live workers listen on (default 127.0.0.1)"
    )
    group.add_argument(
        "--live-port", type=int, default=0, help="first live worker port (default: any free port)"
    )


def api_settings(args: argparse.Namespace, *, live_workers: int | None = None):
    from avatar.api.app import ApiSettings
    from avatar.engines.choice import EngineChoice
    from avatar.playout.http_edge import require_secret_for_bind

    keys = [*args.api_key, *(k.strip() for k in os.environ.get("AVATAR_API_KEY", "").split(","))]
    if getattr(args, "token", None):
        keys.append(args.token)
    keys = tuple(dict.fromkeys(k for k in keys if k))
    require_secret_for_bind(args.host, ",".join(keys), option="--api-key KEY", env="AVATAR_API_KEY")
    if args.max_queued_jobs < 1 or args.max_upload_mb <= 0:
        raise InputError("--max-queued-jobs must be at least 1 and --max-upload-mb above 0")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    count = args.live_workers if live_workers is None else live_workers
    if count < 0 or args.sessions_per_worker < 1:
        raise InputError("--live-workers must be 0 or more and --sessions-per-worker at least 1")
    EngineChoice(tts=args.tts, device=args.device).validate()
    if args.ray:
        from avatar.jobs.spec import require_ray

        require_ray()
    data_dir = args.data_dir or _default_data_dir()
    live = None
    if count:
        from avatar.cli.live import live_config

        live = live_config(args)
    return ApiSettings(
        data_dir=data_dir.expanduser(),
        api_keys=keys,
        max_queued_jobs=args.max_queued_jobs,
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        library_root=args.library,
        workers=args.workers,
        ray_address=args.ray,
        outputs_dir=args.shared_dir,
        device=args.device,
        default_tts=args.tts,
        live_workers=count,
        sessions_per_worker=args.sessions_per_worker,
        live_config=live,
        live_host=args.live_host,
        live_ports=tuple(args.live_port + i for i in range(count)) if args.live_port else (),
    )


def _default_data_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "talking-avatar" / "api"


def cmd_api(args: argparse.Namespace) -> int:
    from avatar.api.app import create_app

    settings = api_settings(args)
    return serve_app(create_app(settings), args, settings)


def serve_on_ray(args: argparse.Namespace) -> int:
    """`avatar serve --ray`: the live page here, every session on a live worker of the cluster."""
    from avatar.api.app import ApiSettings, create_app
    from avatar.cli.live import live_config
    from avatar.jobs.spec import require_ray

    require_ray()
    token = args.token or os.environ.get("AVATAR_TOKEN") or None
    keys = (token,) if token else ()
    # cmd_serve has checked the bind already (a non-loopback --host needs the token)
    if args.live_workers < 1 or args.max_sessions < 1:
        raise InputError("--live-workers and --max-sessions must be at least 1")
    settings = ApiSettings(
        data_dir=_default_data_dir() / "serve",
        api_keys=keys,
        ray_address=args.ray,
        live_workers=args.live_workers,
        sessions_per_worker=args.max_sessions,
        live_config=live_config(args),
        live_host="0.0.0.0" if args.host not in ("127.0.0.1", "localhost") else "127.0.0.1",
        jobs=False,
        serve_page=True,
    )
    return serve_app(create_app(settings), args, settings)


def serve_app(app, args: argparse.Namespace, settings) -> int:
    import logging
    import sys

    import uvicorn

    from avatar.live.ice import install_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    install_from_env()
    backend = f"Ray at {settings.ray_address}" if settings.ray_address else "local worker processes"
    print(
        f"avatar api: http://{args.host}:{args.port}/docs (jobs on {backend}, data in {settings.data_dir})",
        file=sys.stderr,
    )
    from avatar.api.edge import BoundedBody

    bounded = BoundedBody(app)  # outermost: a stalled body is a 408 (avatar.api.edge)
    uvicorn.run(bounded, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
