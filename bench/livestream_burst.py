"""Livestream memory and clock under a comment burst with a reader that never reads.

`avatar live` runs with no output configured (the case where the stream clock once ran ahead of
the wall clock), an event-stream client connects and never reads a byte (4 KB receive buffer),
and 300 comments from 300 viewers arrive at once. For `--minutes` the resident memory of the
process is sampled every `SAMPLE_EVERY_S` and /api/status gives the stream time, which is
compared with this script's own wall clock (stream time minus wall time since the first sample:
constant = the stream keeps real time).

    .venv/bin/python -m bench.livestream_burst --minutes 10 --port 18150 \\
        --report docs/measurements/livestream_burst.json
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from avatar.core.system_tools import stop_process
from bench.live_latency import wait_for_health
from bench.livestream_soak import anon_rss_mb, fit_slope_per_hour, post_json, rss_mb
from bench.machine_info import describe_machine

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_EVERY_S = 5.0
WARM_UP_S = 120.0
BURST = 300
QUESTIONS = (
    "What are your opening hours?",
    "Where is your shop?",
    "What is your return policy?",
    "Do you ship abroad?",
    "Are you open on public holidays?",
)


def never_reading_client(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock  # never read


def status(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/api/status", timeout=5) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=18150)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args(argv)
    command = ["nice", "-n", "10", sys.executable, "-m", "avatar", "live"]
    command += ["--photo", str(ROOT / "assets/sample_portrait.jpg"), "--size", str(args.size)]
    command += ["--script", str(ROOT / "assets/scripts/shop_show.md")]
    command += ["--knowledge", str(ROOT / "assets/knowledge/shop_faq.md"), "--port", str(args.port)]
    command += ["--comment-interval-s", "0", "--comments-per-minute", "1000"]
    base = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory(prefix="burst-") as tmp:
        log_path = Path(tmp) / "avatar-live.log"
        with log_path.open("w") as log:
            child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            slow = None
            try:
                wait_for_health(base, child)
                slow = never_reading_client(args.port)
                result = burst_and_watch(args, base, child)
            except BaseException:
                print(log_path.read_text()[-4000:], file=sys.stderr)
                raise
            finally:
                if slow is not None:
                    slow.close()
                stop_process(child, grace_s=15)
    result["machine"] = describe_machine()
    text = json.dumps(result, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0


def burst_and_watch(args, base: str, child: subprocess.Popen) -> dict:
    start_s = time.monotonic()
    answers: dict[int, int] = {}
    for k in range(BURST):
        code = post_json(f"{base}/api/comments", {"user": f"viewer{k}", "text": f"{QUESTIONS[k % 5]} ({k})"})
        answers[code] = answers.get(code, 0) + 1
    burst_s = time.monotonic() - start_s
    samples = []
    first_stream_s = first_wall_s = None
    while time.monotonic() - start_s < args.minutes * 60:
        if child.poll() is not None:
            raise RuntimeError(f"avatar live exited with {child.returncode}")
        now = time.monotonic()
        current = status(base)
        stream_s = current["clock"]["stream_time_s"]
        if first_stream_s is None:
            first_stream_s, first_wall_s = stream_s, now
        samples.append(
            {
                "t_s": round(now - start_s, 1),
                "rss_mb": round(rss_mb(child.pid), 1),
                "anon_rss_mb": round(anon_rss_mb(child.pid), 1),
                "stream_minus_wall_s": round((stream_s - first_stream_s) - (now - first_wall_s), 3),
                "status_ahead_s": current["clock"]["ahead_s"],
                "state": current["state"],
                "comments_waiting": current["queue"]["comments"],
                "event_streams": current.get("event_streams"),
                "frames": current["frames"],
            }
        )
        time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - now)))
    steady = [s for s in samples if s["t_s"] >= WARM_UP_S]
    offsets = [s["stream_minus_wall_s"] for s in samples]
    return {
        "minutes": args.minutes,
        "size_px": args.size,
        "burst": {"comments": BURST, "seconds": round(burst_s, 2), "answers_by_http_status": answers},
        "rss_mb": {
            "after_burst": samples[0]["rss_mb"],
            "at_warm_up_end": steady[0]["rss_mb"] if steady else None,
            "last": samples[-1]["rss_mb"],
            "after_warm_up_min_max": [min(s["rss_mb"] for s in steady), max(s["rss_mb"] for s in steady)]
            if steady
            else None,
            "after_warm_up_slope_mb_per_hour": round(
                fit_slope_per_hour([s["t_s"] for s in steady], [s["rss_mb"] for s in steady]), 1
            ),
        },
        "stream_minus_wall_s": {"min": min(offsets), "max": max(offsets), "last": offsets[-1]},
        "event_streams_last": samples[-1]["event_streams"],
        "samples": samples,
    }


if __name__ == "__main__":
    sys.exit(main())
