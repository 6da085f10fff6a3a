"""The benchmarks' `--check` (bench/regression_check.py): a 20 % regression fails, noise does not,
and a metric the run did not measure fails rather than passing silently."""

from __future__ import annotations

import json

from bench.regression_check import check, regressions

BASELINES = {
    "speech_end_to_moving_mouth_ms.p50": {"value": 700.0, "unit": "ms", "worse": "higher"},
    "rtf_512": {"value": 3.0, "unit": "x", "worse": "lower"},
}


def test_within_tolerance_passes_and_beyond_it_fails():
    assert regressions({"speech_end_to_moving_mouth_ms.p50": 830.0, "rtf_512": 2.5}, BASELINES) == []
    assert regressions({"speech_end_to_moving_mouth_ms.p50": 850.0, "rtf_512": 2.5}, BASELINES) == [
        "speech_end_to_moving_mouth_ms.p50"
    ]
    assert regressions({"speech_end_to_moving_mouth_ms.p50": 600.0, "rtf_512": 2.3}, BASELINES) == ["rtf_512"]


def test_a_metric_not_measured_is_a_failure(tmp_path, capsys):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps({"live": BASELINES}))
    assert check("live", {"rtf_512": 3.1}, path) == 1
    assert "NOT MEASURED  speech_end_to_moving_mouth_ms.p50" in capsys.readouterr().out
    assert check("live", {"rtf_512": 3.1, "speech_end_to_moving_mouth_ms.p50": 650.0}, path) == 0
