"""The serve soak's summary (bench/serve_soak_report.py) on hand-made samples and turns."""

from __future__ import annotations

import pytest

from bench.serve_soak_report import markdown, summarize


def sample(t_s: float, rss_mb: float, fds: int, cpu_s: float) -> dict:
    return {
        "t_s": t_s,
        "rss_mb": rss_mb,
        "anon_rss_mb": rss_mb - 100,
        "fds": fds,
        "threads": 40,
        "cpu_s": cpu_s,
        "children_rss_mb": 50.0,
        "children_cpu_s": 0.5 * t_s / 10,  # a child using 0.05 cores
        "sessions": 4,
    }


def turn(t_s: float, kind: str = "ask", answered: bool = True, **values) -> dict:
    return {
        "t_s": t_s,
        "session": int(t_s) % 2,
        "kind": kind,
        "answered": answered,
        "reason": "" if answered else values.pop("reason"),
        **values,
    }


# An hour, sampled every 10 minutes: memory grows in warm-up then rises 10 MB per hour;
# the server uses 1.5 cores (15 CPU s per 10 s... scaled: 900 s per 600 s).
SAMPLES = [sample(0.0, 500.0, 30, 0.0)] + [
    sample(t_s, 800.0 + 10.0 * t_s / 3600, 60, 1.5 * t_s) for t_s in range(600, 3601, 600)
]


def test_memory_fds_and_cpu_from_samples():
    summary = summarize(SAMPLES, [turn(10.0, speech_end_to_audio_ms=700.0)], [])
    rss = summary["memory_mb"]["server_rss"]
    assert rss["first_minute"] == pytest.approx(800.0 + 10.0 / 6)  # first sample after 60 s
    assert rss["last"] == pytest.approx(810.0)
    assert rss["second_half_range"] == [pytest.approx(805.0), pytest.approx(810.0)]
    assert rss["second_half_slope_mb_per_hour"] == pytest.approx(10.0)
    assert summary["memory_mb"]["server_anon_rss"]["second_half_slope_mb_per_hour"] == pytest.approx(10.0)
    assert summary["open_fds"] == {
        "first_minute": 60,
        "last": 60,
        "max": 60,
        "second_half_range": [60, 60],
    }
    assert summary["cpu_cores"] == pytest.approx(1.55)  # 1.5 server + 0.05 child
    assert summary["wall_minutes"] == 60.0


def test_turns_latency_and_unanswered_reasons():
    turns = [turn(float(t), speech_end_to_audio_ms=600.0 + 10 * t) for t in range(10)]
    turns += [
        turn(20.0, "barge_in", barge_in_to_silence_ms=300.0),
        turn(21.0, "barge_in", barge_in_to_silence_ms=None),
        turn(22.0, answered=False, reason="no reply turn started: None"),
        turn(23.0, answered=False, reason="no reply turn started: None"),
        turn(24.0, "barge_in", answered=False, reason="TimeoutError: no quiet avatar"),
    ]
    failures = [{"t_s": 24.0, "session": 0, "error": "TimeoutError: no quiet avatar"}]
    summary = summarize(SAMPLES, turns, failures)
    assert summary["turns"]["asked"] == 15
    assert summary["turns"]["answered"] == 12
    assert summary["turns"]["unanswered_reasons"] == {
        "no reply turn started: None": 2,
        "TimeoutError: no quiet avatar": 1,
    }
    assert summary["turns"]["barge_ins"] == 2
    assert summary["turns"]["barge_ins_not_silenced"] == 1
    assert summary["session_failures"] == {"count": 1, "reasons": {"TimeoutError: no quiet avatar": 1}}
    audio = summary["latency_ms"]["speech_end_to_audio"]
    assert audio == {"n": 10, "p50": 645.0, "p95": pytest.approx(685.5), "max": 690.0}
    assert summary["latency_ms"]["barge_in_to_silence"]["n"] == 1


def test_av_offset_ends_and_drift():
    # offsets drift +36 ms over the hour, with +-20 ms noise from one turn to the next in a
    # pattern (-, +, +, -) that leaves a least-squares slope unchanged over whole periods
    noise_ms = (-20.0, 20.0, 20.0, -20.0)
    turns = [
        turn(t_s, av_offset_pts_ms=10.0 + 36.0 * t_s / 3600 + noise_ms[i % 4])
        for i, t_s in enumerate(range(0, 3600, 100))
    ]
    av = summarize(SAMPLES, turns, [])["av_offset_pts"]
    assert av["n"] == 36
    # medians of the first and last five turns, three of each low: the highest low one wins
    assert av["first_ms"] == pytest.approx(10.0 + 36.0 * 400 / 3600 - 20.0)
    assert av["last_ms"] == pytest.approx(10.0 + 36.0 * 3500 / 3600 - 20.0)
    assert av["drift_ms_per_hour"] == pytest.approx(36.0, abs=0.1)


def test_no_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="no samples"):
        summarize([], [], [])


def test_markdown_names_the_command_and_the_verdicts():
    turns = [turn(1.0, speech_end_to_audio_ms=700.0), turn(2.0, answered=False, reason="no reply audio")]
    text = markdown(summarize(SAMPLES, turns, []), "python -m bench.serve_soak --minutes 60", "test box")
    assert "    python -m bench.serve_soak --minutes 60" in text
    assert "| turns asked / answered | 2 / 1 (unanswered: 1x no reply audio) |" in text
    assert "| server RSS 2nd-half slope | 10.0 MB/h |" in text


def test_probe_loop_stalls_are_counted():
    stalled = [
        dict(s, probe_loop_lag_ms=lag)
        for s, lag in zip(SAMPLES, [2.0, 30.0, 4000.0, 1500.0, 900.0, 5.0, 8.0], strict=True)
    ]
    assert summarize(stalled, [], [])["probe_loop_lag_ms"] == {"max": 4000.0, "samples_over_1s": 2}
    assert summarize(SAMPLES, [], [])["probe_loop_lag_ms"] == {"max": None, "samples_over_1s": 0}


def test_turn_record_names_why_a_turn_went_unanswered():
    from bench.serve_soak import turn_record
    from tests.support.live_probe_analysis import TurnResult

    silent = TurnResult(2, 0, notes=["probe 2: no avatar audio after speech end"])
    record = turn_record(silent, "ask", "q", session=2, connection=0, t_s=1.0)
    assert (record["answered"], record["reason"]) == (False, "no avatar audio after speech end")

    talking = TurnResult(1, 2, reply_started=True, speech_end_to_audio_ms=800.0)
    talking.notes = [
        "nearest frame is 60 ms from the audio onset",
        "avatar never fell silent after the interruption",
    ]
    record = turn_record(talking, "barge_in", "q", session=1, connection=0, t_s=2.0)
    assert record["answered"] is False
    assert record["reason"] == "barge-in: avatar never fell silent after the interruption"

    talking.barge_in_to_silence_ms = 300.0
    record = turn_record(talking, "barge_in", "q", session=1, connection=0, t_s=2.0)
    assert (record["answered"], record["reason"], record["speech_end_to_audio_ms"]) == (True, "", 800.0)
