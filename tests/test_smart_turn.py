"""Semantic end of turn: Smart Turn's features and decisions, and the turn detector that asks it."""

from __future__ import annotations

import importlib.util
from importlib import metadata

import numpy as np
import pytest

from avatar.core.errors import EngineUnavailable, InputError
from avatar.core.optional import module_available
from avatar.core.types import AudioChunk, TurnEndCheck, UserSpeechStarted, UserTurnEnded, VADEvent
from avatar.turns import smart_turn
from avatar.turns.turn_detector import TurnDetector
from tests.conftest import eval_file

needs_model = pytest.mark.skipif(not module_available("pipecat"), reason=smart_turn.INSTALL_COMMAND)


@pytest.fixture(scope="module")
def model():
    if not module_available("pipecat"):
        pytest.skip(smart_turn.INSTALL_COMMAND)
    return smart_turn.SmartTurnModel().load()


def _pipecat_features():
    """pipecat's own numpy feature extractor, loaded from the installed wheel by path: importing
    the `pipecat` package would need its requirements, which are left out (--no-deps)."""
    distribution = metadata.distribution(smart_turn.DISTRIBUTION)
    [entry] = [f for f in distribution.files if str(f).endswith("smart_turn/_whisper_features.py")]
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", distribution.locate_file(entry))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_whisper_log_mel_features


@needs_model
@pytest.mark.parametrize("seconds", [2.5, 11.0])
def test_features_match_pipecat_reference(seconds):
    """The same numbers as pipecat's extractor (itself checked against transformers' Whisper one):
    a gliding tone in noise, shorter than the window (left-padded) and longer (its end kept)."""
    rng = np.random.default_rng(7)
    t = np.arange(round(seconds * 16000)) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * (150 + 400 * t) * t) + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32
    )
    window = smart_turn.decision_window(pcm)
    ours = smart_turn.log_mel_features(window)
    assert ours.shape == (80, 800) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _pipecat_features()(window), atol=1e-5)
    # Not a vacuous match: the speech-band energy moves with the tone, the padding stays at the floor.
    assert ours.max() - ours.min() > 1.0


def test_the_window_is_the_last_eight_seconds_left_padded():
    short = np.ones(16000, np.float32)
    window = smart_turn.decision_window(short)
    assert len(window) == 128000 and not window[:-16000].any() and window[-16000:].all()
    long = np.arange(200000, dtype=np.float32)
    np.testing.assert_array_equal(smart_turn.decision_window(long), long[-128000:])
    assert smart_turn.turn_audio_start(16000) == 8000 and smart_turn.turn_audio_start(100) == 0
    with pytest.raises(ValueError, match="128000"):
        smart_turn.log_mel_features(short)


def _jfk_until(cut_s: float | None) -> AudioChunk:
    """JFK's sentence up to `cut_s` (None: all of it), then the 200 ms of silence of a check."""
    from avatar.core.audio_io import load_audio

    pcm = load_audio(eval_file("speech/en_male_jfk.flac"), 16000).pcm
    if cut_s is not None:
        pcm = pcm[: round(cut_s * 16000)]
    return AudioChunk(np.concatenate([pcm, np.zeros(3200, np.float32)]), 16000)


def test_a_finished_sentence_scores_complete_and_a_cut_one_incomplete(model):
    """Word boundaries from Whisper's timestamps, at the quietest 10 ms nearby (as the bench finds
    them): "... ask not what your country can do | for you" and "And so my fellow | Americans"."""
    whole = model.predict(_jfk_until(None), "en")
    assert whole.probability_complete > 0.6
    for cut_s in (6.8925, 1.565):
        cut = model.predict(_jfk_until(cut_s), "en")
        assert cut.probability_complete < 0.2, cut_s
    assert whole.latency_ms > 0 and whole.verdict == model.verdict(whole.probability_complete, "en")


