"""One WORLD analysis and resynthesis pass carrying every change a voice asks of it.

Voice matching (pitch register and range, vocal-tract length, long-term colour) and emotional
prosody (pitch level and range, speaking rate, energy, spectral tilt) both edit the same WORLD
parameters, so they are applied together: each round trip through the vocoder costs time
(real-time factor about 0.06 on two cores) and a little quality (WORLD's own buzz), and two
passes would pay both twice.

Timing: at `rate` 1 the frames map one to one onto the input and the output is cut or padded to
the input's sample count, so the phoneme timing stays valid as it is. At any other rate the
frame sequence is resampled (a pitch-preserving time stretch), the output has round(N / rate)
samples, and every phoneme time is scaled by the same factor, so the lip-sync stays on the
sound: the last phoneme ends where the audio ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from avatar.core.types import AudioChunk, PhonemeTiming, Speech
from voices.voice_analysis import WorldFeatures, import_pyworld, world_analyze

_PEAK_LIMIT = 0.99
_LIMITER_HALF_WINDOW_S = 0.005
# Spectral tilt pivots at 1 kHz (near the long-term spectral centre of speech) and stops below
# 125 Hz, so a tilt never boosts or cuts the rumble under the voice without bound.
TILT_PIVOT_HZ = 1000.0
_TILT_FLOOR_HZ = 125.0
# Bounds on the edited F0: below WORLD's analysis floor the pulses turn into creak, and above
# 800 Hz an adult voice becomes a whistle; neither is a voice change any more.
_MIN_F0_HZ = 40.0
_MAX_F0_HZ = 800.0
_DB_TO_LOG_POWER = math.log(10.0) / 10.0
_MIN_WORLD_S = 0.03  # shorter than a few analysis frames: WORLD has nothing to track


@dataclass(frozen=True)
class WorldEdit:
    """The changes to make in one pass; the defaults change nothing."""

    f0_shift_log: float = 0.0  # natural-log Hz added to every voiced frame
    f0_range_scale: float = 1.0  # log-F0 excursions around the utterance's median, scaled
    warp: float = 1.0  # spectral envelope stretched along frequency; >1 raises formants
    correction_centers_hz: tuple[float, ...] = ()  # smooth colour correction, dB at these Hz
    correction_db: tuple[float, ...] = ()
    tilt_db_per_octave: float = 0.0  # spectral slope added around 1 kHz; >0 brighter
    rate: float = 1.0  # speaking rate; >1 faster (shorter audio), pitch kept
    gain_db: float = 0.0  # RMS level against the input's


def output_sample_count(input_samples: int, rate: float) -> int:
    """Samples after a rate change: the whole utterance, stretched or squeezed."""
    return input_samples if rate == 1.0 else max(1, round(input_samples / rate))


def edit_speech(speech: Speech, edit: WorldEdit, features: WorldFeatures | None = None) -> Speech:
    """`speech` through WORLD with `edit` applied: same rate, text and language; phoneme times
    scaled with the duration. `features` saves the analysis when the caller already ran it."""
    pcm = np.asarray(speech.audio.pcm, dtype=np.float32)
    if len(pcm) == 0:
        return speech
    rate_hz = speech.audio.sample_rate_hz
    sample_count = output_sample_count(len(pcm), edit.rate)
    if len(pcm) < _MIN_WORLD_S * rate_hz or not np.any(pcm):
        # Silence or a click: nothing for the vocoder to hear, but the rate still sets the length.
        positions = np.linspace(0.0, len(pcm) - 1.0, sample_count)
        out = np.interp(positions, np.arange(len(pcm)), pcm).astype(np.float32)
    else:
        if features is None:
            features = world_analyze(speech.audio, f0_method="dio")
        out = keep_loudness(resynthesize(features, edit, sample_count), pcm, rate_hz, edit.gain_db)
    phonemes = speech.phonemes
    if sample_count != len(pcm):
        phonemes = rescale_timings(phonemes, sample_count / len(pcm))
    return replace(speech, audio=AudioChunk(pcm=out, sample_rate_hz=rate_hz), phonemes=phonemes)


def rescale_timings(phonemes: tuple[PhonemeTiming, ...], factor: float) -> tuple[PhonemeTiming, ...]:
    """Every phoneme start and end times `factor`: a uniform stretch moves them all alike."""
    return tuple(PhonemeTiming(p.phoneme, p.start_s * factor, p.end_s * factor) for p in phonemes)


def resynthesize(features: WorldFeatures, edit: WorldEdit, sample_count: int) -> np.ndarray:
    """WORLD synthesis of `features` with `edit`, exactly `sample_count` samples long (float64)."""
    pw = import_pyworld()
    rate_hz = features.sample_rate_hz
    f0 = features.f0_hz
    log_env = np.log(features.spectral_envelope + 1e-16)
    log_ap = np.log(features.aperiodicity + 1e-12)
    if edit.rate != 1.0:
        f0, log_env, log_ap = stretch_frames(f0, log_env, log_ap, _frame_positions(features, sample_count))
    f0 = edit_f0(f0, edit.f0_shift_log, edit.f0_range_scale)
    if edit.warp != 1.0:
        log_env = warp_log_envelope(log_env, edit.warp, rate_hz)
        log_ap = warp_log_envelope(log_ap, edit.warp, rate_hz)
    bins_hz = np.linspace(0.0, rate_hz / 2.0, log_env.shape[1])
    shape_db = np.zeros_like(bins_hz)
    if edit.correction_db:
        shape_db += np.interp(bins_hz, edit.correction_centers_hz, edit.correction_db)
    if edit.tilt_db_per_octave:
        shape_db += tilt_db(bins_hz, edit.tilt_db_per_octave)
    if np.any(shape_db):
        log_env = log_env + shape_db * _DB_TO_LOG_POWER
    out = pw.synthesize(
        np.ascontiguousarray(f0),
        np.ascontiguousarray(np.exp(log_env)),
        np.ascontiguousarray(np.clip(np.exp(log_ap), 0.0, 1.0)),
        rate_hz,
        features.frame_period_ms,
    )
    if len(out) < sample_count:
        out = np.pad(out, (0, sample_count - len(out)))
    return out[:sample_count]


def edit_f0(f0_hz: np.ndarray, shift_log: float, range_scale: float) -> np.ndarray:
    """Shift voiced frames by `shift_log` and scale their log excursions around the median;
    unvoiced frames (0) stay unvoiced."""
    out = np.array(f0_hz, dtype=np.float64)
    voiced = out > 0
    if not np.any(voiced) or (shift_log == 0.0 and range_scale == 1.0):
        return out
    log_f0 = np.log(out[voiced])
    centre = np.median(log_f0)
    edited = np.exp(centre + shift_log + (log_f0 - centre) * range_scale)
    out[voiced] = np.clip(edited, _MIN_F0_HZ, _MAX_F0_HZ)
    return out


def _frame_positions(features: WorldFeatures, sample_count: int) -> np.ndarray:
    """For each output frame, where it reads in the input frames (fractional index).

    Output frame j sits at j * period; it reads the input at the same fraction of the
    utterance, so the first and last frames of both line up exactly."""
    hop_samples = features.sample_rate_hz * features.frame_period_ms / 1000.0
    frames_out = int(math.ceil(max(sample_count - 1, 0) / hop_samples)) + 1
    input_samples = (len(features.f0_hz) - 1) * hop_samples
    output_samples = (frames_out - 1) * hop_samples
    scale = input_samples / output_samples if output_samples > 0 else 0.0
    return np.clip(np.arange(frames_out) * scale, 0.0, len(features.f0_hz) - 1.0)


def stretch_frames(
    f0_hz: np.ndarray, log_env: np.ndarray, log_ap: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the frame sequence at fractional `positions`: envelopes interpolate linearly (in log),
    voicing comes from the nearest frame, and a voiced frame's F0 interpolates in log along the
    voiced track (so a stretch never invents a pitch jump at a voicing edge)."""
    frames = len(f0_hz)
    if frames < 2:
        index = np.zeros(len(positions), dtype=int)
        return f0_hz[index], log_env[index], log_ap[index]
    low = np.minimum(positions.astype(int), frames - 2)
    frac = (positions - low)[:, None]
    env = log_env[low] * (1.0 - frac) + log_env[low + 1] * frac
    ap = log_ap[low] * (1.0 - frac) + log_ap[low + 1] * frac
    voiced_in = np.flatnonzero(f0_hz > 0)
    f0 = np.zeros(len(positions))
    if len(voiced_in):
        track = np.interp(np.arange(frames), voiced_in, np.log(f0_hz[voiced_in]))
        voiced_out = f0_hz[np.rint(positions).astype(int)] > 0
        f0[voiced_out] = np.exp(np.interp(positions[voiced_out], np.arange(frames), track))
    return f0, env, ap


