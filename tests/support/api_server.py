"""A real `avatar api` process on loopback for contract tests, stopped (with its worker
processes) however the test ends.

It runs in a session of its own, so the whole process group (the server and the local backend's
spawned workers) is signalled by the group id it was given, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


def start_api(port: int, data_dir: Path, *args: str, log_path: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "avatar", "api", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(data_dir), *args]
    log = open(log_path or data_dir.parent / f"api-{port}.log", "ab")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "AVATAR_LOOPBACK_ONLY": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("AVATAR_API_KEY", None)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    process.log_file = log
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"avatar api exited with {process.returncode}: {tail(log.name)}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_api(process)
    raise TimeoutError(f"avatar api did not answer within {START_TIMEOUT_S:.0f} s: {tail(log.name)}")


def stop_api(process: subprocess.Popen, hard: bool = False) -> None:
    """SIGTERM (or SIGKILL) to the server's own process group; SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL if hard else signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):  # spawned workers outliving a killed server
        os.killpg(process.pid, signal.SIGKILL)
    process.log_file.close()


@contextlib.contextmanager
def running_api(port: int, data_dir: Path, *args: str) -> Iterator[str]:
    process = start_api(port, data_dir, *args)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_api(process)


def tail(path: str, chars: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""
