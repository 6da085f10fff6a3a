"""One ffmpeg child of a livestream output: its pipes, the threads that drain and feed them, its command.

- One thread per pipe. ffmpeg opens its inputs one after the other and later reads them on
  separate threads; if one Python thread wrote both pipes, ffmpeg waiting for audio while that
  thread sits in a blocked video write would deadlock (measured: it did, at start-up). The video
  writer hands tick k's audio to the audio pump before it writes frame k, so audio is never behind
  video in what ffmpeg can read. `-probesize 32` keeps ffmpeg's probing to one frame and one packet.
- BGR -> I420 in the writer thread (cv2, BT.601 limited range, tagged as such): half the pipe bytes
  of bgr24; measured at 512x512 25 fps, ffmpeg took 14.9 % of a core instead of 17.3 % (swscale
  doing it) for 0.28 ms of Python per frame.
- "connected" = ffmpeg's `-progress` report counts encoded frames. ffmpeg opens its output before
  it encodes anything (RTMP: TCP connect, handshake, and `publish` answered by the server; record:
  the first segment file) and exits when that fails, so a frame count above 0 from a live process
  means the server took the stream and media is flowing. No log text is parsed, and files and
  streams are handled alike.

The supervision (restarts, backoff, the tick queue) is avatar.broadcast.outputs.FfmpegOutput.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AAC_RATE_HZ = 44100  # what RTMP ingest services and players expect
AAC_CHANNELS = 2  # some ingest services refuse mono; the cost is nil
STDERR_RING_LINES = 20
PROGRESS_PERIOD_S = 0.5
# ffmpeg's log lines that say nothing about the cause; the line before them is the useful one
GENERIC_LINES = ("Conversion failed!", "Exiting normally", "received signal")
POINTER_PATTERN = re.compile(r" @ 0x[0-9a-f]+")


@dataclass
class WriterState:
    """What the video writer of one run reports to the supervisor."""

    error: str = ""
    blocked_since: float | None = None  # monotonic start of the pipe write in progress


@dataclass(frozen=True)
class Tick:
    index: int
    audio: np.ndarray  # float32, exactly samples_per_tick
    frame: np.ndarray  # HxWx3 uint8 BGR, owned (copied on write)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def to_i420(frame: np.ndarray, encoded_size: tuple[int, int]) -> np.ndarray:
    """A BGR frame as I420 bytes; I420 needs even sides, so odd ones repeat the last row/column."""
    import cv2

    height, width = frame.shape[:2]
    if encoded_size != (width, height):
        pad = ((0, encoded_size[1] - height), (0, encoded_size[0] - width))
        frame = np.pad(frame, (*pad, (0, 0)), mode="edge")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)


def to_s16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class AudioPump:
    """Writes audio to ffmpeg's second pipe on its own thread, so neither pipe waits on the other.

    Owns the write end of the pipe and closes it when finished (EOF tells ffmpeg the input ended).
    Its backlog is at most what the video writer handed over and ffmpeg has not read yet.
    """

    def __init__(self, fd: int, name: str) -> None:
        self._fd = fd
        self._chunks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._finished = False
        self.error = ""
        self.blocked_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-audio", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, data: bytes) -> None:
        with self._cond:
            if not self.error:
                self._chunks.append(data)
                self._cond.notify()

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._finished:
                        self._cond.wait()
                    if not self._chunks:
                        return
                    data = b"".join(self._chunks)
                    self._chunks.clear()
                self.blocked_since = time.monotonic()
                write_all(self._fd, data)
                self.blocked_since = None
        except OSError as exc:
            with self._cond:
                self.error = f"audio pipe: {exc.strerror or exc}"
                self._chunks.clear()
        finally:
            self.blocked_since = None
            os.close(self._fd)


class FfmpegRun:
    """One ffmpeg child with the threads that drain its stdout (progress) and stderr (log ring).

    The feeding threads belong to FfmpegOutput; everything here ends once the child is gone.
    """

    def __init__(self, command: list[str], audio_read_fd: int, name: str) -> None:
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(audio_read_fd,),
        )
        self.frames_out = 0
        self.stderr_lines: deque[str] = deque(maxlen=STDERR_RING_LINES)
        self._readers = [
            threading.Thread(target=self._read_progress, name=f"{name}-progress", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"{name}-stderr", daemon=True),
        ]
        for thread in self._readers:
            thread.start()

    def _read_progress(self) -> None:
        for raw in self.process.stdout:
            key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
            if key == "frame" and value.isdigit():
                self.frames_out = int(value)

    def _read_stderr(self) -> None:
        for raw in self.process.stderr:
            line = POINTER_PATTERN.sub("", raw.decode("utf-8", "replace").strip())
            if line:
                self.stderr_lines.append(line)

    def last_error(self) -> str:
        """The last log line that names a cause, not ffmpeg's closing boilerplate."""
        for line in reversed(self.stderr_lines):
            if not any(generic in line for generic in GENERIC_LINES):
                return line
        return ""

    def join_readers(self) -> None:
        for thread in self._readers:
            thread.join()
        self.process.stdout.close()
        self.process.stderr.close()


