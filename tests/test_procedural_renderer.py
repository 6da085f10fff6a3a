"""The procedural renderer measured on its own frames with the face landmarker.

Audio here is synthetic (voiced bursts and silences) so these tests need no TTS; the TTS-driven
lip-sync measurement lives in test_render_video.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar.core.types import AudioChunk, PhonemeTiming, Speech
from lipsync.face_motion import emotion_weights
from lipsync.procedural_renderer import zero_weights
from tests.support.lipsync_measure import best_lag_correlation, measure_frames, rms_envelope, smile_score

RATE_HZ = 16000
FPS = 25


def syllable_audio(pattern: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """(duration_s, peak) pieces; peak 0 = silence. Voiced pieces are 140 Hz harmonics with a sine envelope."""
    rng = np.random.default_rng(seed)
    pieces = []
    for duration_s, peak in pattern:
        n = int(duration_s * RATE_HZ)
        t = np.arange(n) / RATE_HZ
        if peak == 0:
            pieces.append(np.zeros(n))
            continue
        f0 = 140 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f0) / RATE_HZ
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) + 0.05 * rng.standard_normal(n)
        pieces.append(peak * voiced * np.sin(np.pi * t / duration_s) ** 2 / 3)
    return np.concatenate(pieces).astype(np.float32)


SPEECHLIKE = [(0.6, 0)] + [(0.22, 0.8), (0.08, 0.1), (0.3, 1.0), (0.15, 0), (0.18, 0.5)] * 3 + [(0.8, 0)]


@pytest.fixture(scope="module")
def speechlike():
    return Speech(AudioChunk(syllable_audio(SPEECHLIKE), RATE_HZ))


def test_plan_covers_audio_exactly(sample_renderer, speechlike):
    weights = sample_renderer.plan(speechlike)
    assert weights.shape[0] == int(np.ceil(speechlike.audio.duration_s * FPS))
    # 0.6 + 3 x 0.93 + 0.8 = 4.19 s of audio -> ceil(104.75) frames
    assert weights.shape[0] == 105


def test_mouth_follows_loudness_and_closes_in_silence(sample_renderer, speechlike, landmarker):
    weights = sample_renderer.plan(speechlike)
    openings, _ = measure_frames((sample_renderer.draw(w) for w in weights), landmarker)
    assert np.isfinite(openings).all(), "the landmarker must find the face in every frame"
    envelope = rms_envelope(speechlike.audio.pcm, RATE_HZ, FPS, len(weights))
    lag, corr = best_lag_correlation(openings, envelope)
    assert abs(lag) <= 1, f"mouth lags the audio by {lag} frames"
    assert corr > 0.7, f"mouth opening vs loudness correlation {corr:.2f}"
    silent = envelope < 1e-4
    assert silent.sum() >= 20
    assert np.max(openings[silent]) < 0.012, "mouth must be closed while silent (gap < 1.2% of face height)"
    assert np.max(openings) > 0.05, "mouth must open clearly on loud syllables"


def test_bilabial_phonemes_close_the_lips_while_sound_goes_on(sample_renderer):
    """Loudness alone would open the mouth on 'm'; phoneme timing presses the lips shut."""
    audio = syllable_audio([(0.2, 0), (1.2, 0.9), (0.2, 0)])
    phonemes = (
        PhonemeTiming("m", 0.2, 0.5),
        PhonemeTiming("a", 0.5, 0.9),
        PhonemeTiming("m", 0.9, 1.1),
        PhonemeTiming("a", 1.1, 1.4),
    )
    with_timing = sample_renderer.plan(Speech(AudioChunk(audio, RATE_HZ), phonemes=phonemes))
    loudness_only = sample_renderer.plan(Speech(AudioChunk(audio, RATE_HZ)))
    jaw = 0  # index of jaw_open
    m_frames = [9, 10, 11]  # 0.36..0.48 s: inside the first 'm'
    a_frames = [16, 17, 18]  # 0.64..0.76 s: inside the 'a'
    assert with_timing[m_frames, jaw].max() < 0.1
    assert loudness_only[m_frames, jaw].max() > 0.2
    assert with_timing[a_frames, jaw].min() > 0.3


def test_background_is_untouched_and_face_stays_the_same_person(sample_renderer, speechlike):
    photo = sample_renderer.assets.image_bgr
    x0, y0, x1, y1 = sample_renderer.warper.box
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    for weights in sample_renderer.plan(speechlike, [(0, 9, "happy")])[::10]:
        frame = sample_renderer.draw(weights)
        assert frame.shape == photo.shape and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame[outside], photo[outside])
        diff = np.abs(frame[y0:y1, x0:x1].astype(int) - photo[y0:y1, x0:x1]).mean()
        assert diff < 12, f"head region changed too much (mean abs diff {diff:.1f})"


def test_expressions_move_the_landmarkers_blendshapes(sample_renderer, landmarker):
    neutral = landmarker.detect(sample_renderer.draw(zero_weights()))[0].blendshapes
    happy = landmarker.detect(sample_renderer.draw(emotion_weights("happy")))[0].blendshapes
    angry = landmarker.detect(sample_renderer.draw(emotion_weights("angry")))[0].blendshapes
    surprised = landmarker.detect(sample_renderer.draw(emotion_weights("surprised")))[0].blendshapes
    sad = landmarker.detect(sample_renderer.draw(emotion_weights("sad")))[0].blendshapes
    assert smile_score(happy) > smile_score(neutral) + 0.15
    brow_down = lambda b: b["browDownLeft"] + b["browDownRight"]  # noqa: E731
    assert brow_down(angry) > brow_down(neutral) + 0.2
    assert brow_down(surprised) < brow_down(neutral) - 0.1
    assert sad["browInnerUp"] > neutral["browInnerUp"] + 0.03


def test_expression_blends_smoothly(sample_renderer, speechlike):
    weights = sample_renderer.plan(speechlike, [(0.0, 1.5, "neutral"), (1.5, 4.0, "happy")])
    smile = weights[:, 5]
    steps = np.abs(np.diff(smile))
    assert smile[10] == pytest.approx(0.0, abs=1e-6)
    assert smile[-1] > 0.5
    assert steps.max() < 0.2, "an expression change must ease in over several frames"


def test_blinks_happen_and_are_reproducible(sample_renderer, speechlike):
    a = sample_renderer.plan(speechlike)
    b = sample_renderer.plan(speechlike)
    np.testing.assert_array_equal(a, b)
    blink = a[:, 10]
    assert blink.max() >= 0.99, "at least one full blink in 4.2 s"
    assert (blink > 0.5).sum() <= 8, "blinks are short"