def tilt_db(bins_hz: np.ndarray, db_per_octave: float) -> np.ndarray:
    """dB to add at each frequency for a slope of `db_per_octave` through 0 dB at 1 kHz."""
    return db_per_octave * np.log2(np.maximum(bins_hz, _TILT_FLOOR_HZ) / TILT_PIVOT_HZ)


def warp_log_envelope(log_env: np.ndarray, warp: float, rate_hz: float) -> np.ndarray:
    """Stretch (frames, bins) along frequency: new(f) = old(f / warp); >1 raises formants."""
    bins = log_env.shape[1]
    position = np.arange(bins, dtype=np.float64) / warp
    position = np.clip(position, 0.0, bins - 1.0)
    low = np.minimum(position.astype(int), bins - 2)
    frac = position - low
    return log_env[:, low] * (1.0 - frac) + log_env[:, low + 1] * frac


def keep_loudness(
    out: np.ndarray, original: np.ndarray, sample_rate_hz: int, gain_db: float = 0.0
) -> np.ndarray:
    """The input's RMS (times `gain_db`); peaks above full scale are limited locally, never clipped.

    WORLD's minimum-phase pulses at a raised F0 are peakier than the TTS output, so one global
    gain to fit the peaks would make the edited voice audibly quieter than the original.
    """
    original_rms = float(np.sqrt(np.mean(np.square(original, dtype=np.float64))))
    out_rms = float(np.sqrt(np.mean(np.square(out, dtype=np.float64))))
    if out_rms > 0:
        out = out * (original_rms * 10.0 ** (gain_db / 20.0) / out_rms)
    if float(np.max(np.abs(out), initial=0.0)) > _PEAK_LIMIT:
        out = out * _limiter_gain(out, max(1, int(sample_rate_hz * _LIMITER_HALF_WINDOW_S)))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _limiter_gain(signal: np.ndarray, half_window: int) -> np.ndarray:
    """Smooth gain <= the gain each sample needs: a min filter of half-width w, then a moving
    average of half-width w / 2, so every averaged value already saw the loudest peak nearby."""
    from numpy.lib.stride_tricks import sliding_window_view

    needed = np.minimum(1.0, _PEAK_LIMIT / np.maximum(np.abs(signal), 1e-12))
    padded = np.pad(needed, half_window, constant_values=1.0)
    floor = sliding_window_view(padded, 2 * half_window + 1).min(axis=1)
    half_average = max(1, half_window // 2)
    kernel = np.ones(2 * half_average + 1) / (2 * half_average + 1)
    return np.convolve(np.pad(floor, half_average, mode="edge"), kernel, mode="valid")
