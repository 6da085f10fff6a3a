"""Hostile and half-finished WebRTC offers against both servers' `POST /offer`.

A malformed offer is a 400 that says what is wrong and holds no slot; a slot is taken only by an
answered offer and comes back when that peer never connects (`connect_timeout_s`). The live server
runs in-process with real engines; the livestream's monitor (`MonitorPeers`, the object behind
`avatar live`'s `/offer`) is driven the same way, and tests/test_broadcast_page.py repeats the
malformed-offer run against a real `avatar live` process.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from tests.conftest import SAMPLE_PORTRAIT
from tests.support.edge_servers import served
from tests.support.offers import browser_like_offer, malformed_offers

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")

TEST_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def engines():
    from avatar.engines.live_set import LiveConfig, LiveEngines

    loaded = LiveEngines(LiveConfig(SAMPLE_PORTRAIT, size_px=256, llm="stub")).load()
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def loop():
    """One loop for the module: the shared engines' asyncio locks bind to the loop that used them."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run(loop, scenario):
    from tests.support.loopback_ice import loopback_only

    with loopback_only():
        return loop.run_until_complete(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


async def post(client, url: str, body: bytes) -> tuple[int, dict]:
    async with client.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
        return response.status, json.loads(await response.text())


class RequestBody:
    """The part of aiohttp's request that `read_offer` uses: UTF-8 text parsed as JSON."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def json(self):
        return json.loads(self.body.decode("utf-8"))


async def wait_until(predicate, timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def test_malformed_offers_are_400_with_the_reason_and_hold_no_session(engines, loop):
    from avatar.live.server import LiveServer

    server = LiveServer(engines, max_sessions=2, connect_timeout_s=CONNECT_TIMEOUT_S)

    async def scenario():
        client_pc, valid = await browser_like_offer()
        answers = {}
        async with served(server.app()) as (client, url):
            for name, (body, phrase) in malformed_offers(valid).items():
                answers[name] = (*await post(client, url + "/offer", body), phrase)
            status, answer = await post(
                client, url + "/offer", json.dumps({"sdp": valid, "type": "offer"}).encode()
            )
            opened = len(server.sessions)
        await client_pc.close()
        return answers, status, answer, opened

    answers, status, answer, opened = run(loop, scenario)
    assert len(answers) >= 20
    for name, (code, body, phrase) in answers.items():
        assert code == 400, (name, code, body)
        assert phrase in body["error"], (name, body)
    assert status == 200 and answer["type"] == "answer" and answer["sdp"].startswith("v=0"), answer
    assert opened == 1  # only the valid offer took a slot


def test_a_peer_that_never_connects_gives_its_slot_back(engines, loop):
    from avatar.live.server import LiveServer

    server = LiveServer(engines, max_sessions=2, connect_timeout_s=CONNECT_TIMEOUT_S)

    async def scenario():
        async with served(server.app()) as (client, url):
            offers = [await browser_like_offer() for _ in range(3)]
            codes = []
            for _pc, sdp in offers:  # answered, but the client never applies the answer: no ICE
                codes.append(
                    (await post(client, url + "/offer", json.dumps({"sdp": sdp, "type": "offer"}).encode()))[
                        0
                    ]
                )
            full = len(server.sessions)
            emptied = await wait_until(lambda: not server.sessions, CONNECT_TIMEOUT_S + 5.0)
            again = (
                await post(
                    client, url + "/offer", json.dumps({"sdp": offers[2][1], "type": "offer"}).encode()
                )
            )[0]
            for pc, _sdp in offers:
                await pc.close()
        return codes, full, emptied, again

    codes, full, emptied, again = run(loop, scenario)
    assert codes == [200, 200, 503]  # the third finds both slots held
    assert full == 2
    assert emptied, "sessions whose peer never connected were not closed"
    assert again == 200  # the slots are back


def test_the_monitor_refuses_bad_offers_and_frees_a_slot_that_never_connects(loop):
    from avatar.broadcast.monitor import MonitorPeers, MonitorsFull
    from avatar.core.clock import SystemClock
    from avatar.playout.offers import OfferError, read_offer

    monitors = MonitorPeers(max_monitors=1, connect_timeout_s=CONNECT_TIMEOUT_S)
    pump = SimpleNamespace(origin_s=None, clock=SystemClock())

    async def scenario():
        refused = 0
        client_pc, valid = await browser_like_offer()
        for body, _phrase in malformed_offers(valid).values():
            try:  # what the livestream server's /offer handler does with a request body
                await monitors.answer(await read_offer(RequestBody(body)), pump)
            except OfferError:
                refused += 1
        after_bad = monitors.open_count
        answer = await monitors.answer(valid, pump)
        with pytest.raises(MonitorsFull):
            await monitors.answer(valid, pump)
        freed = await wait_until(lambda: monitors.open_count == 0, CONNECT_TIMEOUT_S + 5.0)
        await client_pc.close()
        await monitors.close()
        return refused, after_bad, answer, freed

    refused, after_bad, answer, freed = run(loop, scenario)
    assert refused >= 20 and after_bad == 0
    assert answer["type"] == "answer"
    assert freed, "a monitor that never connected kept its slot"
