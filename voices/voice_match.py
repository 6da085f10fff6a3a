"""DSP voice matching: move synthetic speech toward a reference voice with the WORLD vocoder.

This is honest signal processing, not neural cloning: it changes what a vocoder can change
(pitch register and range, vocal-tract length, long-term spectral colour) and leaves the
speaking style, accent and prosody of the TTS voice alone. It is the embedded-tier stand-in
for zero-shot cloning; it brings a male Piper voice a long way toward a female speaker and
only a little toward another man.

Timing is untouched by construction: WORLD frames map one-to-one to the input, and the output
is cut or padded to the exact input sample count, so a Speech's phoneme timing stays valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk, Speech, TTSChunk
from voices.voice_analysis import (
    GRID_TOP_HZ,
    VoiceAnalysis,
    WorldFeatures,
    analyze_features,
    import_pyworld,
    mean_log_envelope_on_grid,
    mel_band_levels_db,
    world_analyze,
)
from voices.voice_profile import VoiceProfile

# A warp beyond these turns speech into cartoon or giant; real adult speakers differ by <25 %.
MIN_WARP = 0.85
MAX_WARP = 1.25
MAX_F0_RANGE_SCALE = 1.5  # wider swings made Piper's melody wobble and cost WER
# The long-term colour correction is smooth (low cepstral order) and bounded, because the target
# average also holds its room and microphone, and a sharp copy of those makes speech hollow.
ENVELOPE_CORRECTION_ORDER = 8
MAX_ENVELOPE_CORRECTION_DB = 12.0
_PEAK_LIMIT = 0.99
_LIMITER_HALF_WINDOW_S = 0.005


@dataclass(frozen=True)
class MatchPlan:
    """The transformation chosen for one utterance; kept so benchmarks can report it."""

    f0_shift_log: float
    f0_range_scale: float
    warp: float
    correction_centers_hz: tuple[float, ...]
    correction_db: tuple[float, ...]


def match_voice(
    speech: Speech,
    profile: VoiceProfile,
    strength: float = 1.0,
    source: VoiceAnalysis | None = None,
) -> Speech:
    """Return `speech` re-voiced toward `profile`: same samples count, rate, text and phonemes.

    `strength` 0 leaves the voice as is, 1 goes all the way to the target's statistics.
    `source` describes the synthetic voice; by default it is measured on this utterance, which
    is fine for sentences of a second or more; pass a cached analysis for very short ones.
    """
    return match_voice_with_plan(speech, profile, strength, source)[0]


def match_voice_with_plan(
    speech: Speech,
    profile: VoiceProfile,
    strength: float = 1.0,
    source: VoiceAnalysis | None = None,
) -> tuple[Speech, MatchPlan | None]:
    """`match_voice` plus the plan it applied (None when there was no voicing to change)."""
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"voice-match strength must be between 0 and 1, got {strength}")
    pcm = np.asarray(speech.audio.pcm, dtype=np.float32)
    if pcm.ndim != 1:
        raise InputError(f"voice matching expects mono audio, got shape {pcm.shape}")
    if strength == 0.0 or len(pcm) == 0 or not np.any(pcm):
        return speech, None
    features = world_analyze(speech.audio, f0_method="dio")
    if source is None:
        if np.count_nonzero(features.voiced) < 40:
            return speech, None  # a breath or a click: nothing voiced to move
        source = analyze_features(features, speech.audio.duration_s)
    plan = plan_match(source, features, profile, strength)
    matched = _resynthesize(features, plan, len(pcm))
    matched = _keep_loudness(matched, pcm, speech.audio.sample_rate_hz)
    audio = AudioChunk(pcm=matched, sample_rate_hz=speech.audio.sample_rate_hz)
    return replace(speech, audio=audio), plan


def resynthesize_unchanged(speech: Speech) -> Speech:
    """WORLD analysis + resynthesis with nothing changed: the control for measurements.

    The vocoder alone moves speaker embeddings a little; comparing against this separates
    what matching does from what merely passing through WORLD does.
    """
    pcm = np.asarray(speech.audio.pcm, dtype=np.float32)
    features = world_analyze(speech.audio, f0_method="dio")
    flat = MatchPlan(0.0, 1.0, 1.0, (0.0, GRID_TOP_HZ), (0.0, 0.0))
    matched = _keep_loudness(_resynthesize(features, flat, len(pcm)), pcm, speech.audio.sample_rate_hz)
    return replace(speech, audio=AudioChunk(pcm=matched, sample_rate_hz=speech.audio.sample_rate_hz))


def plan_match(
    source: VoiceAnalysis, features: WorldFeatures, profile: VoiceProfile, strength: float
) -> MatchPlan:
    """Pick F0 shift/scale, warp and colour correction, each scaled by `strength`."""
    target = profile.f0
    shift = strength * (target.median_log_f0 - source.f0.median_log_f0)
    range_ratio = target.log_f0_std / max(source.f0.log_f0_std, 1e-3)
    range_scale = float(np.clip(range_ratio, 1.0 / MAX_F0_RANGE_SCALE, MAX_F0_RANGE_SCALE) ** strength)
    # F2..F4 only: F1 follows vowel openness and loudness (a shouting speaker has a high F1)
    # more than vocal-tract length, and it made the warp overshoot for male targets.
    formant_ratio = np.asarray(profile.envelope.formants_hz[1:]) / np.asarray(source.envelope.formants_hz[1:])
    warp = float(np.clip(np.exp(np.mean(np.log(formant_ratio))), MIN_WARP, MAX_WARP) ** strength)
    warped_source = _warp_log_envelope(mean_log_envelope_on_grid(features)[None, :], warp, GRID_TOP_HZ * 2.0)[
        0
    ]
    centres_hz, source_levels_db = mel_band_levels_db(warped_source)
    difference_db = np.asarray(profile.envelope.band_levels_db) - source_levels_db
    correction_db = strength * np.clip(
        _smooth_bands(difference_db, ENVELOPE_CORRECTION_ORDER),
        -MAX_ENVELOPE_CORRECTION_DB,
        MAX_ENVELOPE_CORRECTION_DB,
    )
    return MatchPlan(
        f0_shift_log=float(shift),
        f0_range_scale=range_scale,
        warp=warp,
        correction_centers_hz=tuple(float(v) for v in centres_hz),
        correction_db=tuple(float(v) for v in correction_db),
    )


def _resynthesize(features: WorldFeatures, plan: MatchPlan, sample_count: int) -> np.ndarray:
    pw = import_pyworld()
    rate = features.sample_rate_hz
    f0 = features.f0_hz.copy()
    voiced = f0 > 0
    if np.any(voiced):
        log_f0 = np.log(f0[voiced])
        centre = np.median(log_f0)
        f0[voiced] = np.exp(centre + plan.f0_shift_log + (log_f0 - centre) * plan.f0_range_scale)
    log_env = _warp_log_envelope(np.log(features.spectral_envelope + 1e-16), plan.warp, rate)
    bins_hz = np.linspace(0.0, rate / 2.0, log_env.shape[1])
    correction_db = np.interp(bins_hz, plan.correction_centers_hz, plan.correction_db)
    log_env += correction_db * (np.log(10.0) / 10.0)
    aperiodicity = np.exp(_warp_log_envelope(np.log(features.aperiodicity + 1e-12), plan.warp, rate))
    out = pw.synthesize(
        np.ascontiguousarray(f0),
        np.ascontiguousarray(np.exp(log_env)),
        np.ascontiguousarray(np.clip(aperiodicity, 0.0, 1.0)),
        rate,
        features.frame_period_ms,
    )
    if len(out) < sample_count:
        out = np.pad(out, (0, sample_count - len(out)))
    return out[:sample_count]


def _warp_log_envelope(log_env: np.ndarray, warp: float, rate_hz: float) -> np.ndarray:
    """Stretch (frames, bins) along frequency: new(f) = old(f / warp); >1 raises formants."""
    bins = log_env.shape[1]
    position = np.arange(bins, dtype=np.float64) / warp
    position = np.clip(position, 0.0, bins - 1.0)
    low = np.minimum(position.astype(int), bins - 2)
    frac = position - low
    return log_env[:, low] * (1.0 - frac) + log_env[:, low + 1] * frac


def _smooth_bands(levels_db: np.ndarray, order: int) -> np.ndarray:
    """Keep the first `order` DCT-II coefficients across bands: the broad shape, not the peaks."""
    count = len(levels_db)
    n = np.arange(count)
    basis = np.cos(np.pi * np.outer(np.arange(order), n + 0.5) / count)  # (order, bands)
    coefficients = basis @ levels_db * (2.0 / count)
    coefficients[0] *= 0.5
    return coefficients @ basis


def _keep_loudness(matched: np.ndarray, original: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Same RMS as the input; peaks above full scale are limited locally, never clipped.

    WORLD's minimum-phase pulses at a raised F0 are peakier than Piper's output, so one global
    gain to fit the peaks would make the matched voice audibly quieter than the original.
    """
    original_rms = float(np.sqrt(np.mean(np.square(original, dtype=np.float64))))
    matched_rms = float(np.sqrt(np.mean(np.square(matched))))
    if matched_rms > 0:
        matched = matched * (original_rms / matched_rms)
    if float(np.max(np.abs(matched))) > _PEAK_LIMIT:
        matched = matched * _limiter_gain(matched, max(1, int(sample_rate_hz * _LIMITER_HALF_WINDOW_S)))
    return np.clip(matched, -1.0, 1.0).astype(np.float32)


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


