"""The mouth opens for an audible breath before speech, and only then (lipsync/inhalation.py).

Synthetic recordings: a room-noise floor, band noise at a breath's level (40-55 dB below the
speech, as on the GRID clips), then voiced syllables. The mouth track is checked frame by frame.
"""

from __future__ import annotations

import numpy as np

from avatar.core.types import PhonemeTiming
from lipsync.audio_features import measure_frames
from lipsync.inhalation import inhalations
from lipsync.mouth_track import INHALE_OPEN, jaw_openness, track_from_audio, track_from_phonemes

RATE_HZ = 16000
FPS = 25
ROOM_RMS = 2e-4  # about -74 dBFS: a quiet studio
BREATH_RMS = 4e-3  # about -48 dBFS, some 35 dB below the voiced syllables


def _voiced(duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Three syllables of 140 Hz harmonics with sine envelopes (speech near -14 dBFS)."""
    pieces = []
    for part_s in (duration_s / 3,) * 3:
        t = np.arange(int(part_s * RATE_HZ)) / RATE_HZ
        phase = 2 * np.pi * 140 * t
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) / 3
        pieces.append(0.8 * voiced * np.sin(np.pi * t / part_s) ** 2)
    return np.concatenate(pieces) + 0.01 * rng.standard_normal(sum(len(p) for p in pieces))


def _recording(pieces: list[tuple[str, float]], seed: int = 0) -> np.ndarray:
    """('room' | 'breath' | 'voice', duration_s) pieces over a continuous room-noise floor."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, duration_s in pieces:
        n = int(duration_s * RATE_HZ)
        piece = np.zeros(n)
        if kind == "breath":  # turbulent air: white noise, most of its power above 500 Hz
            piece = BREATH_RMS * rng.standard_normal(n)
        elif kind == "voice":
            piece = _voiced(duration_s, rng)[:n]
        out.append(piece)
    audio = np.concatenate(out)
    return (audio + ROOM_RMS * rng.standard_normal(len(audio))).astype(np.float32)


def _frames(start_s: float, end_s: float) -> slice:
    return slice(int(round(start_s * FPS)), int(round(end_s * FPS)))


def _track(pcm: np.ndarray):
    features = measure_frames(pcm, RATE_HZ, FPS)
    return features, track_from_audio(features, FPS)


def test_breath_before_speech_opens_the_mouth():
    features, track = _track(_recording([("room", 0.6), ("breath", 0.36), ("voice", 0.9), ("room", 0.6)]))
    breathing = track.open[_frames(0.64, 0.92)]
    assert np.all(breathing >= 0.75 * INHALE_OPEN), np.round(track.open[:30], 2)
    assert np.all(track.open[_frames(0.0, 0.52)] == 0.0), np.round(track.open[:30], 2)
    breath = inhalations(features, jaw_openness(features), FPS)
    # Features see a 2-frame window, so the frame just before the breath hears its start.
    assert breath[_frames(0.6, 0.96)].all() and not breath[_frames(0.0, 0.56)].any()


def test_room_noise_alone_keeps_the_mouth_shut_until_the_voice():
    features, track = _track(_recording([("room", 0.96), ("voice", 0.9), ("room", 0.6)]))
    assert not inhalations(features, jaw_openness(features), FPS).any()
    assert np.all(track.open[_frames(0.0, 0.88)] == 0.0), np.round(track.open[:30], 2)


def test_digital_silence_like_tts_never_breathes():
    pcm = _recording([("room", 0.6), ("voice", 0.9), ("room", 0.5), ("voice", 0.9)])
    pcm[: int(0.6 * RATE_HZ)] = 0.0
    pcm[int(1.5 * RATE_HZ) : int(2.0 * RATE_HZ)] = 0.0
    features = measure_frames(pcm, RATE_HZ, FPS)
    assert not inhalations(features, jaw_openness(features), FPS).any()


def test_a_short_noise_before_a_word_is_a_consonant_not_a_breath():
    features, _ = _track(_recording([("room", 0.6), ("breath", 0.12), ("voice", 0.9), ("room", 0.4)]))
    assert not inhalations(features, jaw_openness(features), FPS).any()


def test_noise_after_speech_does_not_open_the_mouth():
    pcm = _recording([("room", 0.4), ("voice", 0.9), ("room", 0.3), ("breath", 0.4), ("room", 0.6)])
    features, track = _track(pcm)
    assert not inhalations(features, jaw_openness(features), FPS).any()
    assert np.all(track.open[_frames(1.44, 2.6)] == 0.0), np.round(track.open, 2)


def test_phoneme_driven_mouth_breathes_too():
    pcm = _recording([("room", 0.6), ("breath", 0.36), ("voice", 0.9), ("room", 0.6)])
    features = measure_frames(pcm, RATE_HZ, FPS)
    phonemes = tuple(
        PhonemeTiming(symbol, 0.96 + 0.15 * k, 0.96 + 0.15 * (k + 1))
        for k, symbol in enumerate(("m", "a", "m", "a", "m", "a"))
    )
    track = track_from_phonemes(phonemes, features, FPS)
    assert np.all(track.open[_frames(0.64, 0.92)] >= 0.75 * INHALE_OPEN), np.round(track.open[:30], 2)
    assert np.all(track.open[_frames(0.0, 0.52)] == 0.0)
