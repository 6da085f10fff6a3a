"""Run an `avatar` command with a memory probe beside it, for the livestream soak.

Resident memory that keeps rising can be three different things: Python objects that are never
freed (a leak), native allocations of an engine, or memory the C allocator keeps after it was
freed (fragmentation across threads). Every `--every-s` seconds this probe writes one JSON line
with the bytes Python has allocated (tracemalloc, which also counts numpy buffers) and the RSS
before and after asking glibc to return free memory to the system (`malloc_trim(0)`, only with
--trim). Flat traced memory with a falling post-trim RSS means no leak of ours.

    python -m bench.memory_probe_child --log probe.jsonl --every-s 30 [--trim] -- live --photo ...
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def probe(log_path: Path, every_s: float, trim: bool, stop: threading.Event) -> None:
    libc = ctypes.CDLL("libc.so.6") if trim else None
    started = time.monotonic()
    with log_path.open("a") as log:
        while not stop.wait(every_s):
            traced_bytes, peak_bytes = tracemalloc.get_traced_memory()
            record = {
                "t_s": round(time.monotonic() - started, 1),
                "traced_mb": round(traced_bytes / 2**20, 1),
                "traced_peak_mb": round(peak_bytes / 2**20, 1),
                "rss_mb": round(rss_mb(), 1),
            }
            if libc is not None:
                libc.malloc_trim(0)
                record["rss_after_trim_mb"] = round(rss_mb(), 1)
            log.write(json.dumps(record) + "\n")
            log.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--every-s", type=float, default=30.0)
    parser.add_argument("--trim", action="store_true", help="call malloc_trim(0) after each sample")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the avatar command line")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    tracemalloc.start(1)
    stop = threading.Event()
    thread = threading.Thread(target=probe, args=(args.log, args.every_s, args.trim, stop), daemon=True)
    thread.start()
    from avatar.cli import main as avatar_main

    try:
        return avatar_main(command)
    finally:
        stop.set()
        thread.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
