"""Look inside media files the way a player would, so tests check outputs by measurement.

`probe_media` asks ffprobe (it honours MP4 edit lists, as players do) and counts packets rather
than trusting header estimates; `read_video_frames` and `read_audio` decode with PyAV so a test
can compare pixels and samples with what was written.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from avatar.core.errors import InputError
from avatar.core.system_tools import require_tool
from avatar.core.types import AudioChunk


@dataclass(frozen=True)
class StreamInfo:
    """One stream as measured; fields that do not apply to its kind are None."""

    index: int
    kind: str  # "video" | "audio" | "subtitle" | "data"
    codec_name: str
    profile: str | None
    width: int | None
    height: int | None
    fps: Fraction | None  # exact average frame rate, e.g. Fraction(25, 1)
    frame_count: int | None  # counted packets (one per frame for H.264/AAC), or decoded frames
    duration_s: float | None
    sample_rate_hz: int | None
    channels: int | None
    pix_fmt: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    duration_s: float | None
    streams: tuple[StreamInfo, ...]

    def of_kind(self, kind: str) -> list[StreamInfo]:
        return [stream for stream in self.streams if stream.kind == kind]


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"media file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")


def _fraction(text: str | None) -> Fraction | None:
    if not text or text in ("0/0", "0"):
        return None
    value = Fraction(text)
    return value if value > 0 else None


def _optional_float(text: str | None) -> float | None:
    return float(text) if text not in (None, "", "N/A") else None


def _optional_int(value) -> int | None:
    return int(value) if value not in (None, "", "N/A") else None


def _stream_info(raw: dict) -> StreamInfo:
    kind = raw.get("codec_type", "data")
    is_video = kind == "video"
    counted = raw.get("nb_read_frames") or raw.get("nb_read_packets")
    return StreamInfo(
        index=int(raw["index"]),
        kind=kind,
        codec_name=raw.get("codec_name", ""),
        profile=raw.get("profile"),
        width=_optional_int(raw.get("width")) if is_video else None,
        height=_optional_int(raw.get("height")) if is_video else None,
        fps=(_fraction(raw.get("avg_frame_rate")) or _fraction(raw.get("r_frame_rate")))
        if is_video
        else None,
        frame_count=_optional_int(counted),
        duration_s=_optional_float(raw.get("duration")),
        sample_rate_hz=_optional_int(raw.get("sample_rate")) if kind == "audio" else None,
        channels=_optional_int(raw.get("channels")) if kind == "audio" else None,
        pix_fmt=raw.get("pix_fmt") if is_video else None,
    )


def probe_media(path: Path | str, decode_frames: bool = False) -> MediaInfo:
    """Streams and format of `path`; `decode_frames=True` counts decoded frames (slow, exact for any codec)."""
    path = Path(path)
    _check_readable(path)
    command = [
        require_tool("ffprobe"),
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-count_frames" if decode_frames else "-count_packets",
        str(path),
    ]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"cannot read media file {path}: {message[-1] if message else 'ffprobe failed'}")
    report = json.loads(done.stdout)
    fmt = report.get("format", {})
    return MediaInfo(
        path=path,
        format_name=fmt.get("format_name", ""),
        duration_s=_optional_float(fmt.get("duration")),
        streams=tuple(_stream_info(raw) for raw in report.get("streams", [])),
    )


def _open_container(path: Path):
    import av

    _check_readable(path)
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read media file {path}: {exc}") from None


def read_video_frames(path: Path | str, every_n: int = 1) -> Iterator[np.ndarray]:
    """Decoded BGR uint8 frames of the first video stream, every `every_n`-th from frame 0."""
    if every_n < 1:
        raise ValueError(f"every_n must be >= 1, got {every_n}")
    path = Path(path)
    with _open_container(path) as container:
        if not container.streams.video:
            raise InputError(f"no video stream in {path}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index % every_n == 0:
                yield frame.to_ndarray(format="bgr24")


def read_audio(path: Path | str) -> AudioChunk:
    """The first audio stream decoded to mono float32 at its own sample rate.

    Samples dropped by the MP4 edit list (AAC priming) are not returned, as in a player.
    """
    import av

    path = Path(path)
    with _open_container(path) as container:
        if not container.streams.audio:
            raise InputError(f"no audio stream in {path}")
        stream = container.streams.audio[0]
        rate_hz = int(stream.codec_context.sample_rate)
        to_mono_float = av.AudioResampler(format="flt", layout="mono", rate=rate_hz)
        pieces = []
        for frame in container.decode(stream):
            pieces.extend(out.to_ndarray().reshape(-1) for out in to_mono_float.resample(frame))
        pieces.extend(out.to_ndarray().reshape(-1) for out in to_mono_float.resample(None))
    pcm = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    return AudioChunk(pcm, rate_hz)
