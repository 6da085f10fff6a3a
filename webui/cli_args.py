"""`avatar webui`: the console's command-line options, kept beside the console it starts.

avatar/cli/__init__.py adds the subcommand with `add_webui_parser(sub)` and runs
`run_webui(args)`. Nothing heavy is imported until `run_webui` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PASSWORD_ENV = "AVATAR_WEBUI_PASSWORD"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_webui_parser(sub) -> argparse.ArgumentParser:
    """Register `avatar webui` on the CLI's subparsers object."""
    webui = sub.add_parser(
        "webui",
        help="web console: create avatars, manage the library, render, talk live (Gradio, local only)",
        description=(
            "Start the web console on this machine. It makes no request beyond this computer "
            "(no analytics, no web fonts, no share link)."
        ),
    )
    webui.add_argument(
        "--library", type=Path, help="avatar library folder (default: env AVATAR_LIBRARY, else the cache)"
    )
    webui.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    webui.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; anything else needs --password)",
    )
    webui.add_argument(
        "--password",
        help=f"require this password to open the console (default: env {PASSWORD_ENV}; the variable "
        "keeps it out of the process list)",
    )
    return webui


def _check_port_free(host: str, port: int) -> None:
    """Fail in one line before loading anything (Gradio's own message is long and names its API)."""
    import socket

    from avatar.core.errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InputError(
                f"cannot listen on {host}:{port} ({error.strerror or error})", "pick another port with --port"
            ) from error


def run_webui(args: argparse.Namespace) -> int:
    """Serve until Ctrl+C. Raises AvatarError (printed as one line by the CLI) for bad options."""
    from avatar.core.errors import AvatarError, InputError

    password = args.password or os.environ.get(PASSWORD_ENV) or None
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port} is not a port number", "use 1-65535, e.g. 7860")
    if args.host not in LOOPBACK and not password:
        raise InputError(
            f"--host {args.host} would let other machines open the console without a password",
            f"add --password (or set {PASSWORD_ENV}), or keep the default 127.0.0.1",
        )
    if args.library is not None and args.library.exists() and not args.library.is_dir():
        raise InputError(f"--library {args.library} is not a folder")
    _check_port_free(args.host, args.port)
    from webui.app import set_offline_environment

    set_offline_environment()  # before anything imports gradio
    from avatar.core.optional import module_available

    if not module_available("gradio"):  # not imported here: GRADIO_TEMP_DIR is set first, in launch()
        raise AvatarError("the web console needs the webui extra", "pip install -e '.[webui]'")
    from webui.app import launch

    print(f"web console: http://{args.host}:{args.port}/ (Ctrl+C to stop)", file=sys.stderr)
    launch(library_root=args.library, host=args.host, port=args.port, password=password)
    return 0
