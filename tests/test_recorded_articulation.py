"""Phoneme-driven mouths for recorded audio: forced alignment of the ASR words (issue 14).

Whisper's word times are coarse, so spreading a word's phonemes over them put closures and vowels
where the speaker did not make them (on GRID's "set white in z three now" the phoneme-driven mouth
correlated 0.06 with the real one). The recording is now aligned to the embedded voice saying the
same words; these tests measure where the phonemes land and how the mouth follows a real speaker.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from avatar.core.types import Speech
from avatar.engines.engine_set import EngineSet
from lipsync.recorded_phonemes import RecordedPhonemizer
from tests.conftest import eval_file
from tests.support.lipsync_measure import best_lag_correlation, change_error, measure_frames


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    engines = EngineSet(cache_dir=tmp_path_factory.mktemp("cache"))
    yield engines
    engines.close()


def _mid(p) -> float:
    return 0.5 * (p.start_s + p.end_s)


def test_aligned_phonemes_land_where_the_recording_says_them(engines):
    """The 'recording' is Piper with sampled phoneme durations, slowed and lowered (sad prosody):
    its own phoneme times are the truth. The words come with deliberately coarse times (spread
    evenly over the speech, as Whisper's can be off by a whole syllable); alignment must still put
    every lip closure within a frame or two of where the recording makes it."""
    from voices.piper_tts import PiperTTS

    text = "Bob made a map of the moon, and Pam put it up by the window."
    recording = PiperTTS(sampling_noise=True).load().synthesize(text, emotion="sad")
    truth = [p for p in recording.phonemes if p.phoneme != "sil"]
    start_s, end_s = truth[0].start_s, truth[-1].end_s
    names = text.split()
    step_s = (end_s - start_s) / len(names)
    words = [
        SimpleNamespace(word=w, start_s=start_s + k * step_s, end_s=start_s + (k + 1) * step_s)
        for k, w in enumerate(names)
    ]

    def labial_errors_s(phonemes) -> list[float]:
        found = [p for p in phonemes if p.phoneme in ("p", "b", "m")]
        return [min(abs(_mid(t) - _mid(f)) for f in found) for t in truth if t.phoneme in ("p", "b", "m")]

    aligned = labial_errors_s(engines.phonemizer().phonemes(words, "en", recording.audio))
    spread = labial_errors_s(RecordedPhonemizer().phonemes(words, "en", recording.audio))
    assert np.median(aligned) < 0.03 and np.percentile(aligned, 90) < 0.08, np.round(aligned, 3)
    assert np.median(aligned) < 0.5 * np.median(spread), (np.round(aligned, 3), np.round(spread, 3))


def test_phoneme_driven_mouth_follows_real_speakers(engines, landmarker):
    """GRID clips: each one's first frame is the photo, its own audio drives the mouth through
    ASR words + alignment; the landmarker compares the rendered and the real mouth opening frame
    by frame (issue 14: mean correlation >= 0.5 at the best lag within +-1 frame; the old
    word-span phonemes reached 0.33)."""
    correlations = [
        _render_against_truth(landmarker, clip, engines)[0] for clip in ("grid_lrwp9a", "grid_swiz3n")
    ]
    assert np.mean(correlations) >= 0.5, (
        f"phoneme-driven mouth vs the real one: r={np.round(correlations, 2)}"
    )


def test_loudness_driven_mouth_follows_real_speakers_and_their_breath(landmarker):
    """The loudness-driven mouth against the same real speakers (issue 14: mean correlation
    >= 0.5 at the best lag within +-1 frame, mean abs error <= 2% of face height; measured
    0.69 and 1.74%). Before the voice, lrwp9a's speaker opens the mouth to breathe in (9-10% of
    face height for 0.3 s); the render must open there too (it stayed shut: 2.07% error)."""
    lrwp9a = _render_against_truth(landmarker, "grid_lrwp9a")
    swiz3n = _render_against_truth(landmarker, "grid_swiz3n")
    correlations, errors = [lrwp9a[0], swiz3n[0]], [lrwp9a[1], swiz3n[1]]
    assert np.mean(correlations) >= 0.5 and np.mean(errors) <= 0.02, (
        f"r={np.round(correlations, 2)}, error={np.round(np.array(errors) * 100, 2)}% of face height"
    )
    rendered, truth = lrwp9a[2], lrwp9a[3]
    breathing = np.flatnonzero(truth[:15] > 0.05)  # the voice starts at frame 15 (0.6 s)
    assert len(breathing) >= 6 and np.mean(rendered[breathing] > 0.05) >= 0.8, (
        np.round(rendered[:16] * 100, 1),
        np.round(truth[:16] * 100, 1),
    )


def _render_against_truth(landmarker, clip: str, engines=None) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(correlation at the best lag within +-1 frame, mean abs error, rendered, real openings);
    phoneme-driven through ASR + alignment when `engines` is given, else loudness-driven."""
    from avatar.core.audio_io import resample
    from avatar.core.types import AudioChunk
    from lipsync.avatar_assets import AvatarAssets
    from lipsync.procedural_renderer import ProceduralRenderer
    from tests.support.media_probe import read_audio, read_video_frames

    path = eval_file(f"video/{clip}.mp4")
    frames = list(read_video_frames(path))
    raw = read_audio(path)
    audio = AudioChunk(resample(raw.pcm, raw.sample_rate_hz, 24000), 24000)
    truth, _ = measure_frames(frames, landmarker)
    first = frames[0][: frames[0].shape[0] // 2 * 2, : frames[0].shape[1] // 2 * 2]
    face = landmarker.detect(first)[0]
    renderer = ProceduralRenderer(AvatarAssets(first, face.landmarks_px, face.blendshapes, clip), seed=0)
    speech = Speech(audio)
    if engines is not None:
        transcript, words = engines.asr().transcribe_words(audio, language="en")
        speech = Speech(audio, phonemes=engines.phonemizer().phonemes(words, transcript.language, audio))
    rendered, _ = measure_frames((renderer.draw(w) for w in renderer.plan(speech)), landmarker)
    n = min(len(truth), len(rendered))
    correlation = best_lag_correlation(rendered[:n], truth[:n], max_lag=1)[1]
    return correlation, change_error(rendered[:n], truth[:n]), rendered[:n], truth[:n]
