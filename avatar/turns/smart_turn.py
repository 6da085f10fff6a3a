"""Semantic end of turn: Smart Turn v3.2 says whether a pause ends the user's turn.

Why a model: people pause 300-500 ms inside a sentence ("ask not ... what your country"), so a
fixed silence rule must wait longer than that before every reply. Smart Turn listens to the last
seconds of the user's voice (words, intonation, a trailing "and ...") and answers "complete" or
"incomplete" after a short silence; a complete turn ends at once, an incomplete one keeps the
turn open up to a longer fallback silence (see `avatar.turns.turn_detector`).

The model: Smart Turn v3.2 CPU (pipecat-ai, BSD-2-Clause; 8.7 MB int8 ONNX; 23 languages including
English and Mandarin), shipped inside the `pipecat-ai` wheel. It is found through that
distribution's file list (`importlib.metadata`), never by importing pipecat: pipecat's own
requirements conflict with ours (protobuf < 7, soxr 1.0) and pull in numba and openai, so the
wheel is installed with `--no-deps` (`INSTALL_COMMAND`); only its data file is used. Nothing
downloads.

How the model is fed (pipecat's `LocalSmartTurnAnalyzerV3` and its vendored Whisper feature
extractor, `transformers.WhisperFeatureExtractor(chunk_length=8)`):
- 16 kHz mono; the audio of the current turn from 0.5 s before speech began up to now, including
  the silence heard so far; the last 8 s of it, left-padded with zeros to exactly 8 s;
- the waveform normalised to zero mean and unit variance (over the padded 8 s);
- a 400-point STFT (periodic Hann window, hop 160, centred with reflect padding), power
  spectrum, 80 Slaney mel filters over 0-8 kHz, log10 floored at 1e-10, the last frame dropped
  (800 frames), clamped to 8 below the maximum, then (x + 4) / 4;
- input `input_features` (1, 80, 800) float32; output: the sigmoid probability that the turn
  is complete. pipecat calls it complete above 0.5.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import AudioChunk, TurnPrediction, TurnVerdict

MODEL_SAMPLE_RATE_HZ = 16000
WINDOW_S = 8  # the model hears at most the last 8 s
WINDOW_SAMPLES = WINDOW_S * MODEL_SAMPLE_RATE_HZ
PRE_SPEECH_S = 0.5  # audio kept before the turn's speech onset, as pipecat does
N_FFT = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
N_MELS = 80
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest bin (80 dB)
NORM_EPSILON = 1e-7
# --turn: "smart" asks this model (or fails with the fix), "silence" keeps the fixed rule, "auto"
# (the default) is "smart" where the model is installed and says so in the log where it is not.
TURN_RULES = ("auto", "smart", "silence")
log = logging.getLogger("avatar.turns")

DISTRIBUTION = "pipecat-ai"
PIPECAT_VERSION = "1.14.0"  # the wheel whose model file was measured (docs/measurements/turn_taking.md)
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
INSTALL_COMMAND = f"pip install --no-deps {DISTRIBUTION}=={PIPECAT_VERSION}"


def bundled_model_path() -> Path:
    """The ONNX file inside the installed `pipecat-ai` wheel, found from its file list."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as error:
        raise EngineUnavailable(
            "Smart Turn needs the pipecat-ai wheel (it carries the model), which is not installed",
            INSTALL_COMMAND,
        ) from error
    for entry in distribution.files or ():
        if str(entry).replace("\\", "/") == MODEL_FILE:
            path = Path(str(distribution.locate_file(entry)))
            if path.is_file():
                return path
    raise EngineUnavailable(
        f"pipecat-ai {distribution.version} has no {MODEL_FILE}", f"reinstall: {INSTALL_COMMAND}"
    )


def decision_window(pcm: np.ndarray) -> np.ndarray:
    """The last `WINDOW_S` seconds of 16 kHz audio, left-padded with zeros to exactly that long."""
    pcm = np.asarray(pcm, np.float32).reshape(-1)
    if len(pcm) >= WINDOW_SAMPLES:
        return pcm[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - len(pcm), np.float32), pcm])