def test_missing_wheel_is_one_line_with_the_exact_command(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(EngineUnavailable) as info:
        smart_turn.SmartTurnModel().load()
    assert info.value.hint == "pip install --no-deps pipecat-ai==1.14.0"
    with pytest.raises(EngineUnavailable):
        smart_turn.load_turn_model("smart")
    assert smart_turn.load_turn_model("auto") is None, "the default falls back to the silence rule"
    assert smart_turn.load_turn_model("silence") is None
    with pytest.raises(InputError, match="unknown turn rule"):
        smart_turn.load_turn_model("semantic")
    with pytest.raises(InputError, match="unsure threshold"):
        smart_turn.TurnThresholds(complete_above=0.5, unsure_above=0.7)


def test_the_catalog_names_the_no_deps_install(monkeypatch):
    from avatar.engines import registry

    monkeypatch.setattr(registry, "module_available", lambda name: name != "pipecat")
    status = registry.check_engine("smart-turn")
    assert not status.available and status.missing == ("pipecat",)
    assert status.fix == smart_turn.INSTALL_COMMAND
    assert registry.engine_options("turn") == ("smart",)


def test_verdicts_follow_the_two_thresholds_of_the_language():
    engine = smart_turn.SmartTurnModel(thresholds=smart_turn.TurnThresholds(0.8, 0.3))
    assert [engine.verdict(p, "en") for p in (0.9, 0.8, 0.5, 0.3, 0.1)] == [
        "complete",
        "unsure",
        "unsure",
        "incomplete",
        "incomplete",
    ]
    calibrated = smart_turn.SmartTurnModel()
    en, zh = (smart_turn.CALIBRATED_THRESHOLDS[code] for code in ("en", "zh"))
    assert calibrated.thresholds_for("EN") == en and calibrated.thresholds_for("zh-CN") == zh
    unknown = calibrated.thresholds_for(None)
    assert unknown == calibrated.thresholds_for("fr")
    assert unknown == smart_turn.CALIBRATED_THRESHOLDS[""]
    # Before the language is known, at least as cautious as every known language.
    assert unknown.complete_above >= max(en.complete_above, zh.complete_above)
    assert unknown.unsure_above <= min(en.unsure_above, zh.unsure_above)
    overridden = smart_turn.overridden_thresholds(0.9, None)
    assert {t.complete_above for t in overridden.values()} == {0.9}
    assert all(t.unsure_above <= 0.9 for t in overridden.values())


# --- the turn detector with a turn model ---------------------------------------------------------


def start(time_s: float) -> VADEvent:
    return VADEvent("speech_start", round(time_s * 16000), time_s, 0.9, time_s + 0.2)


def end(time_s: float) -> VADEvent:
    return VADEvent("speech_end", round(time_s * 16000), time_s, 0.1, time_s + 0.12)


def asking(fallback_ms: float = 1500) -> TurnDetector:
    return TurnDetector(min_turn_s=0.2, end_silence_ms=fallback_ms, check_after_silence_ms=200)


def test_the_model_is_asked_once_per_pause_after_the_check_silence():
    turns = asking()
    assert turns.process([start(1.0)], 1.2) == [UserSpeechStarted(1.0, 16000, 1.2)]
    assert turns.process([end(2.0)], 2.12) == []
    assert turns.process([], 2.19) == []
    [check] = turns.process([], 2.2)
    assert check == TurnEndCheck(2.0, 32000, 16000, pytest.approx(2.2), pytest.approx(0.2))
    assert turns.process([], 2.4) == [], "asked once per pause"
    [ended] = turns.decide(check, "complete")
    assert ended == UserTurnEnded(1.0, 2.0, 16000, 32000, 16000, pytest.approx(2.2))
    assert not turns.in_turn and turns.process([], 5.0) == []


@pytest.mark.parametrize(("verdict", "ends_at_s"), [("unsure", 2.5), ("incomplete", 3.5)])
def test_unsure_waits_like_the_silence_rule_and_incomplete_for_the_fallback(verdict, ends_at_s):
    turns = asking()
    turns.process([start(1.0), end(2.0)], 2.12)
    [check] = turns.process([], 2.2)
    assert turns.decide(check, verdict) == []
    assert turns.process([], ends_at_s - 0.01) == []
    [ended] = turns.process([], ends_at_s)
    assert ended.confirmed_at_s == pytest.approx(ends_at_s) and ended.end_s == 2.0


def test_an_answer_that_comes_after_the_user_spoke_again_changes_nothing():
    turns = asking()
    turns.process([start(1.0), end(2.0)], 2.12)
    [check] = turns.process([], 2.2)
    turns.process([start(2.3)], 2.5)
    assert turns.decide(check, "complete") == [] and turns.in_turn
    turns.process([end(3.0)], 3.12)
    [second] = turns.process([], 3.2)
    assert second.end_s == 3.0, "the next pause gets its own check"
    [ended] = turns.decide(second, "complete")
    assert (ended.start_s, ended.end_s) == (1.0, 3.0), "one turn across the pause"
    with pytest.raises(ValueError, match="verdict"):
        turns.decide(second, "maybe")
    with pytest.raises(ValueError, match="below end_silence_ms"):
        TurnDetector(end_silence_ms=500, check_after_silence_ms=500)


# --- configuration: flags, LiveConfig, the session's detector -----------------------------------


def test_turn_flags_reach_the_live_config_and_the_session_detector():
    from types import SimpleNamespace

    from avatar.cli import _build_parser
    from avatar.cli.live import live_config
    from avatar.core.errors import AvatarError
    from avatar.live.server import LiveServer

    def config(*flags):
        return live_config(_build_parser().parse_args(["serve", *flags]))

    default = config()
    assert (default.turn, default.turn_check_silence_ms, default.turn_fallback_silence_ms) == (
        "auto",
        150,
        1200,
    )
    assert default.turn_threshold is None and default.turn_unsure_threshold is None  # calibrated
    chosen = config(
        "--turn", "smart", "--turn-check-ms", "250", "--turn-fallback-ms", "2000", "--turn-threshold", "0.7"
    )
    assert (chosen.turn, chosen.turn_check_silence_ms, chosen.turn_fallback_silence_ms) == (
        "smart",
        250,
        2000,
    )
    assert chosen.turn_threshold == 0.7 and config("--turn", "silence").turn == "silence"
    with pytest.raises(AvatarError, match="--turn-check-ms"):
        config("--turn-check-ms", "1500")
    with pytest.raises(AvatarError, match="--turn-unsure-threshold"):
        config("--turn-unsure-threshold", "0.8", "--turn-threshold", "0.5")

    def detector(turn_model, live_config):
        return LiveServer(SimpleNamespace(config=live_config, turn_model=turn_model))._turn_detector()

    silence = detector(None, config("--end-of-turn-ms", "700"))
    assert silence.check_after_s is None and silence.end_silence_s == pytest.approx(0.7)
    asked = detector(object(), chosen)
    assert asked.check_after_s == pytest.approx(0.25) and asked.end_silence_s == pytest.approx(2.0)
    assert asked.unsure_silence_s == pytest.approx(0.5)
    assert smart_turn.describe_turn_rule(None, 200, 1500, 500).startswith(
        "silence: the turn ends after 500 ms"
    )
    model = smart_turn.SmartTurnModel(thresholds={"en": smart_turn.TurnThresholds(0.6, 0.2)})
    rule = smart_turn.describe_turn_rule(model, 200, 1500, 500)
    assert rule == (
        "smart-turn v3.2: asked after 200 ms of silence "
        "(en: p>0.6 at once, p>0.2 after 500 ms; else after 1500 ms)"
    )
