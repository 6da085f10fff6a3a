"""Audio file input and output: any container or codec in, mono float32 at one rate out.

Every engine downstream wants something different (Whisper 16 kHz, Piper 22.05 kHz, the A/V
clock 16 kHz) and users hand us whatever they recorded: stereo 44.1 kHz FLAC, 24-bit WAV, MP3,
the audio track of a video, float WAVs that overshoot full scale. Decoding goes through PyAV
(FFmpeg), which reads all of these, so the rest of the code only ever sees `AudioChunk`.

Bad files end as one-line `InputError`s that name the file and say what to do, because the most
common user mistake is handing over the wrong file, not a broken one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk

# Peak below this counts as "no sound": -50 dBFS is well under room noise of a real recording
# (typically -60..-40 dBFS RMS, with speech peaks near -6 dBFS) yet above dither and codec noise.
SILENCE_PEAK_DBFS = -50.0
_SILENCE_PEAK = 10.0 ** (SILENCE_PEAK_DBFS / 20.0)


def load_audio(path: str | Path, sample_rate_hz: int = 16000, *, allow_silence: bool = False) -> AudioChunk:
    """Decode the first audio stream of `path` to mono float32 at `sample_rate_hz`.

    Channels are averaged (not summed) so a stereo file that peaks at full scale stays in range;
    float samples above full scale are clipped to [-1, 1] because every consumer assumes it.
    A silent file is an error unless `allow_silence`, since lip-sync or ASR on silence quietly
    produces a still face or an empty transcript and the user never learns why.
    """
    if sample_rate_hz <= 0:
        raise InputError(f"sample rate must be positive, got {sample_rate_hz} Hz")
    path = Path(path)
    if not path.exists():
        raise InputError(f"audio file not found: {path}", "check the path and file name")
    if not path.is_file():
        raise InputError(f"not a file: {path}", "pass the path of an audio file")
    if path.stat().st_size == 0:
        raise InputError(f"audio file is empty (0 bytes): {path}", "record or export it again")
    channels, source_rate_hz = _decode_channels(path)
    if channels.shape[1] == 0:
        raise InputError(f"audio file is empty (0 samples): {path}", "record or export it again")
    mono = channels.mean(axis=0, dtype=np.float64).astype(np.float32)
    mono = resample(mono, source_rate_hz, sample_rate_hz)
    np.clip(mono, -1.0, 1.0, out=mono)
    if len(mono) == 0:
        raise InputError(f"audio file is too short to use: {path}", "record a longer sample")
    if not allow_silence and float(np.max(np.abs(mono))) < _SILENCE_PEAK:
        raise InputError(
            f"audio file contains only silence (peak below {SILENCE_PEAK_DBFS:.0f} dBFS): {path}",
            "check the microphone or pick another file",
        )
    return AudioChunk(pcm=mono, sample_rate_hz=sample_rate_hz)


def _decode_channels(path: Path) -> tuple[np.ndarray, int]:
    """Decode every channel to float32, shape (channels, samples), at the file's own rate."""
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise InputError(
            f"cannot read {path} as audio ({_short_reason(error)})",
            "the file is not audio or is damaged; export it again as WAV, FLAC or MP3",
        ) from error
    with container:
        if not container.streams.audio:
            raise InputError(
                f"{path} is not an audio file (no audio stream found)",
                "pass a file that contains sound: WAV, FLAC, MP3, OGG or a video with sound",
            )
        stream = container.streams.audio[0]
        blocks: list[np.ndarray] = []
        source_rate_hz = stream.rate or stream.codec_context.sample_rate
        try:
            # Planar float keeps the file's layout and rate: only the sample format changes, so
            # 16/24/32-bit integers become [-1, 1] floats and float files keep values above 1.0.
            converter = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                source_rate_hz = frame.sample_rate
                for converted in converter.resample(frame):
                    blocks.append(converted.to_ndarray())
            for converted in converter.resample(None):
                blocks.append(converted.to_ndarray())
        except av.error.FFmpegError as error:
            raise InputError(
                f"audio in {path} is corrupt ({_short_reason(error)})",
                "export or download the file again",
            ) from error
        # FFmpeg skips undecodable packets quietly; a header that promises sound followed by
        # nothing decodable is a damaged file, not an empty recording.
        promised = bool(stream.duration) or bool(container.duration)
        if promised and sum(block.shape[1] for block in blocks) == 0:
            raise InputError(
                f"audio in {path} is corrupt (no decodable frames)",
                "export or download the file again",
            )
    if not blocks:
        return np.zeros((1, 0), dtype=np.float32), int(source_rate_hz or 1)
    return np.concatenate(blocks, axis=1).astype(np.float32, copy=False), int(source_rate_hz)


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
