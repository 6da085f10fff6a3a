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
- One thread per pipe, BGR -> I420 in the writer thread, and "connected" from ffmpeg's own frame
  count: see avatar.broadcast.ffmpeg_run (the child process, its pipes and its command line).
- Supervision: when ffmpeg exits, a pipe write fails, or a pipe write stays blocked longer than
  `stall_timeout_s` (a dead network path: ffmpeg stuck in send() stops reading its input), the run
  is ended and restarted after a backoff (0.5, 1, 2, 4, 8 s, capped, reset once a run stayed
  connected `stable_after_s`), without the caller doing anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from avatar.broadcast.ffmpeg_run import (
    AudioPump,
    FfmpegRun,
    Tick,
    WriterState,
    ffmpeg_command,
    record_destination,
    to_i420,
    to_s16,
    write_all,
)
from avatar.core.errors import InputError
from avatar.core.system_tools import require_tool, stop_process

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("rtmp", "record")
RTMP_SCHEMES = ("rtmp://", "rtmps://")
POLL_S = 0.1

EventCallback = Callable[[dict], None]


class StreamOutput(Protocol):
    """One destination of the livestream's ticks (docs/livestream_api.md, "Outputs")."""

    name: str

    def write(self, tick_index: int, audio: np.ndarray, frame: np.ndarray) -> None: ...  # never blocks

    def status(self) -> dict: ...

    def close(self) -> None: ...  # blocking; stops the ffmpeg child


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
        self._queue: deque[Tick] = deque()
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
        tick = Tick(tick_index, samples.copy(), frame.copy())
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
        return ffmpeg_command(
            self._ffmpeg,
            kind=self.kind,
            size=self._encoded_size,
            fps=self.fps,
            audio_rate_hz=self.audio_rate_hz,
            audio_fd=audio_fd,
            keyframe_interval_frames=self.keyframe_interval_frames,
            video_kbps=self.video_kbps,
            audio_kbps=self.audio_kbps,
            segment_s=self.segment_s,
            destination=destination,
        )

    def _destination(self) -> str:
        """RTMP: the URL. Record: a fresh segment pattern in the folder (see record_destination)."""
        return self.target if self.kind == "rtmp" else record_destination(Path(self.target))

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
            run = FfmpegRun(self.command(audio_read_fd, self._destination()), audio_read_fd, self.name)
        except OSError as exc:
            os.close(audio_write_fd)
            return f"could not start ffmpeg: {exc}", 0.0
        finally:
            os.close(audio_read_fd)
        pump = AudioPump(audio_write_fd, self.name)
        writer_state = WriterState()
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

    def _watch(self, run: FfmpegRun, pump: AudioPump, writer_state: WriterState) -> tuple[str, float | None]:
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

    def _feed(self, run: FfmpegRun, pump: AudioPump, writer_state: WriterState) -> None:
        """Writer thread of one run: ticks from the deque to the pipes, audio handed over first."""
        video_fd = run.process.stdin.fileno()
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._run_ending:
                        self._ticks_ready.wait()
                    if not self._queue:
                        return
                    tick = self._queue.popleft()
                pump.put(to_s16(tick.audio))
                yuv = to_i420(tick.frame, self._encoded_size)
                writer_state.blocked_since = time.monotonic()
                try:
                    write_all(video_fd, yuv.data)
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
