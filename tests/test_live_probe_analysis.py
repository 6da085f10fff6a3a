"""The live probe's measuring core (tests.support.live_probe_analysis) on signals with a known
answer, its command line, and the runtime's loopback-only ICE switch (avatar.live.ice)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.support.live_probe_analysis import (
    MIC_RATE_HZ,
    AudioArrival,
    TurnResult,
    correlation_lag_s,
    silence_start,
    speech_bounds,
    summarize,
)


def test_speech_bounds_find_the_tone_between_silences():
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(MIC_RATE_HZ) / MIC_RATE_HZ)
    pcm = np.concatenate([np.zeros(8000), tone, np.zeros(8000)]).astype(np.float32)
    onset, end = speech_bounds(pcm)
    assert (onset, end) == (8000, 24000)
    with pytest.raises(ValueError):
        speech_bounds(np.zeros(16000, np.float32))


def test_correlation_finds_a_known_audio_delay():
    rng = np.random.default_rng(3)
    video_times = np.arange(0, 4, 0.04)  # 25 fps
    syllables = rng.random(400) > 0.6  # a 10 ms grid of on/off mouth activity
    envelope = np.convolve(syllables.astype(float), np.ones(8) / 8, mode="same")
    fine_times = np.arange(0, 4, 0.01)
    video_level = np.interp(video_times, fine_times, envelope)
    audio_times = np.arange(0, 4, 0.02)
    audio_level = np.interp(audio_times - 0.08, fine_times, envelope)  # audio 80 ms later
    lag_s = correlation_lag_s(audio_times, audio_level, video_times, video_level)
    assert lag_s == pytest.approx(0.08, abs=0.011)


def test_silence_starts_at_the_first_frame_of_a_long_enough_quiet_run():
    peaks = [0.5, 0.5, 0.001, 0.5] + [0.001] * 30  # a 20 ms dip does not count; the run after does
    audio = [AudioArrival(0.02 * i, 320 * i, 16000, 320, peak, -1) for i, peak in enumerate(peaks)]
    assert silence_start(audio, after_s=0.0) == 4
    assert silence_start(audio[:10], after_s=0.0) is None


def test_summary_reports_percentiles_of_the_turns_that_measured_them():
    results = [TurnResult(0, turn, speech_end_to_audio_ms=100.0 * (turn + 1)) for turn in range(5)]
    results.append(TurnResult(0, 5))  # a turn without a reply takes no part
    summary = summarize(results)
    assert summary["speech_end_to_audio_ms"] == {"n": 5, "p50": 300.0, "p95": 480.0, "max": 500.0}
    assert "barge_in_to_silence_ms" not in summary


def test_probe_runs_as_a_module_and_is_no_longer_an_avatar_command(capsys):
    probe = subprocess.run(
        [sys.executable, "-m", "tests.support.live_probe", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert probe.returncode == 0 and "--loopback-only" in probe.stdout
    from avatar.cli import main

    with pytest.raises(SystemExit) as done:
        main(["probe", "--help"])  # was the probe's own help (exit 0): test tooling in the runtime
    assert done.value.code == 2 and "invalid choice: 'probe'" in capsys.readouterr().err


def test_loopback_only_ice_is_opt_in_through_the_environment(monkeypatch):
    aioice_ice = pytest.importorskip("aioice.ice")
    from avatar.live.ice import LOOPBACK_ENV_VAR, install_from_env

    monkeypatch.setattr(aioice_ice, "get_host_addresses", aioice_ice.get_host_addresses)  # restored after
    monkeypatch.delenv(LOOPBACK_ENV_VAR, raising=False)
    before = aioice_ice.get_host_addresses
    assert install_from_env() is False and aioice_ice.get_host_addresses is before
    monkeypatch.setenv(LOOPBACK_ENV_VAR, "1")
    assert install_from_env() is True
    assert aioice_ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    assert aioice_ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == []


@pytest.mark.parametrize(
    ("clip", "onset_s", "end_s"),
    [
        # Room noise 27-38 dB below the peak before and after the words (speech 0.48-3.64 s, read
        # off the 20 ms energy trace): a range-only rule took the whole file for speech.
        ("zh_female_aishell1_BAC009S0724W0121.wav", 0.48, 3.64),
        # Studio silence: the quiet final words still count (the range rule alone found the same).
        ("zh_female_cosyvoice_zero_shot_prompt.wav", 0.32, 3.16),
    ],
)
def test_speech_bounds_ignore_a_recordings_room_noise(clip, onset_s, end_s):
    from avatar.core.audio_io import load_audio
    from tests.conftest import eval_file

    pcm = load_audio(eval_file(f"speech/{clip}"), MIC_RATE_HZ).pcm
    onset, end = speech_bounds(pcm)
    assert onset / MIC_RATE_HZ == pytest.approx(onset_s, abs=0.021)
    assert end / MIC_RATE_HZ == pytest.approx(end_s, abs=0.021)
