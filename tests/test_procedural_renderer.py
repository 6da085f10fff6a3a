"""The procedural renderer measured on its own frames with the face landmarker.

Audio here is synthetic (voiced bursts and silences) so these tests need no TTS; the TTS-driven
lip-sync measurement lives in test_render_video.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar.core.types import AudioChunk, PhonemeTiming, Speech
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


def test_bilabial_phonemes_close_the_lips_while_sound_goes_on(sample_renderer, landmarker):
    """Loudness alone would open the mouth on 'm'; phoneme timing seals the lips, which the
    landmarker sees on the drawn frames, while the jaw (its own control) need not shut."""
    audio = syllable_audio([(0.2, 0), (1.2, 0.9), (0.2, 0)])
    phonemes = (
        PhonemeTiming("m", 0.2, 0.5),
        PhonemeTiming("a", 0.5, 0.9),
        PhonemeTiming("m", 0.9, 1.1),
        PhonemeTiming("a", 1.1, 1.4),
    )
    with_timing = sample_renderer.plan(Speech(AudioChunk(audio, RATE_HZ), phonemes=phonemes))
    loudness_only = sample_renderer.plan(Speech(AudioChunk(audio, RATE_HZ)))
    m_frames = [9, 10, 24]  # 0.36..0.44 s inside the first 'm', 0.96..1.0 s inside the second
    a_frames = [16, 17, 18]  # 0.64..0.76 s: inside the 'a'

    def gaps(weights, frames):
        return measure_frames((sample_renderer.draw(weights[k]) for k in frames), landmarker)[0]

    assert gaps(with_timing, m_frames).max() < 0.012, "lips must be shut on /m/"
    assert gaps(loudness_only, m_frames).max() > 0.02, "loudness alone opens them (the reason for timing)"
    assert gaps(with_timing, a_frames).min() > 0.03, "and open on the vowel"


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
    happy = landmarker.detect(sample_renderer.draw(sample_renderer.expression_weights("happy")))[
        0
    ].blendshapes
    angry = landmarker.detect(sample_renderer.draw(sample_renderer.expression_weights("angry")))[
        0
    ].blendshapes
    surprised = landmarker.detect(sample_renderer.draw(sample_renderer.expression_weights("surprised")))[
        0
    ].blendshapes
    sad = landmarker.detect(sample_renderer.draw(sample_renderer.expression_weights("sad")))[0].blendshapes
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


def test_teeth_stay_white_on_dark_skin(sample_assets):
    """The inside of the mouth takes its light from the whites of the eyes, not from the skin:
    the portrait with its skin darkened to a third (eyes kept) still gets white teeth over a
    darker cavity (skin-derived colours gave teeth no brighter than the skin there)."""
    import cv2

    from lipsync import face_mesh_indices as fm
    from lipsync.avatar_assets import AvatarAssets
    from lipsync.deformation_basis import BASIS_INDEX
    from lipsync.procedural_renderer import ProceduralRenderer

    image = sample_assets.image_bgr.astype(np.float32)
    lm = sample_assets.landmarks_px[:, :2]
    eyes = np.zeros(image.shape[:2], np.uint8)
    for eye in (fm.RIGHT_EYE, fm.LEFT_EYE):
        cv2.fillPoly(eyes, [np.round(lm[list(eye)]).astype(np.int32)], 255)
    dark = np.where(eyes[..., None] > 0, image, 0.33 * image).astype(np.uint8)
    renderer = ProceduralRenderer(
        AvatarAssets(dark, sample_assets.landmarks_px, sample_assets.blendshapes, "dark"), seed=0
    )
    weights = zero_weights()
    weights[BASIS_INDEX["jaw_open"]] = 0.7
    frame = renderer.draw(weights).astype(np.float32)
    moved = renderer.warper.moved_landmarks(weights)
    top, bottom = moved[fm.INNER_LIP_MID_UPPER], moved[fm.INNER_LIP_MID_LOWER]
    gap = bottom[1] - top[1]
    assert gap > 8, f"the mouth must open for this test ({gap:.1f} px)"
    x = int(round(top[0]))

    column = frame[int(top[1]) : int(bottom[1]) + 1, x - 3 : x + 4].mean(axis=(1, 2))

    def band(a: float, b: float) -> np.ndarray:
        return column[int(a * gap) : int(b * gap) + 1]

    cheek = lm[fm.NOSE_TIP] + 0.25 * (lm[fm.RIGHT_CHEEK] - lm[fm.NOSE_TIP])
    skin = float(frame[int(cheek[1]) - 3 : int(cheek[1]) + 4, int(cheek[0]) - 3 : int(cheek[0]) + 4].mean())
    teeth, cavity = float(band(0.08, 0.2).mean()), float(band(0.3, 0.9).min())  # upper teeth, darkest row
    assert teeth > 1.5 * skin, f"teeth {teeth:.0f} vs dark skin {skin:.0f}"
    assert teeth > 2.0 * cavity, f"teeth {teeth:.0f} vs cavity {cavity:.0f}"
