"""The live probe's first-moving-mouth measure, on frames the procedural renderer really draws.

The benchmark's headline latency (speech end -> first moving mouth) comes from this measure, so
it is checked here on a known answer: idle frames, then speech that starts at a known frame. The
renderer opens the mouth with the first voiced frame, so the measure must land there (within one
frame: the first voiced frame may open less than the 1% margin), and it must not fire on idle
frames (blinks, sway) or on a smile blending in.
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar.core.types import AudioChunk, Speech
from lipsync.streaming_lipsync import StreamingLipSync
from tests.support.live_probe_mouth import ColourFrame, first_moving_mouth
from tests.test_procedural_renderer import syllable_audio

FRAME_S = 0.04
SPEECH = [(0.22, 0.8), (0.08, 0.1), (0.3, 1.0), (0.15, 0), (0.18, 0.5)]


def timed(frames: list[np.ndarray], start_s: float) -> list[ColourFrame]:
    return [ColourFrame(start_s + i * FRAME_S, f[::2, ::2].copy()) for i, f in enumerate(frames)]


@pytest.fixture(scope="module")
def idle_then_speech(sample_renderer):
    stream = StreamingLipSync(sample_renderer, seed=5)
    idle = [stream.idle_frame() for _ in range(50)]  # 2 s listening
    stream.set_expression("happy")  # the reply's smile blends in during its leading silence
    quiet = [stream.idle_frame() for _ in range(10)]  # 0.4 s: the avatar has not spoken yet
    _, speaking = stream.push(Speech(AudioChunk(syllable_audio(SPEECH), 16000)))
    return idle, quiet, speaking


def test_first_moving_mouth_is_the_first_voiced_frame(idle_then_speech, landmarker):
    idle, quiet, speaking = idle_then_speech
    end_s = 10.0  # the user's speech end: the last idle frame arrives just before it
    frames = timed(idle + quiet + speaking, end_s - len(idle) * FRAME_S)
    onset = first_moving_mouth(frames, end_s, landmarker)
    voice_s = end_s + len(quiet) * FRAME_S
    assert onset.arrival_s is not None
    assert voice_s <= onset.arrival_s <= voice_s + 2 * FRAME_S + 1e-9
    assert onset.gap_at_onset > onset.idle_max_gap + 0.01
    assert onset.frames_without_face == 0


def test_idle_and_a_smile_are_not_a_moving_mouth(idle_then_speech, landmarker):
    idle, quiet, _ = idle_then_speech
    end_s = 10.0
    frames = timed(idle + quiet, end_s - len(idle) * FRAME_S)
    assert first_moving_mouth(frames, end_s, landmarker).arrival_s is None


def test_too_few_frames_is_an_error(landmarker):
    with pytest.raises(ValueError, match="too few frames"):
        first_moving_mouth([], 1.0, landmarker)