@cache
def _mel_filters() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) Slaney-scale, area-normalised triangles over 0-8 kHz."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:  # linear below 1 kHz, logarithmic above
        hz = np.asarray(hz, np.float64)
        log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
        return np.where(hz >= 1000.0, log_part, 3.0 * hz / 200.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= 15.0, 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0)), 200.0 * mel / 3.0)

    edges_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(MODEL_SAMPLE_RATE_HZ / 2), N_MELS + 2))
    bins_hz = np.linspace(0, MODEL_SAMPLE_RATE_HZ // 2, N_FFT // 2 + 1)
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bins_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bins_hz[:, None]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))  # equal area per filter (Slaney norm)


def log_mel_features(window: np.ndarray) -> np.ndarray:
    """Whisper-style log-mel features (N_MELS, 800) of an 8 s window at 16 kHz (see module doc)."""
    x = np.asarray(window, np.float32).reshape(-1)
    if len(x) != WINDOW_SAMPLES:
        raise ValueError(f"expected {WINDOW_SAMPLES} samples (use decision_window), got {len(x)}")
    x = (x - x.mean()) / np.sqrt(x.var() + NORM_EPSILON)  # in float32, as the reference does
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_SAMPLES]  # (801, 400)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2  # (801, 201)
    log_mel = np.log10(np.maximum(power @ _mel_filters(), LOG_FLOOR)).T[:, :-1]  # (80, 800)
    log_mel = np.maximum(log_mel, log_mel.max() - DYNAMIC_RANGE)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)


@dataclass(frozen=True)
class TurnThresholds:
    """What a probability of "complete" means for the turn: above `complete_above` it ends at once,
    above `unsure_above` as the silence rule would end it, below only after the fallback."""

    complete_above: float
    unsure_above: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.unsure_above <= self.complete_above <= 1.0:
            raise InputError(
                f"need 0 <= unsure threshold ({self.unsure_above:g}) <= turn threshold "
                f"({self.complete_above:g}) <= 1",
                "e.g. --turn-unsure-threshold 0.2 --turn-threshold 0.5",
            )


# Per language, because the model's probabilities are not comparable across languages: on our
# recordings Smart Turn scores Mandarin pauses inside a sentence about as high as English sentence
# ends (docs/measurements/turn_taking.md). Tuned on half of the measured pauses, checked on the
# other half; a language not listed (or not yet known in a session) gets the cautious blend of
# them (`SmartTurnModel.thresholds_for`). English ends at once above 0.97, not the tuner's 0.99:
# on the measured pauses both cut speakers off exactly as often (16.1 % / 16.4 % on the two
# halves), the narrated test clips end below either, and spoken questions ("What are your opening
# hours?" 0.988, "Where is your shop?" 0.984) end at once instead of after the 500 ms silence
# (bench/turn_taking.py --sweep-en, docs/measurements/turn_taking.md).
CALIBRATED_THRESHOLDS: dict[str, TurnThresholds] = {
    "en": TurnThresholds(complete_above=0.97, unsure_above=0.1),
    "zh": TurnThresholds(complete_above=0.97, unsure_above=0.95),
    # A session's first turn, before its language is known (or a language not listed): end at
    # once only above 0.99, wait for the fallback only below 0.1. The blend of the two rows
    # above would end at 0.97, which cut Mandarin speakers off in 38 % of pauses (the silence
    # rule: 29 %); at 0.99 it is 22 % (docs/measurements/turn_taking.md).
    "": TurnThresholds(complete_above=0.99, unsure_above=0.1),
}


