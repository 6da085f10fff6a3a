"""Audio file input and output: any container or codec in, mono float32 at one rate out.

Every engine downstream wants something different (Whisper 16 kHz, Piper 22.05 kHz, the A/V
clock 16 kHz) and users hand us whatever they recorded: stereo 44.1 kHz FLAC, 24-bit WAV, MP3,
the audio track of a video, float WAVs that overshoot full scale. Decoding goes through PyAV
(FFmpeg), which reads all of these, so the rest of the code only ever sees `AudioChunk`.

Bad files end as one-line `InputError`s that name the file and say what to do, because the most
common user mistake is handing over the wrong file, not a broken one. Length is no longer a
reason to run out of memory: `probe_audio` reads the duration from the container before anything
is decoded, `iter_audio` decodes an hour-long recording block by block, and `load_audio` holds
only its result (mono at the requested rate), never the file's own channels and rate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk

# Peak below this counts as "no sound": -50 dBFS is well under room noise of a real recording
# (typically -60..-40 dBFS RMS, with speech peaks near -6 dBFS) yet above dither and codec noise.
SILENCE_PEAK_DBFS = -50.0
_SILENCE_PEAK = 10.0 ** (SILENCE_PEAK_DBFS / 20.0)


@dataclass(frozen=True)
class AudioInfo:
    """What a file's container says about its first audio stream, read from the header only."""

    duration_s: float | None  # None when the container does not say (raw streams, some pipes)
    sample_rate_hz: int
    channels: int
    codec: str


def probe_audio(path: str | Path) -> AudioInfo:
    """The container's description of the sound in `path`, without decoding it.

    Why: an hour of 48 kHz stereo is 1.4 GB once decoded; the duration in the header lets a caller
    refuse a file that is too long, or plan a long job, before a single sample is decoded.
    """
    path = _checked_file(path)
    with _open_container(path) as container:
        stream = _audio_stream(container, path)
        return _stream_info(container, stream)


def check_audio_duration(path: str | Path, max_duration_s: float) -> AudioInfo:
    """The header's description of `path`, or a one-line InputError when it says the sound runs
    longer than `max_duration_s` (or the file is not audio), before anything is decoded."""
    info = probe_audio(path)
    _check_duration(Path(path), info.duration_s, max_duration_s)
    return info


