"""Live lip-sync adapter: exact audio/frame pairing, continuity across chunks and idle, barge-in reset."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.core.types import AudioChunk, Speech
from lipsync.deformation_basis import BASIS_INDEX
from lipsync.streaming_lipsync import SAMPLES_PER_FRAME, StreamingLipSync
from tests.support.lipsync_measure import mouth_opening
from tests.test_procedural_renderer import SPEECHLIKE, syllable_audio


@pytest.fixture()
def stream(sample_renderer):
    return StreamingLipSync(sample_renderer, seed=3)


def test_chunks_come_out_as_whole_paired_frames_without_losing_samples(stream):
    audio = syllable_audio(SPEECHLIKE)  # 4.19 s at 16 kHz
    pieces = np.array_split(audio, 7)  # chunk lengths that are not multiples of 640
    out_audio, frame_count = [], 0
    for piece in pieces:
        pcm, frames = stream.push(Speech(AudioChunk(piece, 16000)))
        assert len(pcm) == SAMPLES_PER_FRAME * len(frames)
        out_audio.append(pcm)
        frame_count += len(frames)
    pcm, frames = stream.flush()
    assert len(pcm) == SAMPLES_PER_FRAME * len(frames) == SAMPLES_PER_FRAME
    out_audio.append(pcm)
    frame_count += len(frames)
    joined = np.concatenate(out_audio)
    assert frame_count == int(np.ceil(len(audio) / SAMPLES_PER_FRAME)) == stream.next_frame
    np.testing.assert_array_equal(joined[: len(audio)], audio)  # nothing lost, nothing reordered
    assert not joined[len(audio) :].any()  # padding is silence


def test_other_sample_rates_are_resampled_to_the_session_clock(stream):
    pcm, frames = stream.push(Speech(AudioChunk(np.zeros(22050, np.float32), 22050)))  # 1 s
    assert len(frames) == 25 and len(pcm) == 16000


def test_idle_frames_continue_the_blink_and_sway_timeline(stream, sample_renderer):
    """A frame rendered idle matches the same session frame rendered from silence: one timeline.

    Idle frames whose motion since the last drawn one stays under IDLE_REDRAW_MIN_PX are shown
    again instead of redrawn, so they may differ by that sub-pixel motion, never more."""
    silence = Speech(AudioChunk(np.zeros(SAMPLES_PER_FRAME * 100, np.float32), 16000))
    _, frames = stream.push(silence)
    other = StreamingLipSync(sample_renderer, seed=3)
    idle = [other.idle_frame() for _ in range(100)]
    reused = sum(idle[i] is idle[i - 1] for i in range(1, 100))
    assert 20 <= reused <= 80, "about half the idle frames are reused on this portrait"
    np.testing.assert_array_equal(frames[0], idle[0])
    for a, b in zip(frames, idle, strict=True):
        difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert difference.mean() < 0.5 and np.percentile(difference, 99.9) <= 8
    for i in range(1, 100):
        if idle[i] is not idle[i - 1]:  # a redrawn frame is exactly the timeline's frame
            np.testing.assert_array_equal(frames[i], idle[i])
    assert not idle[1].flags.writeable, "a frame that may be shown again cannot be painted on"


def test_blinks_occur_while_idle(stream):
    blinks = stream.motion.blinks(0, 25 * 10)
    assert (blinks >= 0.99).sum() >= 2, "at least two blinks in ten idle seconds"


def test_expression_eases_in_across_chunks(stream):
    stream.set_expression("happy")
    smiles = []
    for _ in range(5):
        stream.push(Speech(AudioChunk(np.zeros(SAMPLES_PER_FRAME * 4, np.float32), 16000)))
        smiles.append(float(stream._expression[BASIS_INDEX["smile"]]))
    assert smiles == sorted(smiles) and 0 < smiles[0] < smiles[-1]
    assert smiles[-1] > 0.9 * stream._target[BASIS_INDEX["smile"]]


def test_mouth_moves_with_speech_and_rests_shut_after_reset(stream, landmarker):
    _, frames = stream.push(Speech(AudioChunk(syllable_audio(SPEECHLIKE), 16000)))
    openings = [mouth_opening(landmarker.detect(f)[0].landmarks_px) for f in frames[::3]]
    assert max(openings) > 0.04
    stream.push(Speech(AudioChunk(syllable_audio([(0.3, 1.0)]), 16000)))
    stream.reset()
    assert stream.flush() == (pytest.approx(np.zeros(0)), [])  # carried samples dropped
    idle = stream.idle_frame()
    assert mouth_opening(landmarker.detect(idle)[0].landmarks_px) < 0.012


def test_unknown_emotion_is_rejected(stream):
    with pytest.raises(ValueError, match="unknown emotion"):
        stream.set_expression("joyful")