class SmartTurnModel:
    """The loaded ONNX session: stateless and thread-safe, so one per process serves every session.

    `thresholds`: one `TurnThresholds` for every language, or per language code ("en", "zh");
    default `CALIBRATED_THRESHOLDS`."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        thresholds: TurnThresholds | dict[str, TurnThresholds] | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        if thresholds is None:
            thresholds = CALIBRATED_THRESHOLDS
        self.thresholds = {"": thresholds} if isinstance(thresholds, TurnThresholds) else dict(thresholds)
        self._session = None

    def load(self) -> SmartTurnModel:
        """Blocking (~0.1 s): open the model with one thread per call.

        One intra-op thread: a decision is ~60 ms on one core, and on a 2-core server the other
        core is rendering the reply that the decision is about to release."""
        if self._session is not None:
            return self
        try:
            import onnxruntime
        except ImportError as error:
            raise EngineUnavailable(
                "onnxruntime is not installed (needed by Smart Turn)", "pip install '.[live]'"
            ) from error
        path = self.model_path or bundled_model_path()
        if not path.is_file():
            raise EngineUnavailable(f"Smart Turn model not found: {path}", INSTALL_COMMAND)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.model_path = path
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return self

    def predict(self, audio: AudioChunk, language: str | None = None) -> TurnPrediction:
        """Blocking: has the speaker of `audio` (the turn so far, ending now) finished?
        `language` (as the recogniser names it) picks the thresholds."""
        started = time.perf_counter()
        if self._session is None:
            self.load()
        pcm = np.asarray(audio.pcm, np.float32).reshape(-1)
        if audio.sample_rate_hz != MODEL_SAMPLE_RATE_HZ:
            from avatar.core.audio_io import resample

            pcm = resample(pcm, audio.sample_rate_hz, MODEL_SAMPLE_RATE_HZ)
        features = log_mel_features(decision_window(pcm))[None]
        (output,) = self._session.run(None, {"input_features": features})
        probability = float(np.asarray(output).reshape(-1)[0])
        verdict = self.verdict(probability, language)
        return TurnPrediction(probability, verdict, (time.perf_counter() - started) * 1000.0)

    def thresholds_for(self, language: str | None) -> TurnThresholds:
        """The language's thresholds. For another language, or before the session knows which:
        end at once only where every known language would, and wait for the fallback only where
        every one would; in between, wait as the silence rule does."""
        code = (language or "").lower().replace("_", "-").split("-")[0]
        if code in self.thresholds:
            return self.thresholds[code]
        if "" in self.thresholds:
            return self.thresholds[""]
        known = self.thresholds.values()
        return TurnThresholds(max(t.complete_above for t in known), min(t.unsure_above for t in known))

    def verdict(self, probability: float, language: str | None = None) -> TurnVerdict:
        thresholds = self.thresholds_for(language)
        if probability > thresholds.complete_above:
            return "complete"
        if probability > thresholds.unsure_above:
            return "unsure"
        return "incomplete"


def load_turn_model(
    rule: str = "auto", threshold: float | None = None, unsure_threshold: float | None = None
) -> SmartTurnModel | None:
    """Blocking: the process's turn model for `--turn RULE`, or None for the silence rule.
    `threshold` / `unsure_threshold` replace the calibrated ones for every language."""
    if rule not in TURN_RULES:
        raise InputError(f"unknown turn rule {rule!r}", f"use one of {', '.join(TURN_RULES)}")
    if rule == "silence":
        return None
    thresholds = overridden_thresholds(threshold, unsure_threshold)
    try:
        return SmartTurnModel(thresholds=thresholds).load()
    except EngineUnavailable as error:
        if rule == "smart":
            raise
        log.warning("end of turn: the fixed silence rule, because %s (fix: %s)", error.message, error.hint)
        return None


def overridden_thresholds(
    threshold: float | None, unsure_threshold: float | None
) -> dict[str, TurnThresholds]:
    """The calibrated thresholds with the given ones in place, in every language."""
    table = {}
    for language, calibrated in CALIBRATED_THRESHOLDS.items():
        complete = calibrated.complete_above if threshold is None else threshold
        unsure = calibrated.unsure_above if unsure_threshold is None else unsure_threshold
        table[language] = TurnThresholds(complete, min(unsure, complete))
    return table


def describe_turn_rule(
    model: SmartTurnModel | None, check_ms: float, fallback_ms: float, silence_ms: float
) -> str:
    """One line for the start-up log and /health: which rule ends the user's turns."""
    if model is None:
        return f"silence: the turn ends after {silence_ms:.0f} ms of silence"
    levels = "; ".join(
        f"{language or 'any'}: p>{t.complete_above:g} at once, p>{t.unsure_above:g} after {silence_ms:.0f} ms"
        for language, t in sorted(model.thresholds.items())
    )
    return f"smart-turn v3.2: asked after {check_ms:.0f} ms of silence ({levels}; else after {fallback_ms:.0f} ms)"


def turn_audio_start(speech_start_sample: int, sample_rate_hz: int = MODEL_SAMPLE_RATE_HZ) -> int:
    """Where the audio given to the model starts: `PRE_SPEECH_S` before the turn's speech onset."""
    return max(speech_start_sample - round(PRE_SPEECH_S * sample_rate_hz), 0)
