"""Every hostile case of issue 18, by surface: surface -> (target, health check, cases).

`target(surface, scratch)` is an async context manager yielding what the cases send to (a running
in-process app, or a scratch folder for the CLI); the health check runs after each case.
"""

from __future__ import annotations

from tests.support import hostile_cli_cases, hostile_http_cases, hostile_live_cases

SURFACES = {
    surface: (module.surface_target, healthy, cases)
    for module in (hostile_http_cases, hostile_live_cases, hostile_cli_cases)
    for surface, (healthy, cases) in module.SURFACES.items()
}
