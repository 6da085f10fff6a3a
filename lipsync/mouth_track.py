"""Per-frame mouth parameters from audio, and from phoneme timing when the TTS gives it.

Both paths are zero-phase (centred windows, symmetric smoothing), so the mouth never lags the
sound; the lips still anticipate vowels because phoneme shapes are blended across boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.core.types import PhonemeTiming
from lipsync.audio_features import FrameFeatures
from lipsync.visemes import REST, Viseme, viseme_for_phoneme, visemes_for_pinyin

FINE_RATE_HZ = 200  # resolution of the phoneme timeline before sampling at the video rate
ANTICIPATION_S = 0.03
SPEECH_RANGE_DB = 30.0  # below the recording's loud-speech level by this much = mouth closed
GATE_DB = 36.0  # frames this far below loud speech (or under -50 dBFS) are silence


@dataclass(frozen=True)
class MouthTrack:
    """One value per frame for each mouth control, all in 0..1."""

    open: np.ndarray
    wide: np.ndarray
    round: np.ndarray
    press: np.ndarray
    teeth: np.ndarray


def _smooth3(x: np.ndarray) -> np.ndarray:
    if len(x) < 3:
        return x
    padded = np.pad(x, 1, mode="edge")
    return 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]


def _gaussian_smooth(x: np.ndarray, sigma_samples: float) -> np.ndarray:
    radius = max(1, int(3 * sigma_samples))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_samples) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(x, radius, mode="edge"), kernel, mode="valid")


def loudness_openness(features: FrameFeatures) -> np.ndarray:
    """0..1 loudness relative to this recording's own speech level; exactly 0 in silence."""
    level = features.level_db
    env = np.clip((level - (features.reference_db - SPEECH_RANGE_DB)) / SPEECH_RANGE_DB, 0.0, 1.0)
    silent = (level < features.reference_db - GATE_DB) | (level < -50.0)
    return np.where(silent, 0.0, env).astype(np.float32)


def track_from_audio(features: FrameFeatures) -> MouthTrack:
    """Loudness drives the jaw, the spectral centroid spreads (bright s/i) or rounds (dark o/u) the lips."""
    env = loudness_openness(features)
    opening = _smooth3(env**1.3)
    voiced = features.centroid_hz > 0
    if voiced.sum() > 3:
        log_c = np.log(np.maximum(features.centroid_hz, 1.0))
        z = (log_c - np.median(log_c[voiced])) / (np.std(log_c[voiced]) + 1e-6)
    else:
        z = np.zeros_like(env)
    wide = _smooth3(np.clip(0.35 * z, 0, 0.6) * (opening > 0.03))
    round_ = _smooth3(np.clip(-0.35 * z, 0, 0.6) * (opening > 0.03))
    zero = np.zeros_like(opening)
    return MouthTrack(opening.astype(np.float32), wide, round_, zero, zero)


def _is_pinyin(symbol: str) -> bool:
    return len(symbol) > 1 and symbol.isascii() and symbol.rstrip("012345").isalpha()


def _phoneme_timeline(phonemes: tuple[PhonemeTiming, ...], duration_s: float) -> np.ndarray:
    """(n, 5) viseme parameters sampled at FINE_RATE_HZ; word gaps keep the previous shape."""
    n = int(np.ceil(duration_s * FINE_RATE_HZ)) + 1
    values = np.tile(np.array([REST.open, REST.wide, REST.round, REST.press, REST.teeth], np.float32), (n, 1))

    def put(v: Viseme, start_s: float, end_s: float) -> None:
        a, b = int(round(start_s * FINE_RATE_HZ)), int(round(end_s * FINE_RATE_HZ))
        values[max(a, 0) : max(b, a + 1)] = (v.open, v.wide, v.round, v.press, v.teeth)

    previous = REST
    for ph in phonemes:
        if _is_pinyin(ph.phoneme):
            onset, nucleus = visemes_for_pinyin(ph.phoneme)
            split = ph.start_s + 0.3 * (ph.end_s - ph.start_s)
            put(onset, ph.start_s, split)
            put(nucleus, split, ph.end_s)
            previous = nucleus
            continue
        viseme = viseme_for_phoneme(ph.phoneme)
        if viseme is None:  # stress marks and word gaps
            viseme = previous
        put(viseme, ph.start_s, ph.end_s)
        previous = viseme
    return values


def track_from_phonemes(phonemes: tuple[PhonemeTiming, ...], features: FrameFeatures, fps: int) -> MouthTrack:
    """Viseme targets blended across boundaries (co-articulation), scaled by loudness and gated in silence."""
    n_frames = features.frame_count
    duration_s = n_frames / fps
    fine = _phoneme_timeline(phonemes, duration_s)
    smoothed = np.stack(
        [
            _gaussian_smooth(fine[:, 0], 0.035 * FINE_RATE_HZ),
            _gaussian_smooth(fine[:, 1], 0.04 * FINE_RATE_HZ),
            _gaussian_smooth(fine[:, 2], 0.04 * FINE_RATE_HZ),
            _gaussian_smooth(fine[:, 3], 0.018 * FINE_RATE_HZ),
            _gaussian_smooth(fine[:, 4], 0.025 * FINE_RATE_HZ),
        ],
        axis=1,
    )
    # Lips move slightly before the sound they shape (articulation leads acoustics), so each
    # frame shows the shape due a little after its centre.
    centres_s = (np.arange(n_frames) + 0.5) / fps + ANTICIPATION_S
    centres = np.minimum((centres_s * FINE_RATE_HZ).astype(int), len(smoothed) - 1)
    at_frames = smoothed[centres]
    env = loudness_openness(features)
    speaking = _smooth3((env > 0).astype(np.float32))
    opening = at_frames[:, 0] * (0.45 + 0.55 * env) * (1.0 - at_frames[:, 3]) * speaking
    return MouthTrack(
        opening.astype(np.float32),
        (at_frames[:, 1] * speaking).astype(np.float32),
        (at_frames[:, 2] * speaking).astype(np.float32),
        at_frames[:, 3].astype(np.float32),
        (at_frames[:, 4] * speaking).astype(np.float32),
    )
