"""Every hostile case of issue 18's table, one test each: the answer is the expected 4xx (or a
one-line CLI error), never a 500, a traceback, an escaped exception or a hang, and afterwards the
server is still healthy and the process's memory did not grow (tests/support/hostile_check.py
says how that is measured and why the bounds are 2 MB a server case, 8 MB a command). The cases live in
tests/support/hostile_http_cases.py, hostile_live_cases.py and hostile_cli_cases.py; `python -m tests.support.hostile_probe
--table` prints the same runs as docs/measurements/hostile_inputs.md's table.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

pytest.importorskip("aiohttp")

from tests.support import hostile_check, hostile_http_cases
from tests.support.hostile_cases import SURFACES
from tests.support.hostile_check import Case, run_case

CASES = [case for _, _, cases in SURFACES.values() for case in cases()]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """One loop and one running target per surface for the whole module: a case that breaks a
    server also fails the health checks of the cases after it."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    targets = {}

    def target(surface: str):
        if surface not in targets:
            scratch = tmp_path_factory.mktemp(surface.replace(" ", "_"))
            opened = SURFACES[surface][0](surface, scratch)
            targets[surface] = loop.run_until_complete(stack.enter_async_context(opened))
        return targets[surface]

    yield loop, target
    loop.run_until_complete(stack.aclose())
    loop.close()


def test_at_least_sixty_distinct_cases_on_every_surface():
    ids = [case.test_id for case in CASES]
    assert len(ids) == len(set(ids)) >= 60
    assert {case.surface for case in CASES} == set(SURFACES)


@pytest.mark.parametrize("case", CASES, ids=[case.test_id for case in CASES])
def test_hostile_case(harness, case):
    loop, target = harness
    healthy = SURFACES[case.surface][1]
    outcome = loop.run_until_complete(run_case(case, target(case.surface), healthy))
    assert not outcome.problems, (outcome.code, outcome.message, outcome.problems)


# --- the check itself can fail ---------------------------------------------------------------------
def _checked(send, expect=(400,), healthy=None):
    async def ok(target) -> str:
        return "ok"

    case = Case("self-check", "x", send, expect)
    return asyncio.run(run_case(case, None, healthy or ok))


def test_the_check_catches_a_case_that_keeps_memory():
    kept = []

    async def leak(target):
        kept.append(b"\x01" * (4 << 20))  # written, so resident
        return 400, "refused"

    outcome = _checked(leak)
    assert outcome.rss_growth_bytes >= 3 << 20
    assert any("memory grew" in problem for problem in outcome.problems)


def test_the_check_catches_a_hang_an_escape_and_a_bad_health(monkeypatch):
    monkeypatch.setattr(hostile_check, "CASE_TIMEOUT_S", 0.2)

    async def hang(target):
        await asyncio.sleep(5)

    async def escape(target):
        raise KeyError("x")

    async def fine(target):
        return 400, "refused"

    async def broken(target):
        return "/health: 500"

    assert "no answer within" in _checked(hang).problems[0]
    assert "raises KeyError" in _checked(escape).problems[0]
    assert _checked(fine).problems == []
    assert _checked(fine, healthy=broken).problems == ["unhealthy afterwards: /health: 500"]
    assert "expected one of (404,)" in _checked(fine, expect=(404,)).problems[0]


def test_a_server_fault_is_still_logged_with_its_traceback_but_a_client_fault_is_one_line(caplog):
    """client_fault_logging quiets only what clients cause: a handler that raises stays an ERROR."""
    from aiohttp import web

    from avatar.playout.http_edge import client_fault_logging
    from tests.support.edge_servers import served

    async def broken(request):
        raise RuntimeError("server bug")

    def app():
        made = web.Application(handler_args=client_fault_logging())
        made.router.add_get("/", broken)
        return made

    async def send(target):
        async with served(app()) as (client, url), client.get(url + "/") as response:
            return response.status, await response.text()

    outcome = _checked(send, expect=(500,))
    assert outcome.code == 500 and any("Error handling request" in line for line in outcome.logged_errors)
    long_url = hostile_http_cases.get_raw("/?x=" + "a" * 9000)

    async def malformed(target):
        async with served(app()) as (_client, url):
            return await long_url(type("T", (), {"url": url})())

    with caplog.at_level("INFO", logger="aiohttp.server"):
        outcome = _checked(malformed)
    assert outcome.code == 400 and outcome.logged_errors == []
    assert any("LineTooLong" in record.getMessage() and not record.exc_info for record in caplog.records)
