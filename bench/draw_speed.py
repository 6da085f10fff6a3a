"""Renderer speed alone (plan + warp + inner mouth), without TTS or encoding, on one fixed input.

    .venv/bin/python bench/draw_speed.py [--sizes 512 1024] [--runs 5]
    LIPSYNC_FROM=/tmp/old .venv/bin/python bench/draw_speed.py   # another copy of lipsync/

The input is the bundled portrait and 8 s of a synthetic syllable train (loudness-driven, so
every frame opens and closes the mouth) with an expression change halfway. It prints wall ms per
frame (median and p95 of the runs' means) and CPU ms per frame (process time, all threads: far
less sensitive to other processes on a shared machine), so a before/after comparison can run
interleaved under the same load; say the load (`uptime`) with the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("LIPSYNC_FROM"):
    sys.path.insert(0, os.environ["LIPSYNC_FROM"])


def syllables(seconds: float = 8.0, rate: int = 16000):
    from avatar.core.types import AudioChunk, Speech

    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 10))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2 * (t > 0.4) * (t < seconds - 0.4)
    return Speech(AudioChunk((0.3 * envelope * voice / np.abs(voice).max()).astype(np.float32), rate))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import lipsync
    from lipsync.avatar_assets import prepare_avatar
    from lipsync.face_landmarker import FaceLandmarker
    from lipsync.procedural_renderer import ProceduralRenderer

    speech = syllables()
    spans = [(0.0, 4.0, "neutral"), (4.0, 9.0, "happy")]
    print(f"lipsync from {Path(lipsync.__file__).parent}; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp, FaceLandmarker() as landmarker:
        for size in args.sizes:
            assets = prepare_avatar(
                ROOT / "assets" / "sample_portrait.jpg",
                size_px=size,
                cache_dir=Path(tmp),
                landmarker=landmarker,
            )
            started = time.perf_counter()
            renderer = ProceduralRenderer(assets, seed=0)
            setup_s = time.perf_counter() - started
            per_frame_ms, cpu_ms = [], []
            for _ in range(args.runs):
                started, cpu_started = time.perf_counter(), time.process_time()
                weights = renderer.plan(speech, spans)
                for row in weights:
                    renderer.draw(row)
                per_frame_ms.append(1000 * (time.perf_counter() - started) / len(weights))
                cpu_ms.append(1000 * (time.process_time() - cpu_started) / len(weights))
            p95 = sorted(per_frame_ms)[max(0, int(round(0.95 * len(per_frame_ms))) - 1)]
            print(
                f"size {size}: setup {setup_s:.2f} s, {len(weights)} frames x {args.runs} runs: "
                f"wall median {statistics.median(per_frame_ms):.2f} ms/frame, p95 {p95:.2f}, "
                f"min {min(per_frame_ms):.2f}; CPU median {statistics.median(cpu_ms):.2f} ms/frame"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
