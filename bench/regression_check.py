"""`--check`: a benchmark's short sample against the figures documented for this machine class.

The documented figures live in bench/baselines.json (the default configuration, measured on a quiet
2-core x86 machine; docs/measurements says how). A metric regresses when it is worse than its
baseline by more than the tolerance (20 % by default: about twice the run-to-run spread of the
live latency's p50 on that machine, docs/measurements/live.md), so a real regression fails and a
noisy run does not. Run it on the machine class the baselines were taken on; a slower machine
needs its own baselines file (`--baselines`).

    .venv/bin/python -m bench.live_latency --check
    .venv/bin/python bench/render_speed.py --check
"""

from __future__ import annotations

import json
from pathlib import Path

BASELINES_PATH = Path(__file__).resolve().parent / "baselines.json"
DEFAULT_TOLERANCE = 0.20


def load_baselines(group: str, path: Path = BASELINES_PATH) -> dict:
    """{metric: {"value", "unit", "worse": "higher"|"lower"}} for one benchmark."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"cannot read the baselines {path}: {error}") from None
    if group not in table:
        raise SystemExit(f"{path} has no baselines for {group!r}")
    return table[group]


def regressions(
    measured: dict[str, float], baselines: dict, tolerance: float = DEFAULT_TOLERANCE
) -> list[str]:
    """One line per metric (printed), and the list of those that regressed. A baseline metric the
    run did not measure counts as a regression: a check that silently measures nothing passes nothing."""
    failed = []
    for metric, baseline in baselines.items():
        if metric.startswith("_"):
            continue
        value, worse = measured.get(metric), baseline["worse"]
        limit = baseline["value"] * (1 + tolerance if worse == "higher" else 1 - tolerance)
        if value is None:
            verdict = "NOT MEASURED"
        elif (value > limit) if worse == "higher" else (value < limit):
            verdict = "REGRESSED"
        else:
            verdict = "ok"
        shown = "-" if value is None else f"{value:.1f}"
        print(
            f"{verdict:>12}  {metric}: {shown} {baseline['unit']} (baseline {baseline['value']:g}, limit {limit:.1f})"
        )
        if verdict != "ok":
            failed.append(metric)
    return failed


def check(
    group: str, measured: dict[str, float], path: Path = BASELINES_PATH, tolerance: float = DEFAULT_TOLERANCE
) -> int:
    """Exit status for `--check`: 0 when nothing regressed, 1 otherwise."""
    failed = regressions(measured, load_baselines(group, path), tolerance)
    print(f"{group}: {'no regression' if not failed else 'REGRESSION in ' + ', '.join(failed)}")
    return 1 if failed else 0
