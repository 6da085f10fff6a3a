"""Livestream outputs: every output tick goes to an ffmpeg child that pushes RTMP or records MP4s.

Why this shape:

- A/V alignment by construction. ffmpeg reads raw video (I420) on stdin and raw audio (s16le,
  mono, 16 kHz) on a second pipe, both timestamped by count from 0 (frame k at k/fps, sample n at
  n/rate), never by the wall clock. A tick's frame and its 640 samples are handed over together
  and drops always take whole ticks, so the two streams cannot drift however late the pipes are
  drained.
- The caller's clock never waits. `write` appends to a bounded deque under a lock that no thread
  holds across I/O; a full deque drops its oldest tick (`dropped_ticks`), and while no ffmpeg is
  running (connecting failed, backing off) ticks are discarded (`discarded_ticks`): a live stream
  does not replay old time.
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
- Supervision: when ffmpeg exits, a pipe write fails, or a pipe write stays blocked longer than
  `stall_timeout_s` (a dead network path: ffmpeg stuck in send() stops reading its input), the run
  is ended and restarted after a backoff (0.5, 1, 2, 4, 8 s, capped, reset once a run stayed
  connected `stable_after_s`), without the caller doing anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from avatar.core.errors import InputError
from avatar.core.system_tools import require_tool, stop_process

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("rtmp", "record")
RTMP_SCHEMES = ("rtmp://", "rtmps://")
AAC_RATE_HZ = 44100  # what RTMP ingest services and players expect
AAC_CHANNELS = 2  # some ingest services refuse mono; the cost is nil
STDERR_RING_LINES = 20
PROGRESS_PERIOD_S = 0.5
POLL_S = 0.1
# ffmpeg's log lines that say nothing about the cause; the line before them is the useful one
_GENERIC_LINES = ("Conversion failed!", "Exiting normally", "received signal")
_POINTER = re.compile(r" @ 0x[0-9a-f]+")

EventCallback = Callable[[dict], None]


class StreamOutput(Protocol):
    """One destination of the livestream's ticks (docs/livestream_api.md, "Outputs")."""

    name: str

    def write(self, tick_index: int, audio: np.ndarray, frame: np.ndarray) -> None: ...  # never blocks

    def status(self) -> dict: ...

    def close(self) -> None: ...  # blocking; stops the ffmpeg child


@dataclass
class _WriterState:
    """What the video writer of one run reports to the supervisor."""

    error: str = ""
    blocked_since: float | None = None  # monotonic start of the pipe write in progress


@dataclass(frozen=True)
class _Tick:
    index: int
    audio: np.ndarray  # float32, exactly samples_per_tick
    frame: np.ndarray  # HxWx3 uint8 BGR, owned (copied on write)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _to_s16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class _AudioPump:
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
                _write_all(self._fd, data)
                self.blocked_since = None
        except OSError as exc:
            with self._cond:
                self.error = f"audio pipe: {exc.strerror or exc}"
                self._chunks.clear()
        finally:
            self.blocked_since = None
            os.close(self._fd)


class _FfmpegRun:
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
            line = _POINTER.sub("", raw.decode("utf-8", "replace").strip())
            if line:
                self.stderr_lines.append(line)

    def last_error(self) -> str:
        """The last log line that names a cause, not ffmpeg's closing boilerplate."""
        for line in reversed(self.stderr_lines):
            if not any(generic in line for generic in _GENERIC_LINES):
                return line
        return ""

    def join_readers(self) -> None:
        for thread in self._readers:
            thread.join()
        self.process.stdout.close()
        self.process.stderr.close()


def check_segment_length(segment_s: float) -> None:
    """Shorter recorded files than 1 s would be mostly keyframes; say so before anything loads."""
    if not segment_s >= 1.0:
        raise InputError(
            f"recorded segments must last at least 1 s, got --segment-s {segment_s:g}",
            "use e.g. --segment-s 300 for 5-minute files",
        )


