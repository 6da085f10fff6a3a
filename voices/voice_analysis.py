"""What makes a voice recognisable to DSP: its pitch and the shape of its vocal tract.

This is the analysis half of DSP voice matching (not neural cloning). A reference recording is
reduced to a handful of numbers that a WORLD resynthesis can steer toward:

- F0 statistics on voiced frames, in log-Hz, because pitch is perceived (and transposed)
  logarithmically: the median sets the register, the spread sets how lively the melody is.
- the long-term average spectral envelope (WORLD CheapTrick, voiced frames only) as mel-band
  levels, which carries vocal-tract colour, breathiness tilt and the recording channel;
- median formants F1..F4 from LPC poles fitted to that envelope, which give a vocal-tract-length
  estimate; the ratio of two speakers' formants is the frequency warp that moves one toward the
  other (about 1.15-1.2 from an adult male to an adult female).

All statistics live on one common 0-8 kHz grid so a 16 kHz reference and 22.05 kHz Piper output
are compared like with like. pyworld is imported inside functions (see `import_pyworld`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from avatar.core.errors import InputError
from avatar.core.types import AudioChunk

MIN_SAMPLE_S = 3.0
MAX_SAMPLE_S = 30.0
REFERENCE_RATE_HZ = 16000
FRAME_PERIOD_MS = 5.0
F0_FLOOR_HZ = 60.0
F0_CEIL_HZ = 500.0
# Statistics grid: 0..8 kHz in 257 bins (a 16 kHz, 512-point spectrum); every voice we compare
# has energy there, and telephone-band or 16 kHz references have nothing above it.
GRID_TOP_HZ = 8000.0
GRID_BINS = 257
MEL_BANDS = 32
MEL_LOW_HZ = 80.0
MEL_HIGH_HZ = 7600.0
FORMANT_COUNT = 4
_LPC_ORDER = 16
_SPEED_OF_SOUND_CM_S = 35000.0
_MIN_VOICED_FRAMES = 40  # 0.2 s of voicing: below that the medians are noise
_SILENT_PEAK = 10.0 ** (-50.0 / 20.0)
_QUIET_ACTIVE_RMS_DBFS = -35.0
_CLIPPED_FRACTION = 0.001


def import_pyworld():
    """Import pyworld, hiding its own pkg_resources deprecation warning (not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import pyworld

    return pyworld


@dataclass(frozen=True)
class F0Stats:
    """Pitch register and range of a voice, in natural-log Hz over voiced frames."""

    median_log_f0: float
    log_f0_std: float
    voiced_fraction: float

    @property
    def median_f0_hz(self) -> float:
        return float(np.exp(self.median_log_f0))


@dataclass(frozen=True)
class EnvelopeStats:
    """Long-term spectral colour and vocal-tract size of a voice."""

    band_centers_hz: tuple[float, ...]
    band_levels_db: tuple[float, ...]  # mean-removed: only the shape matters, loudness is kept
    formants_hz: tuple[float, ...]  # median F1..F4
    vocal_tract_length_cm: float


@dataclass(frozen=True)
class WorldFeatures:
    """WORLD parameters of one utterance: F0 track, power envelope, aperiodicity."""

    f0_hz: np.ndarray  # (frames,), 0 where unvoiced
    spectral_envelope: np.ndarray  # (frames, fft_size // 2 + 1), power
    aperiodicity: np.ndarray  # (frames, fft_size // 2 + 1), 0..1
    sample_rate_hz: int
    frame_period_ms: float = FRAME_PERIOD_MS

    @property
    def voiced(self) -> np.ndarray:
        return self.f0_hz > 0


@dataclass(frozen=True)
class VoiceAnalysis:
    """Everything voice matching needs to know about one speaker, plus what looked wrong."""

    f0: F0Stats
    envelope: EnvelopeStats
    duration_s: float
    warnings: tuple[str, ...] = ()


def world_analyze(chunk: AudioChunk, f0_method: str = "harvest") -> WorldFeatures:
    """Run WORLD on `chunk` at its own rate.

    Harvest is the accurate tracker for references; DIO + StoneMask is ~3x faster and, on Piper's
    vocoder output, resynthesizes closer to the original than Harvest (Piper has subharmonics
    that pull slower trackers an octave down), so matching uses it.
    """
    pw = import_pyworld()
    x = np.ascontiguousarray(chunk.pcm, dtype=np.float64)
    rate = int(chunk.sample_rate_hz)
    if f0_method == "harvest":
        f0, times = pw.harvest(
            x, rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=FRAME_PERIOD_MS
        )
    elif f0_method == "dio":
        f0, times = pw.dio(x, rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=FRAME_PERIOD_MS)
        f0 = pw.stonemask(x, f0, times, rate)
    else:
        raise ValueError(f"unknown f0_method {f0_method!r}; use 'harvest' or 'dio'")
    envelope = pw.cheaptrick(x, f0, times, rate)  # default 71 Hz floor keeps d4c sizes equal
    aperiodicity = pw.d4c(x, f0, times, rate)
    return WorldFeatures(f0, envelope, aperiodicity, rate)


def f0_stats(f0_hz: np.ndarray) -> F0Stats:
    """Median and robust spread (IQR / 1.349) of log F0, so octave glitches barely move them."""
    voiced = f0_hz[f0_hz > 0]
    if len(voiced) < _MIN_VOICED_FRAMES:
        raise InputError(
            f"only {len(voiced) * FRAME_PERIOD_MS / 1000:.2f} s of voiced speech found",
            "the sample must contain clear speech; record a few sentences of talking",
        )
    log_f0 = np.log(voiced)
    q25, q50, q75 = np.percentile(log_f0, [25, 50, 75])
    return F0Stats(float(q50), float((q75 - q25) / 1.349), float(len(voiced) / len(f0_hz)))


def mean_log_envelope_on_grid(features: WorldFeatures) -> np.ndarray:
    """Average natural-log envelope of voiced frames, resampled onto the common 0-8 kHz grid."""
    log_env = to_common_grid(np.log(features.spectral_envelope[features.voiced] + 1e-12), features)
    return log_env.mean(axis=0)


def to_common_grid(log_envelope: np.ndarray, features: WorldFeatures) -> np.ndarray:
    """Interpolate (frames, bins) log envelopes at any rate onto GRID_BINS points over 0-8 kHz."""
    bins = log_envelope.shape[-1]
    source_hz = np.linspace(0.0, features.sample_rate_hz / 2.0, bins)
    grid_hz = np.linspace(0.0, GRID_TOP_HZ, GRID_BINS)
    position = np.interp(grid_hz, source_hz, np.arange(bins, dtype=np.float64))
    low = np.minimum(position.astype(int), bins - 2)
    frac = position - low
    return log_envelope[..., low] * (1.0 - frac) + log_envelope[..., low + 1] * frac


def mel_band_levels_db(mean_log_envelope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Band centres (Hz) and mean-removed dB levels of triangular mel bands over the grid."""
    grid_hz = np.linspace(0.0, GRID_TOP_HZ, GRID_BINS)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(MEL_LOW_HZ), _hz_to_mel(MEL_HIGH_HZ), MEL_BANDS + 2))
    power = np.exp(mean_log_envelope)
    levels = np.empty(MEL_BANDS)
    for band in range(MEL_BANDS):
        low, centre, high = edges_hz[band : band + 3]
        weights = np.clip(
            np.minimum((grid_hz - low) / (centre - low), (high - grid_hz) / (high - centre)), 0.0, None
        )
        levels[band] = 10.0 * np.log10(np.sum(weights * power) / np.sum(weights) + 1e-20)
    return edges_hz[1:-1], levels - levels.mean()


def estimate_formants_hz(features: WorldFeatures) -> np.ndarray:
    """Median F1..F4 over voiced frames from LPC poles fitted to the WORLD envelope.

    The envelope's inverse FFT is an autocorrelation, so LPC needs no second pass over the audio;
    doing it on the common 8 kHz grid makes references and Piper output comparable.
    """
    voiced = np.flatnonzero(features.voiced)[::2]
    log_env = to_common_grid(np.log(features.spectral_envelope[voiced] + 1e-12), features)
    autocorrelation = np.fft.irfft(np.exp(log_env), axis=1)[:, : _LPC_ORDER + 1]
    lpc = _levinson_durbin(autocorrelation, _LPC_ORDER)
    companion = np.zeros((len(lpc), _LPC_ORDER, _LPC_ORDER))
    companion[:, 0, :] = -lpc[:, 1:]
    companion[:, np.arange(1, _LPC_ORDER), np.arange(_LPC_ORDER - 1)] = 1.0
    roots = np.linalg.eigvals(companion)
    grid_rate_hz = 2.0 * GRID_TOP_HZ
    freq_hz = np.angle(roots) * grid_rate_hz / (2.0 * np.pi)
    bandwidth_hz = -np.log(np.abs(roots) + 1e-12) * grid_rate_hz / np.pi
    usable = (freq_hz > 150.0) & (freq_hz < 5500.0) & (bandwidth_hz < 600.0)
    candidates = np.where(usable, freq_hz, np.inf)
    candidates.sort(axis=1)
    first = candidates[:, :FORMANT_COUNT]
    first[~np.isfinite(first)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: reported as NaN below
        formants = np.nanmedian(first, axis=0)
    if not np.all(np.isfinite(formants)):
        raise InputError(
            "could not find formants in the voice sample",
            "use a clean recording of ordinary speech, without music or heavy noise",
        )
    return formants


def vocal_tract_length_cm(formants_hz: np.ndarray) -> float:
    """Uniform-tube estimate: F_i = (2i - 1) c / 4L, averaged over the formants we have."""
    order = 2.0 * np.arange(1, len(formants_hz) + 1) - 1.0
    return float(np.mean(order * _SPEED_OF_SOUND_CM_S / (4.0 * formants_hz)))


def envelope_stats(features: WorldFeatures) -> EnvelopeStats:
    centres_hz, levels_db = mel_band_levels_db(mean_log_envelope_on_grid(features))
    formants = estimate_formants_hz(features)
    return EnvelopeStats(
        band_centers_hz=tuple(float(v) for v in centres_hz),
        band_levels_db=tuple(float(v) for v in levels_db),
        formants_hz=tuple(float(v) for v in formants),
        vocal_tract_length_cm=vocal_tract_length_cm(formants),
    )


def analyze_features(
    features: WorldFeatures, duration_s: float, notes: tuple[str, ...] = ()
) -> VoiceAnalysis:
    return VoiceAnalysis(f0_stats(features.f0_hz), envelope_stats(features), duration_s, notes)


def analyze_reference(chunk: AudioChunk) -> VoiceAnalysis:
    """Check a 3-30 s reference sample and describe its voice (at 16 kHz, Harvest F0)."""
    notes = check_reference(chunk)
    from avatar.core.audio_io import resample

    pcm = resample(np.asarray(chunk.pcm, dtype=np.float32), chunk.sample_rate_hz, REFERENCE_RATE_HZ)
    features = world_analyze(AudioChunk(pcm, REFERENCE_RATE_HZ), f0_method="harvest")
    return analyze_features(features, chunk.duration_s, notes)


def check_reference(chunk: AudioChunk) -> tuple[str, ...]:
    """Raise for samples that cannot work; return warnings for ones that will work worse.

    Under 3 s there is too little voicing for stable statistics; over 30 s costs time and
    usually means the user picked a whole recording (music, other speakers) instead of a clip.
    """
    pcm = np.asarray(chunk.pcm)
    if pcm.ndim != 1:
        raise InputError(f"voice sample must be mono audio, got shape {pcm.shape}")
    duration_s = chunk.duration_s
    if duration_s < MIN_SAMPLE_S:
        raise InputError(
            f"voice sample is too short: {duration_s:.1f} s, need {MIN_SAMPLE_S:.0f}-{MAX_SAMPLE_S:.0f} s",
            "record a longer sample: a few sentences of ordinary speech",
        )
    if duration_s > MAX_SAMPLE_S:
        raise InputError(
            f"voice sample is too long: {duration_s:.1f} s, need {MIN_SAMPLE_S:.0f}-{MAX_SAMPLE_S:.0f} s",
            "trim it to 5-20 s of one person speaking, e.g. ffmpeg -i in.wav -t 20 out.wav",
        )
    peak = float(np.max(np.abs(pcm)))
    if peak < _SILENT_PEAK:
        raise InputError(
            "voice sample is silent (peak below -50 dBFS)", "check the microphone or pick another file"
        )
    notes = []
    frame = max(1, int(chunk.sample_rate_hz * 0.02))
    frames = pcm[: len(pcm) // frame * frame].reshape(-1, frame).astype(np.float64)
    frame_rms = np.sqrt(np.mean(frames**2, axis=1))
    active = frame_rms[frame_rms > 0.1 * frame_rms.max()]
    active_dbfs = 20.0 * np.log10(np.sqrt(np.mean(active**2)) + 1e-12)
    if active_dbfs < _QUIET_ACTIVE_RMS_DBFS:
        notes.append(f"voice sample is quiet (speech at {active_dbfs:.0f} dBFS); noise may colour the match")
    clipped = float(np.mean(np.abs(pcm) >= 0.999))
    if clipped > _CLIPPED_FRACTION:
        notes.append(f"voice sample is clipped ({clipped:.1%} of samples at full scale); record it quieter")
    return tuple(notes)


def _levinson_durbin(autocorrelation: np.ndarray, order: int) -> np.ndarray:
    """LPC coefficients [1, a1..ap] for each row of autocorrelations (frames, order + 1)."""
    frames = autocorrelation.shape[0]
    a = np.zeros((frames, order + 1))
    a[:, 0] = 1.0
    error = autocorrelation[:, 0] * (1.0 + 1e-9) + 1e-20
    for i in range(1, order + 1):
        acc = np.sum(a[:, :i] * autocorrelation[:, i:0:-1], axis=1)
        k = -acc / error
        a[:, 1 : i + 1] = a[:, 1 : i + 1] + k[:, None] * a[:, i - 1 :: -1][:, :i]
        error = error * (1.0 - k**2)
    return a


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)