def ffmpeg_command(
    ffmpeg: str,
    *,
    kind: str,
    size: tuple[int, int],
    fps: int,
    audio_rate_hz: int,
    audio_fd: int,
    keyframe_interval_frames: int,
    video_kbps: int,
    audio_kbps: int,
    segment_s: float,
    destination: str,
) -> list[str]:
    """The ffmpeg command line of one run: raw I420 on stdin and s16le mono on `audio_fd`, both
    timestamped by count; H.264 + AAC to RTMP (flv) or to segmented MP4 files."""
    width, height = size
    keyint = str(keyframe_interval_frames)
    kbps = f"{video_kbps}k"
    command = [
        ffmpeg,
        "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
        "-progress", "pipe:1", "-stats_period", str(PROGRESS_PERIOD_S),
        # inputs: counted timestamps only, one frame / one packet of probing
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{width}x{height}",
        "-framerate", str(fps), "-probesize", "32", "-thread_queue_size", "16", "-i", "pipe:0",
        "-f", "s16le", "-sample_rate", str(audio_rate_hz), "-ch_layout", "mono",
        "-probesize", "32", "-thread_queue_size", "64", "-i", f"pipe:{audio_fd}",
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
        "-pix_fmt", "yuv420p",
        "-colorspace", "smpte170m", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-color_range", "tv",
        "-g", keyint, "-keyint_min", keyint, "-sc_threshold", "0",
        "-b:v", kbps, "-maxrate", kbps, "-bufsize", kbps,
        "-fps_mode", "cfr", "-r", str(fps),
        "-c:a", "aac", "-b:a", f"{audio_kbps}k", "-ar", str(AAC_RATE_HZ), "-ac", str(AAC_CHANNELS),
    ]  # fmt: skip
    if kind == "rtmp":
        return [*command, "-f", "flv", "-flvflags", "no_duration_filesize", destination]
    return [
        *command,
        # a keyframe exactly at every cut, so segments last segment_s even if it is not a
        # multiple of the keyframe interval
        "-force_key_frames", f"expr:gte(t,n_forced*{segment_s:g})",
        "-f", "segment", "-segment_time", f"{segment_s:g}", "-reset_timestamps", "1",
        "-segment_format", "mp4", "-segment_format_options", "movflags=+faststart",
        destination,
    ]  # fmt: skip


def record_destination(folder: Path) -> str:
    """A segment pattern named after this run's start, never reused, so a restart cannot overwrite
    earlier segments (`-strftime` names collide within a second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix, n = f"live-{stamp}", 1
    while any(folder.glob(f"{prefix}-*.mp4")):
        n += 1
        prefix = f"live-{stamp}-{n}"
    return str(folder / prefix).replace("%", "%%") + "-%03d.mp4"  # ffmpeg expands % in the name
