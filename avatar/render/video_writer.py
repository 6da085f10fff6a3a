"""Rendered frames + speech -> an H.264/AAC MP4 that plays everywhere, written all or nothing.

Why two ffmpeg passes: frames arrive lazily from the renderer, so the frame count (and with it
the exact audio length) is only known at the end. Pass one streams raw BGR frames through stdin
into a video-only H.264 file (bounded memory, no second pipe to deadlock on) while the audio is
appended, window by window, to a float WAV beside it (`write_audio`), so an hour-long video never
holds more than one window of either in memory; pass two copies that video and encodes the audio,
padded or trimmed to exactly `frame_count * R / F` samples (frame k covers samples
[k*R/F, (k+1)*R/F)), so both streams end on the same frame boundary.

Format choices, all for "plays everywhere": H.264 High profile, yuv420p, BT.709 tagged, constant
25 fps, even frame sides (odd sizes are padded by repeating the last row/column), `+faststart`
so browsers start playing before the download ends, AAC-LC mono at 48 kHz. 48 kHz rather than the
renderer's 16 kHz: it is the native rate of video players and the AAC priming delay (1024 samples)
is then 21 ms, under one 40 ms frame even in players that ignore the MP4 edit list.

Every intermediate lives beside the output and is deleted on exit; the final file appears with one
`os.replace`, so an error or Ctrl-C never leaves a partial video under the requested name. A hung
encoder is stopped and a full disk is named as such (`avatar.render.ffmpeg_watch`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from avatar.core.errors import AvatarError, InputError
from avatar.core.system_tools import require_tool
from avatar.core.types import FRAME_RATE_FPS, AudioChunk
from avatar.render import ffmpeg_watch

AAC_SAMPLE_RATE_HZ = 48000
AAC_BITRATE = "96k"  # mono speech; transparent at this rate
X264_PRESET = "veryfast"  # measured: "fast" made the encoder, not the renderer, the bottleneck on 2 cores
X264_CRF = 18  # visually lossless for faces
STDERR_TAIL_LINES = 6


class EncodingFailed(AvatarError):
    """ffmpeg refused or crashed; the message carries the tail of its stderr."""


@dataclass(frozen=True)
class WrittenMp4:
    """What ended up on disk, for logs and render results."""

    output_path: Path
    frame_count: int
    duration_s: float
    width: int  # encoded size (odd input sides are padded up to even)
    height: int


def find_ffmpeg() -> str:
    """Path of the ffmpeg binary, or a one-line EngineUnavailable naming the fix."""
    return require_tool("ffmpeg")


def check_output_path(out_path: Path) -> None:
    """Fail before any rendering work when the result could not be saved anyway."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise InputError(f"output path is a folder: {out_path}", "give a file name such as out.mp4")
    folder = out_path.parent
    if not folder.exists():
        raise InputError(f"output folder does not exist: {folder}", "create it first")
    if not folder.is_dir():
        raise InputError(f"output folder is not a folder: {folder}")
    try:  # really create a file: permission bits say nothing for root, read-only mounts or /proc
        handle, probe = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise InputError(
            f"output folder is not writable: {folder} ({exc.strerror})", "choose another folder"
        ) from None
    os.close(handle)
    os.unlink(probe)


def fit_audio_to_frames(audio: AudioChunk, frame_count: int, fps: int) -> np.ndarray:
    """Pad with silence or trim so the audio ends exactly where frame `frame_count` ends."""
    pcm = np.asarray(audio.pcm, dtype=np.float32)
    if pcm.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {pcm.shape}")
    target = round(frame_count * audio.sample_rate_hz / fps)
    if len(pcm) >= target:
        return pcm[:target]
    return np.concatenate([pcm, np.zeros(target - len(pcm), np.float32)])


