"""A throwaway RTMP server on 127.0.0.1 (Debian nginx + its RTMP module) for tests, benchmarks and
trying `avatar live` without a streaming account.

Why nginx as a child process with its own config: the system nginx (if any) is left alone, nothing
listens beyond loopback, and every file it writes (pid, logs) lives in a temp folder removed on
stop. `daemon off; master_process off;` keeps it one process we own, so stopping it is one
SIGTERM (nginx's fast shutdown drops the connections, which is what a real server outage looks
like to a publisher). `restart` keeps the port, so a publisher can reconnect to the same URL.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from avatar.core.errors import EngineUnavailable
from avatar.core.system_tools import free_port, stop_process

RTMP_MODULE_PATH = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
INSTALL_HINT = (
    "install it with `sudo apt-get install nginx-light libnginx-mod-rtmp` (scripts/install_rtmp_server.sh)"
)
SBIN_DIRS = "/usr/sbin:/sbin:/usr/local/sbin"  # not on PATH for normal users on Debian
START_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
LOOPBACK = "127.0.0.1"

CONFIG_TEMPLATE = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen {host}:{port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path=SBIN_DIRS)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx does: TIME_WAIT is fine
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


class LocalRtmpServer:
    """nginx-rtmp on 127.0.0.1:`port` (a free one when 0); publish and play at `url(key)`."""

    def __init__(self, port: int = 0, module_path: Path | str = RTMP_MODULE_PATH) -> None:
        self.port = port
        self.module_path = Path(module_path)
        self._process: subprocess.Popen | None = None
        self._folder: Path | None = None

    @staticmethod
    def available(module_path: Path | str = RTMP_MODULE_PATH) -> bool:
        """True when nginx and its RTMP module are installed (tests skip otherwise)."""
        return find_nginx() is not None and Path(module_path).is_file()

    def url(self, stream_key: str = "test") -> str:
        return f"rtmp://{LOOPBACK}:{self.port}/live/{stream_key}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start nginx and return once the port accepts TCP connections."""
        if self.running:
            return
        nginx = find_nginx()
        if nginx is None:
            raise EngineUnavailable("nginx is not installed", INSTALL_HINT)
        if not self.module_path.is_file():
            raise EngineUnavailable(f"the nginx RTMP module is missing ({self.module_path})", INSTALL_HINT)
        if not self.port:
            self.port = free_port()
        elif not _port_is_free(self.port):  # else the readiness check would see the other listener
            raise EngineUnavailable(
                f"port {self.port} on {LOOPBACK} is in use", "stop what listens there or use port 0"
            )
        self._folder = Path(tempfile.mkdtemp(prefix="avatar-rtmp-"))
        config = self._folder / "nginx.conf"
        config.write_text(
            CONFIG_TEMPLATE.format(
                module=self.module_path, folder=self._folder, host=LOOPBACK, port=self.port
            )
        )
        # errors from before the config is read (a module that fails to load) go to stderr
        with open(self._folder / "stderr.log", "wb") as stderr_file:
            self._process = subprocess.Popen(
                [nginx, "-p", f"{self._folder}/", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts_tcp(self.port) or self._process.poll() is not None:
            if self._process.poll() is not None or time.monotonic() > deadline:
                log_tail = self._log_tail()
                self.stop()
                raise EngineUnavailable(
                    f"the local RTMP server did not start on {LOOPBACK}:{self.port}",
                    log_tail or "see nginx's error log",
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop nginx (connections drop at once) and remove its temp folder; the port is kept."""
        if self._process is not None:
            stop_process(self._process, grace_s=STOP_GRACE_S)
            self._process = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def restart(self, down_s: float = 0.0) -> None:
        """Simulate an outage: stop, stay down `down_s`, start again on the same port."""
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        self.start()

    def _log_tail(self, lines: int = 3) -> str:
        if self._folder is None:
            return ""
        logged = []
        for name in ("stderr.log", "error.log"):
            path = self._folder / name
            if path.is_file():
                logged.extend(path.read_text(errors="replace").strip().splitlines())
        return " | ".join(logged[-lines:])

    def __enter__(self) -> LocalRtmpServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
