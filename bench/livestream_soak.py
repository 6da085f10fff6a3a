"""Livestream soak: an `avatar live` process pushes to a local nginx-rtmp for N minutes.

What it measures, at the receiver and on the sender:

* **A/V drift**: ffprobe reads the stream back from nginx packet by packet as it arrives; every
  10 s we note the newest audio and video timestamps. Their difference is the A/V offset the
  viewer's player sees; its change over time is drift. The video timestamp against the wall
  clock shows whether the stream keeps real time (a stream that runs slow falls behind chat).
* **CPU per stream**: user + system CPU seconds of the avatar process and of its ffmpeg encoder
  per wall second (1.0 = one core), from /proc.
* **memory**: resident set size of the avatar process every 10 s; a linear fit after the first
  minute gives MB per hour (flat memory means ~0).

Comments are posted every 20 s during the run (different viewers, different questions) so the
stream is not just the script. Results go to stdout as JSON and, with --report, to a file.

    .venv/bin/python -m bench.livestream_soak --minutes 10 --report docs/measurements/livestream_soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from avatar.core.system_tools import free_port, stop_process
from bench.live_latency import wait_for_health
from bench.machine_info import describe_machine
from tests.support.local_rtmp_server import LocalRtmpServer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_EVERY_S = 10.0
COMMENT_EVERY_S = 20.0
QUESTIONS = (
    "What are your opening hours?",
    "Where is your shop?",
    "What is your return policy?",
    "Do you ship abroad?",
    "Are you open on public holidays?",
)
CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def anon_rss_mb(pid: int) -> float:
    """Anonymous resident memory (heap, numpy buffers, thread stacks): RSS without mapped files."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    """File descriptors the process holds now (sockets, pipes, files): a leak shows as a rising count."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    """Child processes of every thread (ffmpeg is started from an output's own thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        path = task / "children"
        if path.exists():
            found += [int(p) for p in path.read_text().split()]
    return found


class PacketClock:
    """ffprobe reading the RTMP stream: the newest audio and video pts and when they arrived."""

    def __init__(self, url: str) -> None:
        command = ["ffprobe", "-v", "error", "-rw_timeout", "30000000", "-i", url]
        command += ["-show_entries", "packet=codec_type,pts_time", "-of", "csv=p=0"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.latest = {"audio": None, "video": None}
        self.first_arrival_s: float | None = None
        self.packets = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="packet-clock", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            parts = line.strip().split(",")
            if len(parts) < 2 or parts[1] in ("", "N/A"):
                continue
            with self._lock:
                if self.first_arrival_s is None:
                    self.first_arrival_s = time.monotonic()
                self.latest[parts[0]] = float(parts[1])
                self.packets += 1

    def sample(self) -> tuple[float | None, float | None, float | None]:
        with self._lock:
            return self.latest["audio"], self.latest["video"], self.first_arrival_s

    def close(self) -> None:
        stop_process(self.process, grace_s=2)
        self._thread.join(timeout=5)


def post_json(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def fit_slope_per_hour(times_s: list[float], values: list[float]) -> float:
    if len(times_s) < 3:
        return float("nan")
    return float(np.polyfit(np.array(times_s), np.array(values), 1)[0] * 3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--photo", type=Path, default=ROOT / "assets/sample_portrait.jpg")
    parser.add_argument("--script", type=Path, default=ROOT / "assets/scripts/shop_show.md")
    parser.add_argument("--knowledge", type=Path, default=ROOT / "assets/knowledge/shop_faq.md")
    parser.add_argument("--record", action="store_true", help="also record segmented MP4 (a second encoder)")
    parser.add_argument("--report", type=Path, help="write the JSON result here")
    parser.add_argument(
        "--memory-probe",
        choices=("traced", "trim"),
        help="run the avatar under bench/memory_probe_child.py: Python-traced memory every 30 s "
        "(traced), and RSS after malloc_trim(0) too (trim); slower, so CPU numbers are not comparable",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, LocalRtmpServer() as rtmp:
        url = rtmp.url("soak")
        port = free_port()
        probe_log = Path(tmp) / "memory_probe.jsonl"
        command = [sys.executable, "-m"]
        if args.memory_probe:
            command += ["bench.memory_probe_child", "--log", str(probe_log), "--every-s", "30"]
            command += ["--trim"] if args.memory_probe == "trim" else []
            command += ["--"]
        else:
            command += ["avatar"]
        command += ["live", "--photo", str(args.photo), "--size", str(args.size)]
        command += ["--script", str(args.script), "--knowledge", str(args.knowledge), "--rtmp", url]
        command += ["--port", str(port), "--comment-interval-s", "1"]
        if args.record:
            command += ["--record", str(Path(tmp) / "recordings"), "--segment-s", "60"]
        log_path = Path(tmp) / "avatar-live.log"
        with log_path.open("w") as log:
            child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            reader = None
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for_health(base, child)
                reader = PacketClock(url)
                result = soak(args, base, child, reader)
            except BaseException:
                print(log_path.read_text()[-4000:], file=sys.stderr)
                raise
            finally:
                if reader is not None:
                    reader.close()
                stop_process(child, grace_s=15)
            if args.memory_probe and probe_log.exists():
                result["memory_probe"] = [json.loads(line) for line in probe_log.read_text().splitlines()]
    result["machine"] = describe_machine()
    text = json.dumps(result, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0


def soak(args, base: str, child: subprocess.Popen, reader: PacketClock) -> dict:
    duration_s = args.minutes * 60
    start_s = time.monotonic()
    samples, comments_sent, comments_accepted = [], 0, 0
    next_sample_s, next_comment_s = start_s + SAMPLE_EVERY_S, start_s + 5.0
    cpu_before = {"avatar": cpu_seconds(child.pid), "ffmpeg": 0.0}
    while time.monotonic() - start_s < duration_s:
        if child.poll() is not None:
            raise RuntimeError(f"avatar live exited with {child.returncode}")
        now = time.monotonic()
        if now >= next_comment_s:
            question = QUESTIONS[comments_sent % len(QUESTIONS)]
            status = post_json(
                f"{base}/api/comments",
                {"user": f"viewer{comments_sent}", "text": f"{question} ({comments_sent})"},
            )
            comments_sent += 1
            comments_accepted += status == 202
            next_comment_s += COMMENT_EVERY_S
        if now >= next_sample_s:
            audio_pts, video_pts, first_arrival = reader.sample()
            encoders = children(child.pid)
            samples.append(
                {
                    "t_s": round(now - start_s, 2),
                    "audio_pts_s": audio_pts,
                    "video_pts_s": video_pts,
                    "receiver_elapsed_s": None if first_arrival is None else round(now - first_arrival, 3),
                    "avatar_cpu_s": cpu_seconds(child.pid) - cpu_before["avatar"],
                    "ffmpeg_cpu_s": sum(cpu_seconds(pid) for pid in encoders),
                    "avatar_rss_mb": round(rss_mb(child.pid), 1),
                    "avatar_anon_rss_mb": round(anon_rss_mb(child.pid), 1),
                    "ffmpeg_rss_mb": round(sum(rss_mb(pid) for pid in encoders), 1),
                    "avatar_fds": open_fds(child.pid),
                }
            )
            if args.report:  # a crash late in a long soak still leaves every sample taken so far
                with args.report.with_suffix(".samples.jsonl").open("a") as progress:
                    progress.write(json.dumps(samples[-1]) + "\n")
            next_sample_s += SAMPLE_EVERY_S
        time.sleep(0.2)
    with urllib.request.urlopen(f"{base}/api/status", timeout=5) as response:
        status = json.loads(response.read())
    return summarize(samples, status, comments_sent, comments_accepted, args)


def summarize(samples: list[dict], status: dict, comments_sent: int, accepted: int, args) -> dict:
    valid = [s for s in samples if s["audio_pts_s"] is not None and s["video_pts_s"] is not None]
    offsets_ms = [1000 * (s["audio_pts_s"] - s["video_pts_s"]) for s in valid]
    lag_ms = [1000 * (s["receiver_elapsed_s"] - s["video_pts_s"]) for s in valid]
    steady = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2]  # the second half of the run
    last = samples[-1]
    wall_s = last["t_s"]
    return {
        "minutes": args.minutes,
        "size_px": args.size,
        "record": args.record,
        "comments_sent": comments_sent,
        "comments_accepted": accepted,
        "final_status": {k: status[k] for k in ("frames", "outputs", "queue")},
        "av_offset_ms": {
            "first": round(offsets_ms[0], 1) if offsets_ms else None,
            "last": round(offsets_ms[-1], 1) if offsets_ms else None,
            "min": round(min(offsets_ms), 1) if offsets_ms else None,
            "max": round(max(offsets_ms), 1) if offsets_ms else None,
            "drift_ms_per_hour": round(fit_slope_per_hour([s["t_s"] for s in valid], offsets_ms), 2),
        },
        "receiver_lag_ms": {  # wall time since the first packet minus stream time: constant = real time
            "first": round(lag_ms[0], 1) if lag_ms else None,
            "last": round(lag_ms[-1], 1) if lag_ms else None,
            "drift_ms_per_hour": round(fit_slope_per_hour([s["t_s"] for s in valid], lag_ms), 1),
        },
        "cpu_cores": {
            "avatar_process": round(last["avatar_cpu_s"] / wall_s, 3),
            "ffmpeg_encoders": round(last["ffmpeg_cpu_s"] / wall_s, 3),
        },
        "memory_mb": {
            "avatar_first_minute": samples[min(5, len(samples) - 1)]["avatar_rss_mb"],
            "avatar_last": last["avatar_rss_mb"],
            "avatar_second_half_range": [
                min(s["avatar_rss_mb"] for s in steady),
                max(s["avatar_rss_mb"] for s in steady),
            ],
            "avatar_second_half_slope_mb_per_hour": round(
                fit_slope_per_hour([s["t_s"] for s in steady], [s["avatar_rss_mb"] for s in steady]), 1
            ),
            "ffmpeg_last": last["ffmpeg_rss_mb"],
        },
        "open_fds": {
            "first_minute": samples[min(5, len(samples) - 1)]["avatar_fds"],
            "last": last["avatar_fds"],
            "second_half_range": [min(s["avatar_fds"] for s in steady), max(s["avatar_fds"] for s in steady)],
        },
        "samples": samples,
    }


if __name__ == "__main__":
    sys.exit(main())