def iter_audio(
    path: str | Path,
    sample_rate_hz: int = 16000,
    *,
    block_s: float = 10.0,
    max_duration_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Decode `path` as mono float32 at `sample_rate_hz` in blocks of about `block_s` seconds.

    Memory is one block whatever the file's length, which is what lets an hour-long recording be
    lip-synced. Blocks are the same samples `load_audio` returns, in order: channels averaged,
    resampled with one continuous resampler (no seams), clipped to [-1, 1]; the total length is
    round(source samples * rate / source rate). `max_duration_s` is checked against the header
    before decoding and again against what is decoded (a header may lie or say nothing).
    """
    if sample_rate_hz <= 0:
        raise InputError(f"sample rate must be positive, got {sample_rate_hz} Hz")
    path = _checked_file(path)
    with _open_container(path) as container:
        stream = _audio_stream(container, path)
        info = _stream_info(container, stream)
        _check_duration(path, info.duration_s, max_duration_s)
        mono = _MonoResampler(sample_rate_hz)
        block_samples = max(1, int(block_s * sample_rate_hz))
        pending: list[np.ndarray] = []
        pending_samples = 0
        for source in _batched(_decoded_mono(container, stream, path)):
            for piece in mono.feed(*source):
                pending.append(piece)
                pending_samples += len(piece)
            if max_duration_s is not None and mono.source_duration_s > max_duration_s:
                _check_duration(path, mono.source_duration_s, max_duration_s)
            if pending_samples >= block_samples:
                block = np.concatenate(pending)
                pending, pending_samples = [block[block_samples:]], len(block) - block_samples
                yield _clipped(block[:block_samples])
        pending.append(mono.finish())
        tail = np.concatenate(pending)
        if len(tail):
            yield _clipped(tail)


def audio_has_sound(path: str | Path, *, max_duration_s: float | None = None) -> bool:
    """Whether any sample of `path` peaks above -50 dBFS; stops at the first one that does.

    A recording of speech answers within its first second; only a silent file is decoded to the
    end, one packet at a time, so even hours of silence are refused in bounded memory.
    """
    path = _checked_file(path)
    with _open_container(path) as container:
        stream = _audio_stream(container, path)
        _check_duration(path, _stream_info(container, stream).duration_s, max_duration_s)
        for mono, _ in _decoded_mono(container, stream, path):
            if len(mono) and float(np.max(np.abs(mono))) >= _SILENCE_PEAK:
                return True
    return False


def load_audio(
    path: str | Path,
    sample_rate_hz: int = 16000,
    *,
    allow_silence: bool = False,
    max_duration_s: float | None = None,
) -> AudioChunk:
    """Decode the first audio stream of `path` to mono float32 at `sample_rate_hz`.

    Channels are averaged (not summed) so a stereo file that peaks at full scale stays in range;
    float samples above full scale are clipped to [-1, 1] because every consumer assumes it.
    A silent file is an error unless `allow_silence`, since lip-sync or ASR on silence quietly
    produces a still face or an empty transcript and the user never learns why. Only the result
    is held in memory (decoding streams block by block); `max_duration_s` refuses a longer file
    from its header, before decoding.
    """
    blocks = list(iter_audio(path, sample_rate_hz, max_duration_s=max_duration_s))
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if not blocks:
        raise InputError(f"audio file is empty (0 samples): {path}", "record or export it again")
    if len(mono) == 0:
        raise InputError(f"audio file is too short to use: {path}", "record a longer sample")
    if not allow_silence and float(np.max(np.abs(mono))) < _SILENCE_PEAK:
        raise InputError(
            f"audio file contains only silence (peak below {SILENCE_PEAK_DBFS:.0f} dBFS): {path}",
            "check the microphone or pick another file",
        )
    return AudioChunk(pcm=mono, sample_rate_hz=sample_rate_hz)


def _checked_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"audio file not found: {path}", "check the path and file name")
    if not path.is_file():
        raise InputError(f"not a file: {path}", "pass the path of an audio file")
    if path.stat().st_size == 0:
        raise InputError(f"audio file is empty (0 bytes): {path}", "record or export it again")
    return path


@contextlib.contextmanager
def _open_container(path: Path):
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise InputError(
            f"cannot read {path} as audio ({_short_reason(error)})",
            "the file is not audio or is damaged; export it again as WAV, FLAC or MP3",
        ) from error
    with container:
        yield container


def _audio_stream(container, path: Path):
    if not container.streams.audio:
        raise InputError(
            f"{path} is not an audio file (no audio stream found)",
            "pass a file that contains sound: WAV, FLAC, MP3, OGG or a video with sound",
        )
    return container.streams.audio[0]


def _stream_info(container, stream) -> AudioInfo:
    duration_s = None
    if stream.duration and stream.time_base:
        duration_s = float(stream.duration * stream.time_base)
    elif container.duration:
        duration_s = container.duration / 1_000_000  # AV_TIME_BASE
    rate_hz = int(stream.rate or stream.codec_context.sample_rate or 0)
    return AudioInfo(duration_s, rate_hz, int(stream.channels or 0), str(stream.codec_context.name))


def _check_duration(path: Path, duration_s: float | None, max_duration_s: float | None) -> None:
    if max_duration_s is None or duration_s is None or duration_s <= max_duration_s:
        return
    raise InputError(
        f"{path.name} is {_readable_duration(duration_s)} long, more than the "
        f"{_readable_duration(max_duration_s)} this accepts",
        "cut it into shorter parts (e.g. ffmpeg -ss START -t LENGTH)",
    )


def _readable_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _decoded_mono(container, stream, path: Path) -> Iterator[tuple[np.ndarray, int]]:
    """(mono float32 at the file's own rate, that rate) per decoded frame.

    Planar float keeps the file's layout and rate: only the sample format changes, so 16/24/32-bit
    integers become [-1, 1] floats and float files keep values above 1.0 until the final clip.
    """
    import av

    converter = av.AudioResampler(format="fltp")
    decoded_any = False
    try:
        for frame in container.decode(stream):
            for converted in converter.resample(frame):
                decoded_any = decoded_any or converted.samples > 0
                yield _average(converted.to_ndarray()), int(frame.sample_rate)
        for converted in converter.resample(None):
            yield _average(converted.to_ndarray()), int(converted.sample_rate)
    except av.error.FFmpegError as error:
        raise InputError(
            f"audio in {path} is corrupt ({_short_reason(error)})",
            "export or download the file again",
        ) from error
    # FFmpeg skips undecodable packets quietly; a header that promises sound followed by
    # nothing decodable is a damaged file, not an empty recording.
    if not decoded_any and (bool(stream.duration) or bool(container.duration)):
        raise InputError(
            f"audio in {path} is corrupt (no decodable frames)", "export or download the file again"
        )


def _batched(
    frames: Iterator[tuple[np.ndarray, int]], min_samples: int = 16384
) -> Iterator[tuple[np.ndarray, int]]:
    """Decoded frames (20-90 ms each) joined into pieces of at least `min_samples` at one rate:
    the resampler's per-call overhead then counts once per ~0.5 s instead of once per packet."""
    pieces: list[np.ndarray] = []
    count, rate_hz = 0, None
    for pcm, frame_rate_hz in frames:
        if pieces and frame_rate_hz != rate_hz:
            yield np.concatenate(pieces), rate_hz
            pieces, count = [], 0
        pieces.append(pcm)
        count += len(pcm)
        rate_hz = frame_rate_hz
        if count >= min_samples:
            yield np.concatenate(pieces), rate_hz
            pieces, count = [], 0
    if pieces:
        yield np.concatenate(pieces), rate_hz


def _average(channels: np.ndarray) -> np.ndarray:
    return channels.mean(axis=0, dtype=np.float64).astype(np.float32)


def _clipped(block: np.ndarray) -> np.ndarray:
    return np.clip(block, -1.0, 1.0, out=block)


class _MonoResampler:
    """swresample fed frame by frame: the same samples as one `resample` call on the whole signal.

    The exact length (round(n * to / from), like `resample`) is kept by holding back a short tail
    until `finish`, where it is padded or trimmed.
    """

    HOLD_BACK_SAMPLES = 4096

    def __init__(self, to_hz: int) -> None:
        self.to_hz = to_hz
        self.from_hz: int | None = None
        self._resampler = None
        self._in_samples = 0  # at the current source rate
        self._done_s = 0.0  # source time of earlier rates (a rate change mid-file)
        self._out_samples = 0
        self._held = np.zeros(0, np.float32)

    @property
    def source_duration_s(self) -> float:
        return self._done_s + (self._in_samples / self.from_hz if self.from_hz else 0.0)

    def feed(self, pcm: np.ndarray, rate_hz: int) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        if self.from_hz != rate_hz:
            if self.from_hz is not None:
                out += self._flush_resampler()
                self._done_s += self._in_samples / self.from_hz
                self._in_samples = 0
            self.from_hz = rate_hz
            self._resampler = None if rate_hz == self.to_hz else _new_resampler(self.to_hz)
        if len(pcm) == 0:
            return self._release(out)
        if self._resampler is None:
            out.append(np.ascontiguousarray(pcm, np.float32))
        else:
            out += _resample_frame(self._resampler, pcm, rate_hz, self._in_samples)
        self._in_samples += len(pcm)
        return self._release(out)

    def finish(self) -> np.ndarray:
        pieces = [self._held, *self._flush_resampler()]
        tail = np.concatenate(pieces)
        wanted = round((self._done_s + self._in_samples / (self.from_hz or 1)) * self.to_hz)
        missing = wanted - (self._out_samples + len(tail))
        if missing > 0:
            tail = np.concatenate([tail, np.zeros(missing, np.float32)])
        elif missing < 0:
            tail = tail[: max(0, len(tail) + missing)]
        self._held = np.zeros(0, np.float32)
        return tail.astype(np.float32, copy=False)

    def _flush_resampler(self) -> list[np.ndarray]:
        if self._resampler is None:
            return []
        pieces = [out.to_ndarray().reshape(-1) for out in self._resampler.resample(None)]
        self._resampler = _new_resampler(self.to_hz)
        return pieces

    def _release(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        joined = np.concatenate([self._held, *pieces]) if pieces else self._held
        keep = min(len(joined), self.HOLD_BACK_SAMPLES)
        self._held = joined[len(joined) - keep :].copy()
        released = joined[: len(joined) - keep]
        self._out_samples += len(released)
        return [released] if len(released) else []


def _new_resampler(to_hz: int):
    import av

    return av.AudioResampler(format="flt", layout="mono", rate=to_hz)


def _resample_frame(resampler, pcm: np.ndarray, from_hz: int, pts: int) -> list[np.ndarray]:
    import av

    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = from_hz
    frame.pts = pts
    frame.time_base = _fraction(1, from_hz)
    return [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]


def _short_reason(error: Exception) -> str:
    """FFmpeg messages repeat the path; keep only the reason so the message stays one line."""
    reason = getattr(error, "strerror", None) or str(error)
    return str(reason).splitlines()[0]


def resample(pcm: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample mono float32 `pcm` from `from_hz` to `to_hz` with FFmpeg's swresample.

    The output has round(len * to_hz / from_hz) samples (the resampler's delay is flushed and
    the tail padded or trimmed), so durations survive a round trip to within one sample.
    """
    if from_hz <= 0 or to_hz <= 0:
        raise InputError(f"sample rates must be positive, got {from_hz} Hz -> {to_hz} Hz")
    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    if pcm.ndim != 1:
        raise InputError(f"resample expects mono audio (1-D array), got shape {pcm.shape}")
    if from_hz == to_hz or len(pcm) == 0:
        return pcm.copy()
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_hz)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = from_hz
    frame.pts = 0
    frame.time_base = _fraction(1, from_hz)
    pieces = [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    out = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    wanted = round(len(pcm) * to_hz / from_hz)
    if len(out) < wanted:
        out = np.pad(out, (0, wanted - len(out)))
    return out[:wanted].astype(np.float32, copy=False)


def _fraction(numerator: int, denominator: int):
    from fractions import Fraction

    return Fraction(numerator, denominator)


def save_wav(path: str | Path, chunk: AudioChunk) -> Path:
    """Write `chunk` as 16-bit PCM WAV, the format every player and tool accepts."""
    import soundfile

    path = Path(path)
    if chunk.pcm.ndim != 1:
        raise InputError(f"save_wav expects mono audio, got shape {chunk.pcm.shape}")
    if not path.parent.exists():
        raise InputError(f"output folder does not exist: {path.parent}", "create it first")
    pcm = np.clip(np.asarray(chunk.pcm, dtype=np.float32), -1.0, 1.0)
    soundfile.write(str(path), pcm, int(chunk.sample_rate_hz), subtype="PCM_16", format="WAV")
    return path
