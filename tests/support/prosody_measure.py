"""What an emotion did to an utterance, measured on the sound (never read back from parameters).

Shared by `tests/test_prosody.py` and `bench/emotion_prosody.py`, so both judge the same way:

- pitch: DIO + StoneMask (the tracker voice matching uses, which follows Piper's vocoder output
  better than Harvest) on voiced frames, in semitones; level = median, range = p90 - p10;
- duration and speaking rate: the audio's length, and syllables per second over the span where
  the sound is within 40 dB of its loudest frame (quiet final consonants count, silence does not);
- energy: RMS in dB over the frames of that span that carry sound (within 40 dB of the loudest);
- spectral balance: energy 2-5 kHz against 100 Hz-1 kHz, in dB (a brighter, tenser voice has
  more of the former).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from avatar.core.types import AudioChunk

_FRAME_S = 0.02
_ACTIVE_BELOW_PEAK_DB = 40.0
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class ProsodyMeasure:
    median_f0_hz: float
    f0_range_st: float  # p90 - p10 of voiced-frame F0, semitones
    duration_s: float  # the whole audio
    active_s: float  # first to last frame within 40 dB of the loudest
    rms_db: float  # over frames within 40 dB of the loudest, dBFS
    hf_balance_db: float  # 2-5 kHz energy minus 0.1-1 kHz energy

    def f0_shift_st(self, neutral: ProsodyMeasure) -> float:
        return 12.0 * float(np.log2(self.median_f0_hz / neutral.median_f0_hz))


def f0_track_hz(audio: AudioChunk) -> np.ndarray:
    """F0 of voiced frames (5 ms), DIO + StoneMask between 60 and 500 Hz."""
    from voices.voice_analysis import import_pyworld

    pw = import_pyworld()
    x = np.ascontiguousarray(audio.pcm, dtype=np.float64)
    f0, times = pw.dio(x, audio.sample_rate_hz, f0_floor=60.0, f0_ceil=500.0, frame_period=5.0)
    f0 = pw.stonemask(x, f0, times, audio.sample_rate_hz)
    return f0[f0 > 0]


def frame_levels_db(audio: AudioChunk) -> np.ndarray:
    """RMS level of each 20 ms frame, dBFS."""
    frame = max(1, int(audio.sample_rate_hz * _FRAME_S))
    pcm = np.asarray(audio.pcm, dtype=np.float64)
    frames = pcm[: len(pcm) // frame * frame].reshape(-1, frame)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def band_energy_db(audio: AudioChunk, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(np.asarray(audio.pcm, dtype=np.float64))) ** 2
    freqs_hz = np.fft.rfftfreq(len(audio.pcm), 1.0 / audio.sample_rate_hz)
    band = (freqs_hz >= low_hz) & (freqs_hz < high_hz)
    return float(10.0 * np.log10(np.sum(spectrum[band]) + 1e-20))


def measure_prosody(audio: AudioChunk) -> ProsodyMeasure:
    f0 = f0_track_hz(audio)
    semitones = 12.0 * np.log2(f0)
    levels = frame_levels_db(audio)
    active = np.flatnonzero(levels > levels.max() - _ACTIVE_BELOW_PEAK_DB)
    loud = levels[active]
    return ProsodyMeasure(
        median_f0_hz=float(np.median(f0)),
        f0_range_st=float(np.percentile(semitones, 90) - np.percentile(semitones, 10)),
        duration_s=audio.duration_s,
        active_s=float((active[-1] - active[0] + 1) * _FRAME_S),
        rms_db=float(10.0 * np.log10(np.mean(10.0 ** (loud / 10.0)))),
        hf_balance_db=band_energy_db(audio, 2000.0, 5000.0) - band_energy_db(audio, 100.0, 1000.0),
    )


def syllable_count(text: str, language: str) -> int:
    """Mandarin: one syllable per character. English: vowel groups per word (a silent final -e
    does not count, every word has at least one); good to a few percent on ordinary prose."""
    if language.startswith("zh"):
        return len(_CJK.findall(text))
    count = 0
    for word in re.findall(r"[a-z']+", text.lower()):
        groups = len(re.findall(r"[aeiouy]+", word))
        if word.endswith("e") and not word.endswith(("le", "ee")) and groups > 1:
            groups -= 1
        count += max(1, groups)
    return count