class VoiceProfileMatcher:
    """Matches every utterance toward one voice profile (a `VoiceMatcher`: `match(speech)`)."""

    def __init__(self, profile: VoiceProfile, strength: float = 1.0) -> None:
        self.profile = profile
        self.strength = strength

    def match(self, speech: Speech) -> Speech:
        return match_voice(speech, self.profile, strength=self.strength)


class VoiceMatchedTTS:
    """Wraps any TTS so every utterance comes out matched toward one voice profile.

    The wrapped engine stays its owner's: `close()` leaves it open."""

    def __init__(self, tts, profile: VoiceProfile, strength: float = 1.0) -> None:
        self.tts = tts
        self.matcher = VoiceProfileMatcher(profile, strength)
        self.language = getattr(tts, "language", "")

    @property
    def profile(self) -> VoiceProfile:
        return self.matcher.profile

    def synthesize(self, text: str, *, emotion: str | None = None) -> Speech:
        return self.matcher.match(self.tts.synthesize(text, emotion=emotion))

    def stream(self, text: str, *, emotion: str | None = None) -> Iterator[TTSChunk]:
        """The wrapped engine's chunks, each matched on its own (timing kept, see above)."""
        for chunk in self.tts.stream(text, emotion=emotion):
            yield replace(chunk, speech=self.matcher.match(chunk.speech))

    def close(self) -> None:
        """Nothing to release: the wrapped engine is closed by whoever made it."""
