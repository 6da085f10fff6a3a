"""Photos decoded within limits: a huge baseline JPEG is decoded already reduced, a huge PNG or a
huge file is refused from its header in one line, before any pixel is decoded."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
import zlib

import cv2
import pytest

from avatar.core.errors import InputError
from lipsync import avatar_assets
from lipsync.avatar_assets import check_photo_pixels, prepare_avatar, read_photo
from tests.conftest import ROOT, SAMPLE_PORTRAIT
from tests.support.hostile_files import png_header


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    """The sample portrait blown up to 4800 px, baseline JPEG."""
    image = cv2.imread(str(SAMPLE_PORTRAIT))
    scale = 4800 / max(image.shape[:2])
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    path = tmp_path_factory.mktemp("photos") / "big.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path, big.shape


def test_a_large_jpeg_is_decoded_reduced_but_never_below_the_size_needed(big_jpeg):
    path, (height, width, _) = big_jpeg
    assert check_photo_pixels(path, 1024) == 4  # 4800 / 4 = 1200 >= 1024; / 8 would be 600
    image = read_photo(path, 1024)
    assert image.shape[:2] == (-(-height // 4), -(-width // 4))
    assert read_photo(path, 2048).shape[:2] == (-(-height // 2), -(-width // 2))
    assert read_photo(path, 4096).shape[:2] == (height, width)  # not far larger: whole


def test_the_face_of_a_reduced_decode_is_found(big_jpeg, tmp_path):
    path, _ = big_jpeg
    assets = prepare_avatar(path, 512, cache_dir=tmp_path)
    assert max(assets.image_bgr.shape[:2]) == 512
    _, y0, _, y1 = assets.face_box_xyxy
    assert 120 < y1 - y0 < 400


def test_a_progressive_jpeg_is_decoded_whole(tmp_path):
    image = cv2.imread(str(SAMPLE_PORTRAIT))
    big = cv2.resize(image, (3000, 3000))
    path = tmp_path / "progressive.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert check_photo_pixels(path, 512) == 1  # its decoder keeps every coefficient anyway


def test_a_12000_px_png_is_refused_from_its_header_in_one_line(tmp_path):
    started = time.perf_counter()
    with pytest.raises(InputError) as error:
        read_photo(png_header(tmp_path / "huge.png", 12000, 12000))
    assert time.perf_counter() - started < 0.5
    assert str(error.value).startswith("huge.png is 12000x12000 px (144 megapixels)")
    assert "\n" not in str(error.value)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(avatar_assets, "MAX_PHOTO_FILE_BYTES", 100_000)
    path = tmp_path / "large.jpg"
    path.write_bytes(SAMPLE_PORTRAIT.read_bytes() * 4)
    with pytest.raises(InputError, match=r"large.jpg is \d+ MB, more than the 0 MB a photo may be"):
        read_photo(path)


MEASURED_CHILD = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(done.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
sys.stderr.write(done.stderr)
"""


def measured(command: list[str]) -> tuple[int, float, float, str]:
    """(exit code, peak RSS MB, CPU s, stderr) of `command`, measured by a fresh parent process
    (RUSAGE_CHILDREN of pytest itself would report its biggest child so far)."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_CHILD, *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    code, rss_kb, cpu_s = done.stdout.split()
    return int(code), int(rss_kb) / 1024, float(cpu_s), done.stderr


def real_png(path, width: int, height: int):
    """A real, decodable black PNG, compressed row by row (never the whole picture in memory)."""
    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(bytes(1 + width * 3)) for _ in range(height)) + rows.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def test_render_refuses_a_real_12000_px_png_in_under_a_second_and_300_mb(tmp_path):
    """The whole `avatar render` process, Python and its imports included."""
    photo = real_png(tmp_path / "wall.png", 12000, 12000)
    command = [sys.executable, "-m", "avatar", "render", "--photo", str(photo), "--text", "hi"]
    code, peak_mb, cpu_s, stderr = measured([*command, "-o", str(tmp_path / "out.mp4")])
    assert code == 2 and "12000x12000 px (144 megapixels)" in stderr, stderr
    assert peak_mb < 300, f"peak {peak_mb:.0f} MB"
    assert cpu_s < 1.0, f"{cpu_s:.2f} s of CPU"
    assert not (tmp_path / "out.mp4").exists()
