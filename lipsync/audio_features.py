"""Per-video-frame loudness and spectral shape of speech audio.

Frame k of a video at F fps covers samples [k*R/F, (k+1)*R/F); features are measured on a
window centred on that span so they carry no lag relative to the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SILENCE_FLOOR_DB = -60.0
BREATH_FLOOR_DB = -120.0
LOW_BAND_HZ = (150.0, 1200.0)  # where the first formant, which rises as the jaw opens, lives
# Air rushing through an open mouth (an inhalation) is broadband noise; this band skips mains hum
# and room rumble below it, which on GRID recordings are louder than the breath.
BREATH_BAND_HZ = (500.0, 8000.0)


@dataclass(frozen=True)
class FrameFeatures:
    """Arrays with one value per video frame."""

    level_db: np.ndarray  # RMS level in dBFS
    centroid_hz: np.ndarray  # spectral centroid of the frame (0 in silence)
    reference_db: float  # typical loud-speech level of this recording
    # Level of the first-formant band only (vowels are loud there, fricatives are not), and its
    # loud-speech reference: how open a speaker's jaw is follows this better than the full band.
    low_db: np.ndarray | None = None
    low_reference_db: float = SILENCE_FLOOR_DB
    # Level of the breath band, floored far lower than the speech bands: a breath is 40-55 dB
    # below speech, and digital silence (TTS) must stay well below it.
    breath_db: np.ndarray | None = None

    @property
    def frame_count(self) -> int:
        return len(self.level_db)


def frame_count_for(sample_count: int, sample_rate_hz: int, fps: int) -> int:
    """Frames needed to cover the audio: ceil(duration * fps)."""
    return max(1, int(np.ceil(sample_count * fps / sample_rate_hz - 1e-9)))


def measure_frames(
    pcm: np.ndarray, sample_rate_hz: int, fps: int, frame_count: int | None = None
) -> FrameFeatures:
    """Loudness and centroid per frame, from a 2-frame Hann window centred on each frame."""
    pcm = np.asarray(pcm, np.float32)
    n_frames = frame_count or frame_count_for(len(pcm), sample_rate_hz, fps)
    hop = sample_rate_hz / fps
    win = int(round(2 * hop))
    window = np.hanning(win).astype(np.float32)
    window /= np.sqrt(np.mean(window**2))
    padded = np.pad(pcm, (win, win + int(hop) * 2))
    starts = (win + (np.arange(n_frames) + 0.5) * hop - win / 2).astype(int)
    frames = np.stack([padded[s : s + win] for s in starts]) * window
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-12)
    level_db = np.maximum(20 * np.log10(rms), SILENCE_FLOOR_DB)
    spectrum = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate_hz)
    band = (freqs > 80) & (freqs < 8000)
    power = spectrum[:, band] ** 2
    centroid = (power * freqs[band]).sum(axis=1) / np.maximum(power.sum(axis=1), 1e-12)
    voiced = level_db > SILENCE_FLOOR_DB + 10
    reference = float(np.percentile(level_db[voiced], 90)) if voiced.any() else SILENCE_FLOOR_DB
    centroid = np.where(voiced, centroid, 0.0)
    low_band = (freqs >= LOW_BAND_HZ[0]) & (freqs < LOW_BAND_HZ[1])
    low_power = (spectrum[:, low_band] ** 2).sum(axis=1) * 2.0 / (win * win)
    low_db = np.maximum(10 * np.log10(low_power + 1e-12), SILENCE_FLOOR_DB)
    low_reference = float(np.percentile(low_db[voiced], 90)) if voiced.any() else SILENCE_FLOOR_DB
    return FrameFeatures(
        level_db.astype(np.float32),
        centroid.astype(np.float32),
        reference,
        low_db.astype(np.float32),
        low_reference,
        _breath_db(power, freqs[band], win),
    )


def _breath_db(power: np.ndarray, freqs: np.ndarray, win: int) -> np.ndarray:
    """Per-frame level (dBFS) of the breath band, summed from the centroid's power spectrum (the
    breath band lies inside it, so no second pass over the spectrum)."""
    low, high = np.searchsorted(freqs, BREATH_BAND_HZ)  # freqs ascend: a view, no copy
    band_power = power[:, low:high].sum(axis=1) * 2.0 / (win * win)
    return np.maximum(10 * np.log10(band_power + 1e-12), BREATH_FLOOR_DB).astype(np.float32)