def _stderr_tail(stderr: bytes) -> str:
    """The last lines of ffmpeg's complaint, joined so the error stays one line."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines[-STDERR_TAIL_LINES:]) or "no message"


def _read_all(stderr_file) -> bytes:
    stderr_file.seek(0)
    return stderr_file.read()


class Mp4Writer:
    """Stream BGR frames into an MP4 with `audio` fitted to the frame count on close.

    Use as a context manager; the output exists only after a clean exit from the `with` block.
    Audio comes either whole (`audio`) or in pieces as it is produced (`audio_sample_rate_hz`
    plus `write_audio`); it is written to disk at once either way.
    """

    def __init__(
        self,
        out_path: Path | str,
        width: int,
        height: int,
        fps: int = FRAME_RATE_FPS,
        audio: AudioChunk | None = None,
        crf: int = X264_CRF,
        preset: str = X264_PRESET,
        audio_sample_rate_hz: int | None = None,
        stall_timeout_s: float | None = None,
    ) -> None:
        """`stall_timeout_s`: how long one frame may wait for the encoder before it is taken as
        hung and stopped (default `ffmpeg_watch.FFMPEG_STALL_TIMEOUT_S`)."""
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.out_path = Path(out_path)
        self.width = width
        self.height = height
        self.encoded_width = width + width % 2
        self.encoded_height = height + height % 2
        self.fps = fps
        if audio is not None and audio_sample_rate_hz is not None:
            raise ValueError("give the audio whole or stream it with write_audio, not both")
        self.audio = audio
        self.audio_sample_rate_hz = audio.sample_rate_hz if audio is not None else audio_sample_rate_hz
        self.audio_samples = 0  # written so far
        self._audio_file = None  # soundfile.SoundFile of the streamed audio while open
        self._audio_path: Path | None = None
        self.crf = crf
        self.preset = preset
        self.frame_count = 0
        self._ffmpeg = ""
        self._process: subprocess.Popen | None = None
        self._stderr = None
        self._temp_paths: list[Path] = []
        self._video_path: Path | None = None
        self.result: WrittenMp4 | None = None  # set by a successful close()
        self.stall_timeout_s = stall_timeout_s or ffmpeg_watch.FFMPEG_STALL_TIMEOUT_S
        self._watch: ffmpeg_watch.StallWatch | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Mp4Writer:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:
        """Check the destination and start the video encoder."""
        self._ffmpeg = find_ffmpeg()
        check_output_path(self.out_path)
        try:
            self._video_path = self._make_temp(".video.mp4")
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as ffmpeg; closed in _cleanup
            self._process = subprocess.Popen(
                self._video_command(self._video_path),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
            self._watch = ffmpeg_watch.StallWatch(self._process, self.stall_timeout_s)
            if self.audio_sample_rate_hz is not None:
                self._open_audio()
            if self.audio is not None:
                self.write_audio(self.audio.pcm)
        except BaseException:
            self.abort()
            raise

    def write_audio(self, pcm: np.ndarray) -> None:
        """Append mono float samples at `audio_sample_rate_hz` (any length; fitted on close)."""
        if self._audio_file is None:
            raise RuntimeError("Mp4Writer has no open audio; give audio_sample_rate_hz and use `with`")
        pcm = np.asarray(pcm, dtype=np.float32)
        if pcm.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {pcm.shape}")
        try:
            self._audio_file.write(pcm)
        except (OSError, RuntimeError) as error:  # soundfile's errors are RuntimeErrors
            raise self._output_failed("writing the audio", error) from None
        self.audio_samples += len(pcm)

    def write(self, frame: np.ndarray) -> None:
        """Send one BGR uint8 frame of the size given at construction."""
        if self._process is None:
            raise RuntimeError("Mp4Writer is not open; use it in a `with` block")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {self.frame_count} is {frame.shape} {frame.dtype}, "
                f"expected ({self.height}, {self.width}, 3) uint8"
            )
        if (self.encoded_width, self.encoded_height) != (self.width, self.height):
            pad = ((0, self.encoded_height - self.height), (0, self.encoded_width - self.width), (0, 0))
            frame = np.pad(frame, pad, mode="edge")
        try:
            with self._watch.writing():
                self._process.stdin.write(np.ascontiguousarray(frame).data)
        except OSError as error:  # BrokenPipeError: ffmpeg exited (or was stopped as hung)
            self._process.wait()
            if self._watch.fired:
                raise EncodingFailed(
                    f"ffmpeg took no frame for {self.stall_timeout_s:g} s (hung) and was stopped"
                ) from None
            raise self._output_failed("encoding the video", error) from None
        self.frame_count += 1

    def close(self) -> WrittenMp4:
        """Finish the video, add the fitted audio and move the result into place."""
        try:
            if self.frame_count == 0:
                raise InputError(
                    f"no video frames to write to {self.out_path}", "the audio is probably empty"
                )
            self._finish_video()
            self._finish_audio()
            final_temp = self._make_temp(".partial.mp4")
            self._run(self._mux_command(final_temp), "adding the audio")
            if not final_temp.is_file() or final_temp.stat().st_size == 0:
                raise EncodingFailed("ffmpeg reported success but wrote no video (while adding the audio)")
            os.replace(final_temp, self.out_path)
            self._temp_paths.remove(final_temp)
        except BaseException:
            self.abort()
            raise
        self._cleanup()
        self.result = WrittenMp4(
            self.out_path,
            self.frame_count,
            self.frame_count / self.fps,
            self.encoded_width,
            self.encoded_height,
        )
        return self.result

    def abort(self) -> None:
        """Kill ffmpeg and delete every intermediate; safe to call more than once."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._cleanup()

    # -- internals -------------------------------------------------------------------------------

    def _open_audio(self) -> None:
        import soundfile

        self._audio_path = self._make_temp(".audio.wav", keep_reserved=True)
        # RF64: a plain WAV header cannot describe more than 4 GB (12 hours of float at 24 kHz)
        self._audio_file = soundfile.SoundFile(
            str(self._audio_path),
            "w",
            samplerate=int(self.audio_sample_rate_hz),
            channels=1,
            subtype="FLOAT",
            format="RF64",
        )

    def _finish_audio(self) -> None:
        """Pad the streamed audio with silence up to the last frame's end (longer is trimmed in
        the mux), then close the file."""
        if self._audio_file is None:
            return
        missing = self._fitted_audio_samples() - self.audio_samples
        if missing > 0:
            self._audio_file.write(np.zeros(missing, np.float32))
        self._audio_file.close()
        self._audio_file = None

    def _fitted_audio_samples(self) -> int:
        return round(self.frame_count * self.audio_sample_rate_hz / self.fps)

    def _finish_video(self) -> None:
        try:
            self._process.stdin.close()
        except OSError as error:  # the last frames could not be flushed to a dead or full encoder
            self._process.wait()
            raise self._output_failed("encoding the video", error) from None
        try:
            code = self._process.wait(timeout=self._finish_timeout_s())
        except subprocess.TimeoutExpired:
            raise EncodingFailed(
                f"ffmpeg did not finish the video within {self._finish_timeout_s():g} s (hung) and was stopped"
            ) from None
        if code != 0:
            raise self._output_failed("encoding the video", None)

    def _finish_timeout_s(self) -> float:
        return ffmpeg_watch.finish_timeout_s(self.stall_timeout_s, self.frame_count / self.fps)

    def _output_failed(self, what: str, error: BaseException | None) -> AvatarError:
        """One line for a failed write: the disk is full, or ffmpeg's own words."""
        tail = _stderr_tail(_read_all(self._stderr)) if self._stderr is not None else ""
        if ffmpeg_watch.is_disk_full(error, tail, self.out_path.parent):
            return EncodingFailed(*ffmpeg_watch.disk_full_message(self.out_path.parent))
        if error is not None and not isinstance(error, BrokenPipeError):
            return EncodingFailed(f"{what} failed: {type(error).__name__}: {error}")
        return EncodingFailed(f"ffmpeg failed while {what}: {tail}")

    def _make_temp(self, suffix: str, keep_reserved: bool = False) -> Path:
        """A temp path beside the output: same filesystem for os.replace, no /tmp size surprises."""
        try:
            handle, name = tempfile.mkstemp(
                prefix=f".{self.out_path.stem}.", suffix=suffix, dir=self.out_path.parent
            )
        except OSError as exc:
            raise InputError(
                f"output folder is not writable: {self.out_path.parent} ({exc.strerror})",
                "choose another folder",
            ) from None
        os.close(handle)
        path = Path(name)
        self._temp_paths.append(path)
        if not keep_reserved:
            # ffmpeg then creates the file itself, with the user's umask instead of mkstemp's 0600;
            # the random name stays effectively unique
            path.unlink()
        return path

    def _cleanup(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._process is not None and self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):  # ffmpeg is already gone; nothing to flush
                self._process.stdin.close()
        self._process = None
        if self._audio_file is not None:
            self._audio_file.close()
            self._audio_file = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        for path in self._temp_paths:
            path.unlink(missing_ok=True)
        self._temp_paths.clear()

    def _run(self, command: list[str], what: str) -> None:
        timeout_s = self._finish_timeout_s()
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:  # run() kills it before raising
            raise EncodingFailed(
                f"ffmpeg hung while {what} (no end within {timeout_s:g} s) and was stopped"
            ) from None
        if done.returncode != 0:
            tail = _stderr_tail(done.stderr)
            if ffmpeg_watch.is_disk_full(None, tail, self.out_path.parent):
                raise EncodingFailed(*ffmpeg_watch.disk_full_message(self.out_path.parent))
            raise EncodingFailed(f"ffmpeg failed while {what}: {tail}")

    def _video_command(self, video_path: Path) -> list[str]:
        import ffmpeg

        stream = ffmpeg.input(
            "pipe:",
            format="rawvideo",
            pix_fmt="bgr24",
            s=f"{self.encoded_width}x{self.encoded_height}",
            framerate=self.fps,
        )
        stream = stream.filter("scale", out_color_matrix="bt709", out_range="tv")
        stream = ffmpeg.output(
            stream,
            str(video_path),
            format="mp4",
            vcodec="libx264",
            pix_fmt="yuv420p",
            preset=self.preset,
            crf=self.crf,
            r=self.fps,
            **{
                "profile:v": "high",
                "colorspace": "bt709",
                "color_primaries": "bt709",
                "color_trc": "bt709",
                "color_range": "tv",
            },
        )
        return stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(
            cmd=self._ffmpeg, overwrite_output=True
        )

    def _mux_command(self, final_path: Path) -> list[str]:
        import ffmpeg

        video = ffmpeg.input(str(self._video_path)).video
        common = {"vcodec": "copy", "format": "mp4", "movflags": "+faststart"}
        if self._audio_path is None:
            stream = ffmpeg.output(video, str(final_path), **common)
        else:
            audio = ffmpeg.input(str(self._audio_path)).audio
            audio = audio.filter("atrim", end_sample=self._fitted_audio_samples())
            stream = ffmpeg.output(
                video,
                audio,
                str(final_path),
                acodec="aac",
                audio_bitrate=AAC_BITRATE,
                ar=AAC_SAMPLE_RATE_HZ,
                ac=1,
                **common,
            )
        return stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(
            cmd=self._ffmpeg, overwrite_output=True
        )


def write_mp4(
    frames: Iterable[np.ndarray],
    audio: AudioChunk | None,
    out_path: Path | str,
    fps: int = FRAME_RATE_FPS,
    progress: Callable[[int], None] | None = None,
) -> WrittenMp4:
    """Encode lazily produced BGR frames plus `audio`; the frame size is taken from the first frame.

    `progress(frames_written)` is called after each frame. The destination is checked before the
    first frame is pulled, so a bad path fails before any rendering work.
    """
    find_ffmpeg()
    check_output_path(Path(out_path))
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise InputError(f"no video frames to write to {out_path}", "the audio is probably empty")
    height, width = first.shape[:2]
    with Mp4Writer(out_path, width, height, fps=fps, audio=audio) as writer:
        writer.write(first)
        if progress is not None:
            progress(1)
        for frame in iterator:
            writer.write(frame)
            if progress is not None:
                progress(writer.frame_count)
    return writer.result
