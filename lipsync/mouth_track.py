"""Per-frame mouth parameters from audio, and from phoneme timing when the TTS gives it.

Both paths are zero-phase (centred windows, symmetric smoothing), so the mouth never lags the
sound; the lips still anticipate vowels because phoneme shapes are blended across boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.core.types import PhonemeTiming
from lipsync.audio_features import FrameFeatures
from lipsync.inhalation import inhalations
from lipsync.visemes import REST, Viseme, viseme_for_phoneme, visemes_for_pinyin

FINE_RATE_HZ = 200  # resolution of the phoneme timeline before sampling at the video rate
ANTICIPATION_S = 0.03
SPEECH_RANGE_DB = 30.0  # below the recording's loud-speech level by this much = mouth closed
GATE_DB = 36.0  # frames this far below loud speech (or under -50 dBFS) are silence
SPEECH_LEAD_FRAMES = 3
PHONEME_JAW_FLOOR = 0.5  # share of the sound's jaw opening kept on a closed viseme
INHALE_OPEN = 0.9  # a breath in through the mouth opens the jaw as far as an open vowel (/a/)


@dataclass(frozen=True)
class MouthTrack:
    """One value per frame for each mouth control, all in 0..1.

    `open` is the jaw; `press` closes the lips whatever the jaw does (p, b, m mid-word)."""

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


def jaw_openness(features: FrameFeatures) -> np.ndarray:
    """0..1 jaw opening from the first-formant band's loudness, gated by the full band's silence.

    Vowels are loud below 1.2 kHz and open the jaw; fricatives (s, sh, f) are loud above it with
    the jaw nearly shut, so the low band follows a speaker's jaw better than the whole spectrum
    (on GRID: correlation with the real mouth 0.56 -> 0.69 together with the lead below)."""
    if features.low_db is None:
        return loudness_openness(features)
    low = features.low_db
    env = np.clip((low - (features.low_reference_db - SPEECH_RANGE_DB)) / SPEECH_RANGE_DB, 0.0, 1.0)
    silent = (features.level_db < features.reference_db - GATE_DB) | (features.level_db < -50.0)
    return np.where(silent, 0.0, env).astype(np.float32)


def lead_speech(opening: np.ndarray, sounding: np.ndarray, frames: int = SPEECH_LEAD_FRAMES) -> np.ndarray:
    """The mouth opens ahead of the sound it makes: each frame takes at least a fading share of
    the opening due in the next `frames` frames (on GRID the loudness-driven mouth lagged the
    real one by 1-3 frames). Only where there is sound: real speakers part their lips before the
    voice starts too, but a silent frame must show a closed mouth (the lip-sync contract)."""
    out = opening.copy()
    for j in range(1, frames + 1):
        ahead = np.concatenate([opening[j:], np.repeat(opening[-1:], min(j, len(opening)))])
        out = np.maximum(out, (1.0 - (j - 1) / (frames + 1)) * ahead)
    return np.where(sounding, out, opening)


def with_inhalations(opening: np.ndarray, features: FrameFeatures, fps: int) -> np.ndarray:
    """The jaw also opens for an audible breath taken before speech (lipsync/inhalation.py)."""
    breathing = _smooth3(inhalations(features, jaw_openness(features), fps).astype(np.float32))
    return np.maximum(opening, INHALE_OPEN * breathing)


def track_from_audio(features: FrameFeatures, fps: int) -> MouthTrack:
    """Loudness drives the jaw, the spectral centroid spreads (bright s/i) or rounds (dark o/u) the lips."""
    env = jaw_openness(features)
    opening = lead_speech(_smooth3(env**1.3), loudness_openness(features) > 0)
    voiced = features.centroid_hz > 0
    if voiced.sum() > 3:
        log_c = np.log(np.maximum(features.centroid_hz, 1.0))
        z = (log_c - np.median(log_c[voiced])) / (np.std(log_c[voiced]) + 1e-6)
    else:
        z = np.zeros_like(env)
    wide = _smooth3(np.clip(0.35 * z, 0, 0.6) * (opening > 0.03))
    round_ = _smooth3(np.clip(-0.35 * z, 0, 0.6) * (opening > 0.03))
    zero = np.zeros_like(opening)
    opening = with_inhalations(opening, features, fps)  # a neutral mouth: after the lip shapes
    return MouthTrack(opening.astype(np.float32), wide, round_, zero, zero)


def _is_pinyin(symbol: str) -> bool:
    return len(symbol) > 1 and symbol.isascii() and symbol.rstrip("012345").isalpha()


SHORT_GAP_S = 0.08  # a silence this short is a word boundary: the mouth does not close for it
LOOKAHEAD_S = 0.18  # lips take the next vowel's rounding/spread this far ahead (anticipatory coarticulation)


def _viseme_spans(phonemes: tuple[PhonemeTiming, ...]) -> list[tuple[Viseme, float, float]]:
    """(viseme, start_s, end_s) per phoneme; stress marks and short word gaps keep their neighbour's shape."""
    spans: list[tuple[Viseme, float, float]] = []
    previous = REST
    for ph in phonemes:
        if _is_pinyin(ph.phoneme) and ph.phoneme != "sil":
            onset, nucleus = visemes_for_pinyin(ph.phoneme)
            split = ph.start_s + 0.3 * (ph.end_s - ph.start_s)
            spans += [(onset, ph.start_s, split), (nucleus, split, ph.end_s)]
            previous = nucleus
            continue
        if ph.phoneme == "sil":
            viseme = previous if ph.end_s - ph.start_s < SHORT_GAP_S else REST
        else:
            viseme = viseme_for_phoneme(ph.phoneme)
            viseme = previous if viseme is None else viseme
        spans.append((viseme, ph.start_s, ph.end_s))
        previous = viseme
    return spans


