"""Silero VAD on real speech (timing, streaming invariance, rates, non-speech) and the turn detector.

The VAD runs for real (bundled ONNX, onnxruntime, no torch); reference onsets and ends come from
the signal energy (`bench.vad_latency.speech_bounds_by_energy`), independent of the model.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from avatar.core.audio_io import load_audio
from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.types import AudioChunk, UserSpeechStarted, UserTurnEnded, VADEvent
from avatar.turns.turn_detector import TurnDetector
from bench.vad_latency import NON_SPEECH_CLIPS, SPEECH_CLIPS, padded, speech_bounds_by_energy
from tests.conftest import eval_file

FRAME_S = 0.032
PAD_BEFORE_S = 1.0
PAD_AFTER_S = 1.5

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def silero_model():
    from avatar.turns.vad_silero import SileroModel

    try:
        return SileroModel()
    except EngineUnavailable as error:
        pytest.skip(str(error))


def new_vad(silero_model, **options):
    from avatar.turns.vad_silero import SileroVAD

    return SileroVAD(model=silero_model, probability_history_s=None, **options).load()


def run_stream(vad, pcm: np.ndarray, sample_rate_hz: int, chunk_samples: int) -> list[VADEvent]:
    vad.reset()
    events: list[VADEvent] = []
    for offset in range(0, len(pcm), chunk_samples):
        events += vad.process(AudioChunk(pcm[offset : offset + chunk_samples], sample_rate_hz))
    return events + vad.flush()


def padded_clip(name: str, sample_rate_hz: int = 16000) -> np.ndarray:
    pcm = load_audio(eval_file(f"speech/{name}"), sample_rate_hz).pcm
    return padded(pcm, sample_rate_hz, PAD_BEFORE_S, PAD_AFTER_S)


def spans(events: list[VADEvent]) -> list[tuple[str, int]]:
    return [(event.kind, event.sample_index) for event in events]


@pytest.mark.parametrize("name", SPEECH_CLIPS)
def test_speech_onset_and_end_match_the_signal(silero_model, name):
    clip = load_audio(eval_file(f"speech/{name}"), 16000).pcm
    onset_s, end_s = speech_bounds_by_energy(clip, 16000)
    events = run_stream(new_vad(silero_model), padded_clip(name), 16000, 320)

    starts = [event for event in events if event.kind == "speech_start"]
    ends = [event for event in events if event.kind == "speech_end"]
    assert len(starts) == len(ends) >= 1
    assert abs(starts[0].time_s - (PAD_BEFORE_S + onset_s)) <= 0.100
    # jfk's tail is crowd noise that both the VAD and the energy reference count as sound.
    assert abs(ends[-1].time_s - (PAD_BEFORE_S + end_s)) <= 0.300
    # Timestamps are exact sample counts on the 32 ms frame grid, confirmation after the gate.
    assert all(event.sample_index % 512 == 0 for event in events[:-1])
    assert starts[0].time_s == starts[0].sample_index / 16000
    assert 0.200 <= starts[0].confirmed_at_s - starts[0].time_s < 0.200 + FRAME_S
    assert 0.500 <= ends[0].confirmed_at_s - ends[0].time_s < 0.500 + FRAME_S + 1e-9


def test_silence_and_low_noise_give_no_events(silero_model):
    vad = new_vad(silero_model)
    rng = np.random.default_rng(7)
    seconds = 16000 * 4
    hum = 0.01 * np.sin(2 * np.pi * 50 * np.arange(seconds) / 16000)
    for pcm in (
        np.zeros(seconds, np.float32),
        (0.003 * rng.standard_normal(seconds)).astype(np.float32),  # white noise, about -50 dBFS
        (hum + 0.001 * rng.standard_normal(seconds)).astype(np.float32),  # mains hum
    ):
        assert run_stream(vad, pcm, 16000, 480) == []
        assert vad.probabilities.max() < 0.35


def test_events_do_not_depend_on_chunk_size(silero_model):
    vad = new_vad(silero_model)
    stream = padded_clip("en_male_jfk.flac")
    reference = run_stream(vad, stream, 16000, 512)
    reference_probabilities = vad.probabilities
    assert len(reference) >= 2
    for chunk_samples in (160, 480, 1000, 4096):
        assert run_stream(vad, stream, 16000, chunk_samples) == reference
        np.testing.assert_array_equal(vad.probabilities, reference_probabilities)


@pytest.mark.parametrize("sample_rate_hz", [8000, 22050, 44100])
def test_other_input_rates_find_the_same_onset(silero_model, sample_rate_hz):
    vad = new_vad(silero_model)
    at_16k = run_stream(vad, padded_clip("en_male_jfk.flac"), 16000, 320)
    stream = padded_clip("en_male_jfk.flac", sample_rate_hz)
    events = run_stream(vad, stream, sample_rate_hz, sample_rate_hz // 50)
    assert events[0].kind == "speech_start"
    assert abs(events[0].time_s - at_16k[0].time_s) <= FRAME_S
    assert events[0].sample_rate_hz == 16000  # timestamps stay on the model's 16 kHz grid


@pytest.mark.parametrize("name", NON_SPEECH_CLIPS)
def test_applause_cheering_and_laughter_are_not_speech(silero_model, name):
    """Observed: applause peaks at p=0.15, cheering 0.34, the acted laugh 0.44: no frame reaches
    the 0.5 start threshold, so none of them can barge in. The laugh is the closest call."""
    vad = new_vad(silero_model)
    assert run_stream(vad, padded_clip(name), 16000, 320) == []
    assert vad.probabilities.max() < vad.start_threshold


def test_min_speech_gate_rejects_a_short_burst_of_real_speech(silero_model):
    speech = load_audio(eval_file("speech/en_male_jfk.flac"), 16000).pcm
    burst = padded(speech[round(1.33 * 16000) : round(1.48 * 16000)], 16000, 1.0, 1.0)  # 150 ms
    assert run_stream(new_vad(silero_model, min_speech_ms=200), burst, 16000, 320) == []
    ungated = run_stream(new_vad(silero_model, min_speech_ms=0), burst, 16000, 320)
    assert [event.kind for event in ungated] == ["speech_start", "speech_end"]


def test_flush_closes_speech_cut_mid_sentence_at_the_last_sample(silero_model):
    stream = padded_clip("en_female_librispeech_1995-1837-0001.wav")[: 16000 * 3 + 100]
    events = run_stream(new_vad(silero_model), stream, 16000, 320)
    assert [event.kind for event in events] == ["speech_start", "speech_end"]
    assert events[-1].sample_index == len(stream)


def test_reset_restores_the_model_state(silero_model):
    vad = new_vad(silero_model)
    stream = padded_clip("zh_male_funasr_asr_example.wav")
    first = run_stream(vad, stream, 16000, 1000)
    first_probabilities = vad.probabilities
    assert run_stream(vad, stream, 16000, 1000) == first
    np.testing.assert_array_equal(vad.probabilities, first_probabilities)


def test_turns_on_real_speech_do_not_depend_on_chunk_size(silero_model):
    """jfk pauses up to ~1.05 s between phrases; a 1.2 s turn hangover keeps it one turn."""
    stream = padded_clip("en_male_jfk.flac")
    results = []
    for chunk_samples in (160, 4096):
        vad, turns = new_vad(silero_model), TurnDetector(min_turn_s=0.2, end_silence_ms=1200)
        out = []
        for offset in range(0, len(stream), chunk_samples):
            events = vad.process(AudioChunk(stream[offset : offset + chunk_samples], 16000))
            out += turns.process(events, vad.settled_until_s)
        out += turns.process(vad.flush(), vad.processed_s)
        out += turns.finish(len(stream) / 16000)
        results.append(out)
    assert results[0] == results[1]
    started, ended = results[0]
    assert isinstance(started, UserSpeechStarted) and isinstance(ended, UserTurnEnded)
    assert started.at_s == ended.start_s and ended.end_s > 11.0


def test_errors_are_one_line_and_name_the_fix(silero_model, monkeypatch):
    from avatar.turns import vad_silero

    with pytest.raises(EngineUnavailable, match="load"):
        vad_silero.SileroVAD().process(AudioChunk(np.zeros(512, np.float32), 16000))
    vad = new_vad(silero_model)
    vad.process(AudioChunk(np.zeros(100, np.float32), 16000))
    with pytest.raises(InputError, match="changed mid-stream"):
        vad.process(AudioChunk(np.zeros(100, np.float32), 48000))
    with pytest.raises(InputError, match="mono"):
        new_vad(silero_model).process(AudioChunk(np.zeros((2, 100), np.float32), 16000))
    with pytest.raises(ValueError, match="threshold"):
        vad_silero.SileroVAD(start_threshold=0.3, end_threshold=0.4)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == vad_silero.MODEL_PACKAGE else real_find_spec(name, *rest),
    )
    with pytest.raises(EngineUnavailable) as error:
        vad_silero.SileroVAD().load()
    assert "pip install .[live]" in str(error.value) and "\n" not in str(error.value)


# --- turn detector: pure logic on scripted events -------------------------------------------------


def start(time_s: float, confirmed_after_s: float = 0.2) -> VADEvent:
    return VADEvent("speech_start", round(time_s * 16000), time_s, 0.9, time_s + confirmed_after_s)


def end(time_s: float, confirmed_after_s: float = 0.5) -> VADEvent:
    return VADEvent("speech_end", round(time_s * 16000), time_s, 0.1, time_s + confirmed_after_s)


def test_short_blip_never_starts_a_turn():
    turns = TurnDetector(min_turn_s=0.3, end_silence_ms=500)
    assert turns.process([start(1.0, confirmed_after_s=0.2)], 1.2) == []
    assert turns.process([end(1.25)], 1.75) == []  # 250 ms of speech < 300 ms
    assert turns.process([], 5.0) == [] and not turns.in_turn
    assert turns.finish(5.0) == []


def test_speech_start_is_announced_once_it_lasts_min_turn():
    turns = TurnDetector(min_turn_s=0.3, end_silence_ms=500)
    assert turns.process([start(1.0)], 1.2) == []
    assert turns.process([], 1.31) == [UserSpeechStarted(at_s=1.0, sample_index=16000, confirmed_at_s=1.3)]
    assert turns.in_turn
    # With the VAD's own gate at least min_turn, the start is announced as soon as it arrives.
    gated = TurnDetector(min_turn_s=0.2)
    assert gated.process([start(2.0, confirmed_after_s=0.224)], 2.224) == [
        UserSpeechStarted(at_s=2.0, sample_index=32000, confirmed_at_s=2.224)
    ]


def test_pause_shorter_than_the_hangover_does_not_end_the_turn():
    turns = TurnDetector(min_turn_s=0.2, end_silence_ms=500)
    out = turns.process([start(1.0)], 1.2)
    out += turns.process([end(2.0, confirmed_after_s=0.1)], 2.1)
    out += turns.process([], 2.3)  # the VAD settled only up to the next onset
    out += turns.process([start(2.3), end(3.0, confirmed_after_s=0.1)], 3.1)
    assert out == [UserSpeechStarted(1.0, 16000, 1.2)]
    ended = turns.process([], 3.5)
    assert ended == [
        UserTurnEnded(
            start_s=1.0,
            end_s=3.0,
            start_sample=16000,
            end_sample=48000,
            sample_rate_hz=16000,
            confirmed_at_s=3.5,
        )
    ]
    assert ended[0].sample_range(48000) == (48000, 144000)
    assert not turns.in_turn


def test_pause_longer_than_the_hangover_splits_turns_and_blips_inside_a_turn_belong_to_it():
    turns = TurnDetector(min_turn_s=0.3, end_silence_ms=500)
    out = turns.process([start(1.0), end(2.0), start(2.2), end(2.3)], 2.8)  # 100 ms blip, in the turn
    out += turns.process([start(3.5), end(4.5)], 6.0)
    assert out == [
        UserSpeechStarted(1.0, 16000, 1.3),
        UserTurnEnded(1.0, 2.3, 16000, 36800, 16000, 2.8),
        UserSpeechStarted(3.5, 56000, 3.8),
        UserTurnEnded(3.5, 4.5, 56000, 72000, 16000, 5.0),
    ]


def test_same_events_give_the_same_turns_whatever_the_polling():
    # A VAD with a 50 ms gate reports a 100 ms blip at 4.0 s; the turn detector drops it.
    events = [start(0.5), end(1.4), start(1.7), end(2.9), start(4.0, 0.05), end(4.1), start(5.0)]
    coarse = TurnDetector().process(events, 6.0)
    fine = TurnDetector()
    out = []
    for index in range(601):
        now = index / 100
        # What a VAD reports by `now`, and how far its view is settled (its settled_until_s).
        arrived = [event for event in events if now - 0.01 < event.confirmed_at_s <= now]
        settled = min([now] + [event.time_s for event in events if event.confirmed_at_s > now])
        out += fine.process(arrived, settled)
    assert out == coarse
    assert [type(event).__name__ for event in coarse] == [
        "UserSpeechStarted",
        "UserTurnEnded",
        "UserSpeechStarted",
    ]


def test_finish_closes_an_open_turn_and_bad_order_is_an_error():
    turns = TurnDetector()
    turns.process([start(1.0)], 2.0)
    [ended] = turns.finish(2.5)
    assert (ended.start_s, ended.end_s, ended.end_sample) == (1.0, 2.5, 40000)
    with pytest.raises(ValueError, match="out of order"):
        TurnDetector().process([end(1.0)], 1.5)


def test_onset_is_pending_from_the_first_speech_frame_until_confirmed(silero_model):
    """`onset_pending` lets the session pause the avatar before a barge-in is confirmed."""
    vad = new_vad(silero_model, min_speech_ms=200.0)
    pcm = padded_clip(SPEECH_CLIPS[0])
    pending_from = confirmed_at = None
    for offset in range(0, len(pcm), 320):  # 20 ms chunks, as WebRTC delivers them
        events = vad.process(AudioChunk(pcm[offset : offset + 320], 16000))
        if vad.onset_pending and pending_from is None:
            pending_from = vad.processed_s
        if any(event.kind == "speech_start" for event in events):
            confirmed_at = events[0].confirmed_at_s
            assert not vad.onset_pending
            break
    assert pending_from is not None and confirmed_at is not None
    onset_s, _ = speech_bounds_by_energy(pcm, 16000)
    assert abs(pending_from - onset_s) <= 0.1, "pending within ~3 frames of the energy onset"
    assert confirmed_at - pending_from >= 0.2 - FRAME_S, "confirmation waits the minimum speech time"
