"""The live tab's `avatar serve` child process: one at a time, on 127.0.0.1, always stopped.

Why a subprocess and not the server in-process: the live server runs its own asyncio loop and
WebRTC stack and loads its engines for one avatar; a child process keeps that apart from Gradio's
loop and threads, and stopping it frees everything it loaded. The console starts one for the
chosen avatar, stops it before starting another, and stops it when the console exits (the
console's `close()`, plus an atexit hook as a backstop).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import AvatarError, InputError
from avatar.core.system_tools import free_port, stop_process

log = logging.getLogger(__name__)

LIVE_HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LiveStatus:
    running: bool
    avatar: str | None  # slug of the avatar being served
    url: str | None
    pid: int | None
    message: str  # one line for the page


def serve_command(
    avatar: str, port: int, library: Path | None = None, python: str = sys.executable
) -> list[str]:
    """`avatar serve` for a library avatar, bound to loopback only.

    No --llm: serve resolves the reply engine itself (`avatar.engines.replies.resolve_llm`): a chat
    model when $AVATAR_LLM_BASE_URL is set, else a GGUF model in the models folder (run in process),
    else the offline answerer with the avatar's knowledge file, else with the built-in notes about
    the avatar. Never the benchmark stub. Chat models answer from the avatar's knowledge file too.
    """
    args = [python, "-m", "avatar", "serve", "--avatar", avatar, "--host", LIVE_HOST, "--port", str(port)]
    if library is not None:
        args += ["--library", str(library)]
    return args


def _last_error_line(log_path: Path) -> str:
    """The child's `error: ...` line (the CLI prints every AvatarError that way), or its last line."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else ""


class LiveServerProcess:
    """Starts, watches and stops the one live server child; every method is thread-safe."""

    def __init__(
        self,
        log_dir: Path,
        env: dict[str, str] | None = None,
        command: Callable[[str, int], Sequence[str]] = serve_command,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.env = env or {}
        self.command = command
        self.start_timeout_s = start_timeout_s
        self._lock = threading.RLock()
        self._process: subprocess.Popen | None = None
        self._avatar: str | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self._reply_engine: str | None = None  # what the child's /health says answers
        atexit.register(self.stop)

    @property
    def url(self) -> str | None:
        return f"http://{LIVE_HOST}:{self._port}/" if self._port else None

    def start(self, avatar: str, on_wait: Callable[[float], None] | None = None) -> LiveStatus:
        """Stop any running server, start one for `avatar`, and wait until its /health answers.

        `on_wait(elapsed_s)` is called while waiting (the page's progress bar). Raises AvatarError
        with the child's own one-line error when it exits early or does not answer in time.
        """
        if not avatar:
            raise InputError("choose an avatar first", "create one in the Create avatar tab")
        with self._lock:
            self.stop()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            port = free_port()
            self._log_path = self.log_dir / f"live-{avatar}-{port}.log"
            args = list(self.command(avatar, port))
            log.info("starting the live server: %s", " ".join(args))
            with self._log_path.open("wb") as sink:
                self._process = subprocess.Popen(
                    args,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **self.env},
                )
            self._avatar, self._port = avatar, port
            try:
                self._wait_healthy(on_wait)
            except BaseException:
                self.stop()
                raise
            return self.status()

    def _wait_healthy(self, on_wait: Callable[[float], None] | None) -> None:
        assert self._process is not None and self._log_path is not None
        started = time.monotonic()
        health = f"http://{LIVE_HOST}:{self._port}/health"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            elapsed = time.monotonic() - started
            code = self._process.poll()
            if code is not None:
                reason = _last_error_line(self._log_path) or f"exit code {code}"
                raise AvatarError(
                    f"the live server stopped while starting: {reason}", f"log: {self._log_path}"
                )
            try:
                with opener.open(health, timeout=2.0) as response:
                    self._reply_engine = json.loads(response.read()).get("reply_engine")
                    return
            except (OSError, ValueError):
                pass
            if elapsed > self.start_timeout_s:
                raise AvatarError(
                    f"the live server did not answer within {self.start_timeout_s:.0f} s",
                    f"log: {self._log_path}",
                )
            if on_wait is not None:
                on_wait(elapsed)
            time.sleep(0.25)

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 10 s) and wait for it; idempotent."""
        with self._lock:
            process, self._process = self._process, None
            self._avatar, self._port, self._reply_engine = None, None, None
            if process is None or process.poll() is not None:
                return
            log.info("stopping the live server (pid %d)", process.pid)
            stop_process(process, grace_s=STOP_TIMEOUT_S)

    def close(self) -> None:
        self.stop()
        atexit.unregister(self.stop)

    def status(self) -> LiveStatus:
        with self._lock:
            process = self._process
            if process is None:
                return LiveStatus(False, None, None, None, "stopped")
            code = process.poll()
            if code is not None:
                reason = _last_error_line(self._log_path) if self._log_path else ""
                avatar = self._avatar
                self._process, self._avatar, self._port = None, None, None
                return LiveStatus(
                    False, avatar, None, None, f"stopped (exit code {code}{': ' + reason if reason else ''})"
                )
            replies = f"; replies: {self._reply_engine}" if self._reply_engine else ""
            return LiveStatus(
                True,
                self._avatar,
                self.url,
                process.pid,
                f"serving {self._avatar} at {self.url} (pid {process.pid}){replies}",
            )