class FfmpegOutput:
    """An RTMP push or a segmented MP4 recording of the tick stream, through one supervised ffmpeg.

    `start()` returns at once; the supervisor thread starts ffmpeg and restarts it after failures.
    `on_event` is called from that thread with `output_state` events; the caller marshals them.
    """

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        target: str,
        width: int,
        height: int,
        fps: int = 25,
        audio_rate_hz: int = 16000,
        keyframe_interval_s: float = 2.0,
        video_kbps: int = 1500,
        audio_kbps: int = 128,
        segment_s: float = 300.0,
        max_queued_ticks: int = 50,
        backoff_s: Sequence[float] = (0.5, 1, 2, 4, 8),
        stable_after_s: float = 10.0,
        stall_timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
        on_event: EventCallback | None = None,
        ffmpeg: str = "ffmpeg",
    ) -> None:
        if kind not in OUTPUT_KINDS:
            raise InputError(f"unknown output kind {kind!r}", f"use one of {', '.join(OUTPUT_KINDS)}")
        check_target(kind, target)
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"size and fps must be positive, got {width}x{height} at {fps} fps")
        if audio_rate_hz % fps:
            raise ValueError(f"audio rate {audio_rate_hz} Hz is not a whole number of samples per frame")
        if not backoff_s or min(backoff_s) < 0:
            raise ValueError(f"backoff_s must be non-negative delays, got {backoff_s}")
        if max_queued_ticks < 1:
            raise ValueError(f"max_queued_ticks must be at least 1, got {max_queued_ticks}")
        if kind == "record":
            check_segment_length(segment_s)
        self.name = name
        self.kind = kind
        self.target = target
        self.width = width
        self.height = height
        self.fps = fps
        self.audio_rate_hz = audio_rate_hz
        self.samples_per_tick = audio_rate_hz // fps
        self.keyframe_interval_frames = max(1, round(fps * keyframe_interval_s))
        self.video_kbps = video_kbps
        self.audio_kbps = audio_kbps
        self.segment_s = segment_s
        self.max_queued_ticks = max_queued_ticks
        self.backoff_s = tuple(float(delay) for delay in backoff_s)
        self.stable_after_s = stable_after_s
        self.stall_timeout_s = stall_timeout_s
        self.close_timeout_s = close_timeout_s
        self._on_event = on_event
        self._ffmpeg = require_tool(ffmpeg)
        # I420 needs even sides: odd ones are padded by repeating the last row/column
        self._encoded_size = (width + width % 2, height + height % 2)

        self._lock = threading.Lock()
        self._ticks_ready = threading.Condition(self._lock)
        self._queue: deque[_Tick] = deque()
        self._accepting = False  # an ffmpeg is starting or running: ticks are queued for it
        self._run_ending = False  # tells the writer of the current run to stop
        self._closed = False
        self._closing = threading.Event()  # also cuts backoff sleeps short
        self._supervisor: threading.Thread | None = None
        self._state = "connecting"
        self._attempts = 0
        self._connected_since_s: float | None = None
        self._written = 0
        self._dropped = 0
        self._discarded = 0
        self._last_error = ""

    # -- caller side -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervisor thread; returns at once. Recordings get their folder created here."""
        if self._supervisor is not None or self._closed:
            raise RuntimeError(f"output {self.name!r} was already started")
        if self.kind == "record":
            try:
                Path(self.target).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(
                    f"cannot create the recording folder {self.target}: {exc.strerror}",
                    "choose a writable folder",
                ) from None
        with self._lock:
            self._accepting = True  # ticks written right after start() wait for the first ffmpeg
        self._supervisor = threading.Thread(target=self._supervise, name=f"{self.name}-output", daemon=True)
        self._supervisor.start()

    def write(self, tick_index: int, audio: np.ndarray, frame: np.ndarray) -> None:
        """Queue one tick (640 float32 samples + its BGR frame); never blocks, never raises once closed.

        The arrays are copied, so the caller may reuse its buffers. Audio of another length is
        padded or cut to one tick, so a caller's slip cannot shift audio against video.
        """
        if self._closed:
            with self._lock:
                self._discarded += 1
            return
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame is {frame.shape} {frame.dtype}, expected ({self.height}, {self.width}, 3) uint8"
            )
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)[: self.samples_per_tick]
        if len(samples) < self.samples_per_tick:
            samples = np.pad(samples, (0, self.samples_per_tick - len(samples)))
        tick = _Tick(tick_index, samples.copy(), frame.copy())
        with self._lock:
            if not self._accepting:
                self._discarded += 1
                return
            if len(self._queue) >= self.max_queued_ticks:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(tick)
            self._ticks_ready.notify()

    def status(self) -> dict:
        with self._lock:
            return {
                "name": self.name,
                "kind": self.kind,
                "target": self.target,
                "state": self._state,
                "attempts": self._attempts,
                "connected_since_s": self._connected_since_s,
                "written_ticks": self._written,
                "dropped_ticks": self._dropped,
                "discarded_ticks": self._discarded,
                "queued_ticks": len(self._queue),
                "last_error": self._last_error,
            }

    def close(self) -> None:
        """Finish cleanly: queued ticks are written, ffmpeg gets EOF and finalizes the stream or
        file (MP4 index written); after `close_timeout_s` it is stopped. Joins every thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._accepting = False
            self._run_ending = True
            self._ticks_ready.notify_all()
        self._closing.set()
        if self._supervisor is not None:
            self._supervisor.join()
        else:
            self._set_state("closed")
        with self._lock:
            self._discarded += len(self._queue)
            self._queue.clear()

    def __enter__(self) -> FfmpegOutput:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- ffmpeg command --------------------------------------------------------------------------

    def command(self, audio_fd: int, destination: str) -> list[str]:
        """The ffmpeg command line for one run (public so logs and docs can show it)."""
        width, height = self._encoded_size
        keyint = str(self.keyframe_interval_frames)
        kbps = f"{self.video_kbps}k"
        command = [
            self._ffmpeg,
            "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
            "-progress", "pipe:1", "-stats_period", str(PROGRESS_PERIOD_S),
            # inputs: counted timestamps only, one frame / one packet of probing
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{width}x{height}",
            "-framerate", str(self.fps), "-probesize", "32", "-thread_queue_size", "16", "-i", "pipe:0",
            "-f", "s16le", "-sample_rate", str(self.audio_rate_hz), "-ch_layout", "mono",
            "-probesize", "32", "-thread_queue_size", "64", "-i", f"pipe:{audio_fd}",
            "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
            "-pix_fmt", "yuv420p",
            "-colorspace", "smpte170m", "-color_primaries", "bt709", "-color_trc", "bt709",
            "-color_range", "tv",
            "-g", keyint, "-keyint_min", keyint, "-sc_threshold", "0",
            "-b:v", kbps, "-maxrate", kbps, "-bufsize", kbps,
            "-fps_mode", "cfr", "-r", str(self.fps),
            "-c:a", "aac", "-b:a", f"{self.audio_kbps}k", "-ar", str(AAC_RATE_HZ), "-ac", str(AAC_CHANNELS),
        ]  # fmt: skip
        if self.kind == "rtmp":
            return [*command, "-f", "flv", "-flvflags", "no_duration_filesize", destination]
        return [
            *command,
            # a keyframe exactly at every cut, so segments last segment_s even if it is not a
            # multiple of the keyframe interval
            "-force_key_frames", f"expr:gte(t,n_forced*{self.segment_s:g})",
            "-f", "segment", "-segment_time", f"{self.segment_s:g}", "-reset_timestamps", "1",
            "-segment_format", "mp4", "-segment_format_options", "movflags=+faststart",
            destination,
        ]  # fmt: skip

    def _destination(self) -> str:
        """RTMP: the URL. Record: a segment pattern named after this run's start, never reused, so
        a restart cannot overwrite earlier segments (`-strftime` names collide within a second)."""
        if self.kind == "rtmp":
            return self.target
        folder = Path(self.target)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        prefix, n = f"live-{stamp}", 1
        while any(folder.glob(f"{prefix}-*.mp4")):
            n += 1
            prefix = f"live-{stamp}-{n}"
        return str(folder / prefix).replace("%", "%%") + "-%03d.mp4"  # ffmpeg expands % in the name

    # -- supervisor thread -----------------------------------------------------------------------

    def _supervise(self) -> None:
        failures = 0
        while not self._closing.is_set():
            error, connected_for_s = self._one_run()
            with self._lock:
                self._accepting = False
                self._discarded += len(self._queue)
                self._queue.clear()
                self._connected_since_s = None
            if self._closing.is_set():
                break
            failures = 1 if connected_for_s >= self.stable_after_s else failures + 1
            retry_in_s = self.backoff_s[min(failures, len(self.backoff_s)) - 1]
            with self._lock:
                self._last_error = error
            self._set_state("waiting", retry_in_s=retry_in_s, error=error)
            self._closing.wait(retry_in_s)
        self._set_state("closed")

    def _one_run(self) -> tuple[str, float]:
        """Start ffmpeg, feed it until it ends, fails or we close; return (error, seconds connected)."""
        with self._lock:
            if self._closed:
                return "", 0.0
            self._attempts += 1
            self._run_ending = False
            self._accepting = True  # ticks wait in the deque while ffmpeg starts
        audio_read_fd, audio_write_fd = os.pipe()
        try:
            run = _FfmpegRun(self.command(audio_read_fd, self._destination()), audio_read_fd, self.name)
        except OSError as exc:
            os.close(audio_write_fd)
            return f"could not start ffmpeg: {exc}", 0.0
        finally:
            os.close(audio_read_fd)
        pump = _AudioPump(audio_write_fd, self.name)
        writer_state = _WriterState()
        writer = threading.Thread(
            target=self._feed, args=(run, pump, writer_state), name=f"{self.name}-video", daemon=True
        )
        pump.start()
        writer.start()
        self._set_state("connecting")

        error, connected_at = self._watch(run, pump, writer_state)
        connected_for_s = time.monotonic() - connected_at if connected_at is not None else 0.0

        with self._lock:  # the writer drains the queue only when closing (finalize the file)
            self._accepting = False
            if not self._closed:
                self._discarded += len(self._queue)
                self._queue.clear()
            self._run_ending = True
            self._ticks_ready.notify_all()
        if run.process.poll() is None and not error:
            # closing: ffmpeg finalizes after EOF; a pipe error: ffmpeg is exiting and logs why
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.process.wait(timeout=self.close_timeout_s if self._closed else 1.0)
        stop_process(run.process, grace_s=2.0)
        writer.join()
        pump.join()
        run.join_readers()
        error = error or run.last_error() or writer_state.error or pump.error
        return error or f"ffmpeg exited with code {run.process.returncode}", connected_for_s

    def _watch(
        self, run: _FfmpegRun, pump: _AudioPump, writer_state: _WriterState
    ) -> tuple[str, float | None]:
        """Poll the run until it ends; say "connected" once frames come out. Returns (error, when
        connected); the error is empty when ffmpeg's own log will say why it ended."""
        connected_at: float | None = None
        while not self._closing.is_set():
            if run.process.poll() is not None:
                return "", connected_at
            if writer_state.error or pump.error:
                return "", connected_at  # ffmpeg closed a pipe: it is exiting
            now = time.monotonic()
            for blocked_since in (writer_state.blocked_since, pump.blocked_since):
                if blocked_since is not None and now - blocked_since > self.stall_timeout_s:
                    return f"ffmpeg stopped reading its input for {self.stall_timeout_s:g} s", connected_at
            if connected_at is None and run.frames_out > 0:
                connected_at = now
                with self._lock:
                    self._connected_since_s = time.time()
                self._set_state("connected")
            self._closing.wait(POLL_S)
        return "", connected_at

    def _feed(self, run: _FfmpegRun, pump: _AudioPump, writer_state: _WriterState) -> None:
        """Writer thread of one run: ticks from the deque to the pipes, audio handed over first."""
        import cv2

        video_fd = run.process.stdin.fileno()
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._run_ending:
                        self._ticks_ready.wait()
                    if not self._queue:
                        return
                    tick = self._queue.popleft()
                pump.put(_to_s16(tick.audio))
                frame = tick.frame
                if self._encoded_size != (self.width, self.height):
                    pad = ((0, self._encoded_size[1] - self.height), (0, self._encoded_size[0] - self.width))
                    frame = np.pad(frame, (*pad, (0, 0)), mode="edge")
                yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
                writer_state.blocked_since = time.monotonic()
                try:
                    _write_all(video_fd, yuv.data)
                except OSError as exc:
                    writer_state.error = f"video pipe: {exc.strerror or exc}"
                    with self._lock:
                        self._discarded += 1
                    return
                finally:
                    writer_state.blocked_since = None
                with self._lock:
                    self._written += 1
        finally:
            try:
                with contextlib.suppress(OSError):
                    run.process.stdin.close()  # EOF: ffmpeg flushes its encoders, finalizes the output
            finally:
                pump.finish()  # always: the supervisor joins the pump

    # -- events ----------------------------------------------------------------------------------

    def _set_state(self, state: str, **fields) -> None:
        with self._lock:
            self._state = state
            attempt = self._attempts
        if self._on_event is None:
            return
        event = {"type": "output_state", "name": self.name, "state": state, "attempt": attempt, **fields}
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not stop the stream
            log.exception("output %s: on_event failed", self.name)


def check_target(kind: str, target: str) -> None:
    """An RTMP URL with a host, or a recording folder that is not a file; InputError otherwise."""
    if kind == "rtmp":
        lowered = target.lower()
        scheme = next((s for s in RTMP_SCHEMES if lowered.startswith(s)), None)
        if scheme is None or not target[len(scheme) :].split("/", 1)[0]:
            raise InputError(
                f"not an RTMP URL: {target!r}", "give rtmp://HOST[:PORT]/APP/STREAM_KEY or rtmps://..."
            )
    elif Path(target).exists() and not Path(target).is_dir():
        raise InputError(f"recording target is a file, not a folder: {target}", "give a folder")
