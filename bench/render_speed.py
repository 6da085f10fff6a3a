"""Render speed: text -> MP4 real-time factor at 512x512 and 1024x1024 on this machine.

    .venv/bin/python bench/render_speed.py [--runs 3]

Real-time factor = seconds of video produced per second of wall time (higher is faster), for the
whole job: TTS, planning, warping, painting and H.264/AAC encoding. Engines are loaded once before
timing (as in `avatar batch` and the server); the cold first-job time is reported separately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = (
    "Good morning, and welcome to our store. Today I will show you three new products. "
    "[happy] The first one is a lamp that follows the sun. The second is a kettle that never boils over. "
    "[neutral] And the third one is a surprise, so stay with me until the end."
)


def square_photo(size_px: int, folder: Path) -> Path:
    import cv2

    photo = cv2.imread(str(ROOT / "assets" / "sample_portrait.jpg"))
    side = min(photo.shape[:2])
    square = photo[:side, :side]
    path = folder / f"portrait_{size_px}.png"
    cv2.imwrite(str(path), cv2.resize(square, (size_px, size_px), interpolation=cv2.INTER_CUBIC))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument(
        "--check",
        action="store_true",
        help="one warm run at 512x512 compared with bench/baselines.json; exit 1 on a regression",
    )
    args = parser.parse_args()
    if args.check:
        args.runs, args.sizes = 1, [512]

    from machine_info import describe_machine

    from avatar.engines.engine_set import EngineSet
    from avatar.render.job import render_video
    from avatar.render.request import RenderRequest

    print(f"machine: {describe_machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engines = EngineSet(cache_dir=folder / "cache")
        try:
            for size_px in args.sizes:
                photo = square_photo(size_px, folder)
                request = RenderRequest(
                    photo_path=photo, output_path=folder / f"out_{size_px}.mp4", text=TEXT
                )
                started = time.perf_counter()
                first = render_video(request, engines)
                cold_s = time.perf_counter() - started
                factors = []
                for _ in range(args.runs):
                    result = render_video(request, engines)
                    factors.append(result.duration_s / result.render_time_s)
                rows.append((size_px, first.duration_s, cold_s, factors))
        finally:
            engines.close()
    print()
    print(
        "| size | video length | first job (cold, incl. model load) | real-time factor, median of runs | min | max |"
    )
    print("|---|---|---|---|---|---|")
    for size_px, duration_s, cold_s, factors in rows:
        print(
            f"| {size_px}x{size_px} | {duration_s:.1f} s | {cold_s:.1f} s | {statistics.median(factors):.1f}x "
            f"| {min(factors):.1f}x | {max(factors):.1f}x |"
        )
    if args.check:
        from regression_check import check

        return check("render_speed", {f"rtf_{s}": statistics.median(f) for s, _, _, f in rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
