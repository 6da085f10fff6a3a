"""System programs the toolkit drives (ffmpeg, ffprobe), found once with one clear error if missing."""

from __future__ import annotations

import shutil
import socket
import subprocess

from avatar.core.errors import EngineUnavailable


def require_tool(name: str) -> str:
    """Path of an ffmpeg-suite binary, or a one-line EngineUnavailable naming the fix."""
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailable(
            f"{name} is not installed", "install it with `sudo apt-get install ffmpeg` or run `make setup`"
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS says is free on `host` now (the kernel's pick; the tiny race with another
    program taking it before our server binds is acceptable for tests, benchmarks and local tools)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, wait up to `grace_s` for a clean exit (servers close their sessions), then SIGKILL
    and wait again; returns once the child is gone. Safe on a child that already exited."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)
