"""The serve soak's summary: plain functions over its samples and turns (bench/serve_soak.py).

Kept apart from the runner so it can be tested with hand-made samples and rerun on the
`.samples.jsonl` / `.turns.jsonl` of a run that crashed or was stopped:

    .venv/bin/python -m bench.serve_soak_report docs/measurements/serve_soak_2h.json

Warm-up is the first minute: model loading, the first sessions' buffers and the allocator's
arenas grow memory then, so "flat" is judged on the second half of the run (range and slope).
The A/V offset of a reply is measured per turn by the probe (correlation of the audio envelope
with mouth activity, on RTCP sender times); single turns are noisy (one video frame is 40 ms),
so first and last are medians of the first and last few turns and drift is a fit over all.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from bench.livestream_soak import fit_slope_per_hour
from tests.support.live_probe_analysis import percentile_ms

WARM_UP_S = 60.0
AV_ENDS = 5  # turns whose median gives the first / last A/V offset


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _latency(turns: list[dict], key: str) -> dict:
    values = [t[key] for t in turns if t.get(key) is not None]
    return {
        "n": len(values),
        "p50": _rounded(percentile_ms(values, 50)),
        "p95": _rounded(percentile_ms(values, 95)),
        "max": _rounded(max(values)) if values else None,
    }


def _counts(samples: list[dict], steady: list[dict], key: str) -> dict:
    warm = next((s for s in samples if s["t_s"] >= WARM_UP_S), samples[-1])
    return {
        "first_minute": warm[key],
        "last": samples[-1][key],
        "max": max(s[key] for s in samples),
        "second_half_range": [min(s[key] for s in steady), max(s[key] for s in steady)],
    }


def _memory(samples: list[dict], steady: list[dict], key: str) -> dict:
    slope = fit_slope_per_hour([s["t_s"] for s in steady], [s[key] for s in steady])
    return {**_counts(samples, steady, key), "second_half_slope_mb_per_hour": _rounded(slope)}


def _av_offset(turns: list[dict]) -> dict:
    measured = [t for t in turns if t.get("av_offset_pts_ms") is not None]
    offsets = [t["av_offset_pts_ms"] for t in measured]
    return {
        "n": len(offsets),
        "first_ms": _rounded(percentile_ms(offsets[:AV_ENDS], 50)),
        "last_ms": _rounded(percentile_ms(offsets[-AV_ENDS:], 50)),
        "p50_ms": _rounded(percentile_ms(offsets, 50)),
        "range_ms": [min(offsets), max(offsets)] if offsets else None,
        "drift_ms_per_hour": _rounded(fit_slope_per_hour([t["t_s"] for t in measured], offsets)),
    }


def _cpu_cores(samples: list[dict]) -> float | None:
    first, last = samples[0], samples[-1]
    wall_s = last["t_s"] - first["t_s"]
    if wall_s <= 0:
        return None
    used_s = (last["cpu_s"] + last["children_cpu_s"]) - (first["cpu_s"] + first["children_cpu_s"])
    return round(used_s / wall_s, 3)


def _loop_lag(samples: list[dict]) -> dict:
    """The probes' own event-loop lag: seconds of it (a starved or stopped probe process) let
    ICE consent checks go unanswered and the server close the session, which is no server fault."""
    lags_ms = [s["probe_loop_lag_ms"] for s in samples if s.get("probe_loop_lag_ms") is not None]
    return {
        "max": max(lags_ms) if lags_ms else None,
        "samples_over_1s": sum(1 for lag in lags_ms if lag > 1000),
    }


def summarize(samples: list[dict], turns: list[dict], failures: list[dict]) -> dict:
    """The soak's verdict numbers: turns answered, latencies, memory, fds, CPU, A/V drift.

    `samples`: server /proc readings (t_s, rss_mb, anon_rss_mb, fds, threads, cpu_s,
    children_rss_mb, children_cpu_s, sessions); `turns`: one dict per turn (t_s, session, kind,
    answered, reason, latencies in ms); `failures`: probe sessions that broke (t_s, session, error).
    """
    if not samples:
        raise ValueError("no samples: the soak ended before its first 10 s sample")
    steady = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2]
    unanswered = [t for t in turns if not t["answered"]]
    barge_ins = [t for t in turns if t["kind"] == "barge_in" and t["answered"]]
    return {
        "wall_minutes": round(samples[-1]["t_s"] / 60, 1),
        "turns": {
            "asked": len(turns),
            "answered": len(turns) - len(unanswered),
            "unanswered": len(unanswered),
            "unanswered_reasons": dict(Counter(t["reason"] for t in unanswered)),
            "barge_ins": len(barge_ins),
            "barge_ins_not_silenced": sum(1 for t in barge_ins if t.get("barge_in_to_silence_ms") is None),
            "by_session": dict(sorted(Counter(str(t["session"]) for t in turns).items())),
        },
        "session_failures": {
            "count": len(failures),
            "reasons": dict(Counter(f["error"] for f in failures)),
        },
        "latency_ms": {
            "speech_end_to_audio": _latency(turns, "speech_end_to_audio_ms"),
            "barge_in_to_silence": _latency(turns, "barge_in_to_silence_ms"),
        },
        "av_offset_pts": _av_offset(turns),
        "memory_mb": {
            "server_rss": _memory(samples, steady, "rss_mb"),
            "server_anon_rss": _memory(samples, steady, "anon_rss_mb"),
            "children_rss": _memory(samples, steady, "children_rss_mb"),
        },
        "open_fds": _counts(samples, steady, "fds"),
        "threads": _counts(samples, steady, "threads"),
        "server_sessions_last": samples[-1].get("sessions"),
        "probe_loop_lag_ms": _loop_lag(samples),
        "cpu_cores": _cpu_cores(samples),
    }


def markdown(summary: dict, command: str, machine: str) -> str:
    """A section for docs/measurements/live.md: the command and the verdict numbers."""
    turns, latency, av = summary["turns"], summary["latency_ms"], summary["av_offset_pts"]
    rss, anon, fds = (
        summary["memory_mb"]["server_rss"],
        summary["memory_mb"]["server_anon_rss"],
        summary["open_fds"],
    )
    audio, barge = latency["speech_end_to_audio"], latency["barge_in_to_silence"]
    reasons = "; ".join(f"{n}x {r}" for r, n in turns["unanswered_reasons"].items()) or "none"
    rows = [
        ("turns asked / answered", f"{turns['asked']} / {turns['answered']} (unanswered: {reasons})"),
        ("barge-ins / not silenced", f"{turns['barge_ins']} / {turns['barge_ins_not_silenced']}"),
        ("probe session failures", str(summary["session_failures"]["count"])),
        ("speech end -> first reply audio p50 / p95", f"{audio['p50']} / {audio['p95']} ms"),
        ("barge-in -> silence p50 / p95", f"{barge['p50']} / {barge['p95']} ms"),
        (
            "server RSS first minute / last / 2nd-half range",
            f"{rss['first_minute']} / {rss['last']} / {rss['second_half_range']} MB",
        ),
        ("server RSS 2nd-half slope", f"{rss['second_half_slope_mb_per_hour']} MB/h"),
        ("anon RSS 2nd-half slope", f"{anon['second_half_slope_mb_per_hour']} MB/h"),
        (
            "open fds first minute / last / 2nd-half range",
            f"{fds['first_minute']} / {fds['last']} / {fds['second_half_range']}",
        ),
        ("threads 2nd-half range", str(summary["threads"]["second_half_range"])),
        ("A/V offset first / last (pts, ms)", f"{av['first_ms']} / {av['last_ms']} (n={av['n']})"),
        ("A/V drift", f"{av['drift_ms_per_hour']} ms/h"),
        ("server CPU (cores, incl. children)", str(summary["cpu_cores"])),
        (
            "probe loop lag max / samples over 1 s",
            f"{summary['probe_loop_lag_ms']['max']} ms / {summary['probe_loop_lag_ms']['samples_over_1s']}",
        ),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return (
        f"## Serve soak: {summary['wall_minutes']} min, {len(turns['by_session'])} sessions\n\n"
        f"    {command}\n\nMachine: {machine}\n\n| measure | value |\n|---|---|\n{table}\n"
    )


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """Re-summarize a run from its .samples.jsonl / .turns.jsonl / .failures.jsonl."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("report", type=Path, help="the soak's --report path (its jsonl files lie beside it)")
    report = parser.parse_args(argv).report
    logs = [read_jsonl(report.with_suffix(s)) for s in (".samples.jsonl", ".turns.jsonl", ".failures.jsonl")]
    if not logs[0]:
        parser.error(
            f"no samples beside {report} ({report.with_suffix('.samples.jsonl')} is missing or empty)"
        )
    print(json.dumps(summarize(*logs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
