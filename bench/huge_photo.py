"""A 12000x12000 photo handed to `avatar`: a PNG is refused from its header, a baseline JPEG is
decoded already reduced (libjpeg 1/8) and used. Peak resident memory and CPU of each whole
process (Python, imports and all), measured by a fresh parent through RUSAGE_CHILDREN.

    .venv/bin/python -m bench.huge_photo
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE_PX = 12000
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(done.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
sys.stderr.write(done.stderr[-400:])
"""


def png(path: Path) -> Path:
    """A real black 12000x12000 PNG, compressed row by row."""
    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(bytes(1 + SIDE_PX * 3)) for _ in range(SIDE_PX)) + rows.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", SIDE_PX, SIDE_PX, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def jpeg(path: Path) -> Path:
    """The sample portrait blown up to 12000x12000, baseline JPEG."""
    import cv2

    image = cv2.imread(str(ROOT / "assets/sample_portrait.jpg"))
    big = cv2.resize(image, (SIDE_PX, SIDE_PX), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return path


def measure(command: list[str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, cwd=ROOT)
    code, rss_kb, cpu_s = done.stdout.split()
    return {
        "command": " ".join(command[2:]),
        "exit_code": int(code),
        "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        "cpu_s": round(float(cpu_s), 2),
        "wall_s": round(time.perf_counter() - started, 2),
        "stderr_tail": done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else [],
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="huge-photo-") as tmp:
        folder = Path(tmp)
        big_png, big_jpeg = png(folder / "wall.png"), jpeg(folder / "portrait.jpg")
        python = [sys.executable, "-m"]
        results = {
            "png_bytes": big_png.stat().st_size,
            "jpeg_bytes": big_jpeg.stat().st_size,
            "png_render": measure(
                [
                    *python,
                    "avatar",
                    "render",
                    "--photo",
                    str(big_png),
                    "--text",
                    "hi",
                    "-o",
                    str(folder / "a.mp4"),
                ]
            ),
            "jpeg_preview": measure(
                [*python, "avatar", "preview", "--photo", str(big_jpeg), "-o", str(folder / "p.png")]
            ),
            "jpeg_decode_only": measure(
                [
                    sys.executable,
                    "-c",
                    f"from lipsync.avatar_assets import read_photo; print(read_photo({str(big_jpeg)!r}, 1024).shape)",
                ]
            ),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