def _is_vowel(v: Viseme) -> bool:
    return v.open >= 0.4 and v.press == 0.0


def _coarticulate(spans: list[tuple[Viseme, float, float]]) -> list[tuple[Viseme, float, float]]:
    """Consonants that leave the lips free take the coming vowel's rounding or spread (the lips
    round through "str" of "straw"), and the jaw stays partly open between two vowels."""
    out = []
    for k, (v, start_s, end_s) in enumerate(spans):
        if _is_vowel(v) or v.press > 0 or v.teeth > 0 or v == REST:
            out.append((v, start_s, end_s))
            continue
        ahead = next((w for w, s, _ in spans[k + 1 :] if _is_vowel(w) and s - end_s < LOOKAHEAD_S), None)
        behind = next(
            (w for w, _, e in reversed(spans[:k]) if _is_vowel(w) and start_s - e < LOOKAHEAD_S), None
        )
        round_, wide, open_ = v.round, v.wide, v.open
        if ahead is not None:
            round_ = max(round_, 0.8 * ahead.round)
            wide = max(wide, 0.5 * ahead.wide) if round_ < 0.3 else wide
        if ahead is not None and behind is not None:
            open_ = max(open_, 0.45 * min(ahead.open, behind.open))
        out.append((Viseme(open_, wide, round_, v.press, v.teeth), start_s, end_s))
    return out


def _phoneme_timeline(phonemes: tuple[PhonemeTiming, ...], duration_s: float) -> np.ndarray:
    """(n, 5) viseme parameters sampled at FINE_RATE_HZ."""
    n = int(np.ceil(duration_s * FINE_RATE_HZ)) + 1
    values = np.tile(np.array([REST.open, REST.wide, REST.round, REST.press, REST.teeth], np.float32), (n, 1))
    for v, start_s, end_s in _coarticulate(_viseme_spans(phonemes)):
        a, b = int(round(start_s * FINE_RATE_HZ)), int(round(end_s * FINE_RATE_HZ))
        values[max(a, 0) : max(b, a + 1)] = (v.open, v.wide, v.round, v.press, v.teeth)
    return values


def _per_frame(fine: np.ndarray, n_frames: int, fps: int, pool: str) -> np.ndarray:
    """Fine timeline -> one value per video frame over the frame's span, shifted by ANTICIPATION_S.

    Averaging keeps the jaw's motion; the maximum keeps a 50 ms lip closure that point sampling
    at 25 fps would step over."""
    edges_s = np.arange(n_frames + 1) / fps + ANTICIPATION_S
    edges = np.clip((edges_s * FINE_RATE_HZ).astype(int), 0, len(fine) - 1)
    out = np.empty(n_frames, np.float32)
    for k in range(n_frames):
        window = fine[edges[k] : max(edges[k + 1], edges[k] + 1)]
        out[k] = window.max() if pool == "max" else window.mean()
    return out


def track_from_phonemes(phonemes: tuple[PhonemeTiming, ...], features: FrameFeatures, fps: int) -> MouthTrack:
    """Viseme targets blended across boundaries (co-articulation), scaled by loudness and gated in silence.

    The jaw is slow (it moves as one heavy block: wide smoothing), the lips are quick (closures and
    rounding: narrow smoothing), so they are tracked separately and meet only in the opening."""
    n_frames = features.frame_count
    fine = _phoneme_timeline(phonemes, n_frames / fps)
    sigmas_s = (0.04, 0.04, 0.04, 0.015, 0.025)  # jaw, spread, round, press, teeth
    smoothed = [_gaussian_smooth(fine[:, i], s * FINE_RATE_HZ) for i, s in enumerate(sigmas_s)]
    jaw = _per_frame(smoothed[0], n_frames, fps, "mean")
    wide, round_ = (_per_frame(smoothed[i], n_frames, fps, "mean") for i in (1, 2))
    press = _per_frame(smoothed[3], n_frames, fps, "max")
    teeth = _per_frame(smoothed[4], n_frames, fps, "mean")
    env = loudness_openness(features)
    speaking = _smooth3((env > 0).astype(np.float32))
    # How far the jaw drops comes from the sound (first-formant loudness, opening ahead of the
    # voice); the phoneme shapes it: open vowels drop it fully, close vowels and consonants less.
    # The jaw keeps its opening through a closure; `press` seals the lips over it (lip_seal).
    sound_jaw = lead_speech(_smooth3(jaw_openness(features) ** 1.3), env > 0)
    opening = (
        sound_jaw * np.clip(PHONEME_JAW_FLOOR + (1 - PHONEME_JAW_FLOOR) * jaw / 0.6, 0.0, 1.1) * speaking
    )
    opening = with_inhalations(opening, features, fps)
    return MouthTrack(
        opening.astype(np.float32),
        (wide * speaking).astype(np.float32),
        (round_ * speaking).astype(np.float32),
        press.astype(np.float32),
        (teeth * speaking).astype(np.float32),
    )
