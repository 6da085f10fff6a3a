"""The mel spectrogram Wav2Lip was trained on, and its per-video-frame windows.

The public checkpoints only work with exactly these features (Wav2Lip hparams.py / audio.py):
16 kHz audio, pre-emphasis 0.97, STFT n_fft 800 / hop 200 (12.5 ms, 80 mel frames per second) /
Hann window 800, 80 Slaney mel bands over 55..7600 Hz, magnitude in dB with a -100 dB floor minus
a 20 dB reference, scaled symmetrically to [-4, 4]. Their librosa (0.7) padded the STFT by
reflection, so we ask for that explicitly (librosa >= 0.10 defaults to zero padding).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from avatar.core.errors import InputError

SAMPLE_RATE_HZ = 16000
N_FFT = 800
HOP_SAMPLES = 200
WINDOW_SAMPLES = 800
MEL_BANDS = 80
FMIN_HZ = 55.0
FMAX_HZ = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_FRAMES_PER_S = SAMPLE_RATE_HZ / HOP_SAMPLES  # 80
MEL_STEPS = 16  # one window = 16 mel frames = 0.2 s = 5 video frames at 25 fps


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """(80, 401) Slaney-normalised filter bank; cached because it never changes."""
    import librosa

    return librosa.filters.mel(
        sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=MEL_BANDS, fmin=FMIN_HZ, fmax=FMAX_HZ
    ).astype(np.float32)


def melspectrogram(pcm_16k: np.ndarray) -> np.ndarray:
    """(80, 1 + len // 200) float32 in [-4, 4] for mono float audio at 16 kHz."""
    import librosa

    wav = np.asarray(pcm_16k, dtype=np.float64)
    if wav.ndim != 1:
        raise InputError(f"the Wav2Lip mel expects mono audio (1-D), got shape {wav.shape}", "mix down first")
    if not np.isfinite(wav).all():
        raise InputError(
            "the audio contains NaN or infinite samples", "re-export or re-synthesize the speech"
        )
    emphasized = wav.copy()
    emphasized[1:] -= PREEMPHASIS * wav[:-1]  # y[n] = x[n] - 0.97 x[n-1], with x[-1] = 0
    spectrum = np.abs(
        librosa.stft(
            emphasized, n_fft=N_FFT, hop_length=HOP_SAMPLES, win_length=WINDOW_SAMPLES, pad_mode="reflect"
        )
    )
    mel_amplitude = _mel_basis().astype(np.float64) @ spectrum
    floor = 10.0 ** (MIN_LEVEL_DB / 20.0)
    level_db = 20.0 * np.log10(np.maximum(floor, mel_amplitude)) - REF_LEVEL_DB
    scaled = 2 * MAX_ABS_VALUE * (level_db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def video_frame_count(mel: np.ndarray, fps: float) -> int:
    """Video frames covering the audio behind `mel` (its duration is (frames - 1) hops)."""
    duration_s = (mel.shape[1] - 1) / MEL_FRAMES_PER_S
    return max(1, int(np.ceil(duration_s * fps - 1e-9)))


def mel_chunks(mel: np.ndarray, fps: float = 25, frame_count: int | None = None) -> list[np.ndarray]:
    """One (80, 16) window per video frame, as Wav2Lip's inference.py indexes them.

    Frame i reads mel columns [int(80 / fps * i), + 16). inference.py stops at the last full window
    and so drops the final frames of a clip; we need one window per frame, so windows that run past
    the end are padded with -4 (the floor, i.e. silence after the audio ends). `frame_count`
    defaults to the frames that cover the audio; the renderer passes its exact count.
    (Training centred the window two frames earlier, wav2lip_train.py get_segmented_mels; the
    public inference does not, and the checkpoints are used with that inference, so neither do we.)
    """
    if mel.ndim != 2 or mel.shape[0] != MEL_BANDS:
        raise InputError(f"expected an (80, T) mel spectrogram, got shape {mel.shape}")
    count = video_frame_count(mel, fps) if frame_count is None else int(frame_count)
    step = MEL_FRAMES_PER_S / fps
    last_start = int(step * (count - 1)) if count > 0 else 0
    needed = last_start + MEL_STEPS
    if needed > mel.shape[1]:
        mel = np.pad(mel, ((0, 0), (0, needed - mel.shape[1])), constant_values=-MAX_ABS_VALUE)
    return [mel[:, int(step * i) : int(step * i) + MEL_STEPS] for i in range(count)]
