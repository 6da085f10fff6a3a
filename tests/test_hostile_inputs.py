"""What a hostile client found against the two servers (issue 18), each case a test.

Both apps run in-process on a free port. `avatar serve`'s routes need no engine until a session
opens, and `avatar live`'s run with a real BroadcastHost over fakes (not started: no clock runs),
so these take a second; only the slow-bodies test loads the live engines (once, for the module).
docs/measurements/hostile_inputs.md lists every case with its answer before and after.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest

from tests.conftest import SAMPLE_PORTRAIT
from tests.support.edge_servers import (
    SLOW_CLIENTS,
    TOKEN,
    broadcast_server,
    live_server,
    raw_request,
    route_requests,
    served,
    slow_offers,
)

pytest.importorskip("aiohttp")

TEST_TIMEOUT_S = 60.0


def run(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


# --- the token ------------------------------------------------------------------------------------
PUBLIC = {
    "serve": {"/health"},
    # The viewers' side of a livestream: the comment page and its API (rate-limited, moderated).
    "live": {"/health", "/comment", "/api/comments"},
}


@pytest.mark.parametrize("kind", ["serve", "live"])
def test_every_route_needs_the_token_and_a_non_ascii_one_is_a_401(kind):
    """Before: `GET /` and `/health` (avatar, persona, engine) answered without the token, and a
    non-ASCII token was a 500 (hmac.compare_digest TypeError) on every protected route."""
    server = live_server() if kind == "serve" else broadcast_server()
    app = server.app()
    requests = route_requests(app)

    async def scenario():
        answers = {}
        async with served(app) as (client, url):
            for method, path in requests:
                tries = {
                    "none": {},
                    "wrong": {"headers": {"Authorization": "Bearer wrong"}},
                    "wrong query": {"params": {"token": "wrong"}},
                    "non-ascii query": {"params": {"token": "tökén"}},
                }
                for name, options in tries.items():
                    async with client.request(method, url + path, **options) as response:
                        answers[method, path, name] = (response.status, await response.read())
                head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n"
                raw = head.encode() + "Authorization: Bearer tökén\r\n\r\n".encode()
                answers[method, path, "non-ascii header"] = await raw_request(url, raw)
        return answers

    answers = run(scenario)
    assert len(requests) >= (4 if kind == "serve" else 10)
    public_seen = set()
    for (method, path, how), (status, body) in answers.items():
        if path in PUBLIC[kind]:
            public_seen.add(path)
            assert status < 500, (method, path, how, status)
            assert b"Mona" not in body and b"stub" not in body, (path, body[:200])  # reveals nothing
            continue
        assert status == 401, (method, path, how, status, body[:200])
    assert public_seen == PUBLIC[kind]


@pytest.mark.parametrize("kind", ["serve", "live"])
def test_health_says_only_alive_without_the_token_and_everything_with_it(kind):
    server = live_server() if kind == "serve" else broadcast_server()

    async def scenario():
        async with served(server.app()) as (client, url):
            async with client.get(url + "/health") as response:
                public = await response.json()
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            async with client.get(url + "/health", headers=bearer) as response:
                full = await response.json()
        return public, full

    public, full = run(scenario)
    assert public == {"ok": True, "token_required": True}  # before: avatar, persona, reply engine
    assert full["avatar"] and full["reply_engine"] == "stub: fixed" and full["token_required"] is True


def test_without_a_token_configured_everything_stays_open():
    async def scenario():
        async with (
            served(live_server(token=None).app()) as (client, url),
            client.get(url + "/") as page,
            client.get(url + "/health") as health,
        ):
            return page.status, await health.json()

    page_status, health = run(scenario)
    assert page_status == 200 and health["avatar"] == SAMPLE_PORTRAIT.name


@pytest.mark.parametrize("kind", ["serve", "live"])
def test_a_page_asks_for_the_token_and_opens_with_it_in_the_query(kind):
    server = live_server() if kind == "serve" else broadcast_server()

    async def scenario():
        async with served(server.app()) as (client, url):
            async with client.get(url + "/") as response:
                asked = (response.status, await response.text())
            async with client.get(url + "/", params={"token": TOKEN}) as response:
                opened = (response.status, await response.text(), response.headers.get("Referrer-Policy"))
        return asked, opened

    (asked_status, form), (status, page, referrer_policy) = run(scenario)
    assert asked_status == 401 and 'name="token"' in form and "Mona" not in form
    assert status == 200 and "<html" in page.lower()
    assert referrer_policy == "no-referrer"  # the token in the URL does not leave in a Referer


def test_a_non_ascii_configured_token_works_from_the_query_and_the_header():
    """Before: any non-ASCII token in a header was a 500 (the comparison raised TypeError)."""
    token = "tökén-ключ"

    def interrupt(presented: str) -> bytes:
        return (
            "POST /sessions/x/interrupt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: 0\r\nAuthorization: Bearer {presented}\r\n\r\n"
        ).encode()

    async def scenario():
        async with served(live_server(token=token).app()) as (client, url):
            async with client.get(url + "/", params={"token": token}) as response:
                by_query = response.status
            right = (await raw_request(url, interrupt(token)))[0]
            wrong = (await raw_request(url, interrupt(token + "x")))[0]
        return by_query, right, wrong

    assert run(scenario) == (200, 404, 401)  # 404: let in, and there is no session "x"


def test_the_access_log_of_both_commands_leaves_the_token_out(monkeypatch, caplog):
    """Before: aiohttp's default format (%r) wrote `GET /?token=... HTTP/1.1` to the log."""
    from aiohttp import web

    from avatar.cli.live import _run_web_app

    started = {}
    monkeypatch.setattr(web, "run_app", lambda app, **options: started.update(options))
    engines = SimpleNamespace(reply_engine="stub", close=lambda: None)
    _run_web_app(SimpleNamespace(host="127.0.0.1", port=0), object(), engines, "banner")
    assert "access_log_class" in started, "avatar serve / avatar live run with aiohttp's default access log"

    async def scenario():
        logger_class = started["access_log_class"]
        async with (
            served(live_server().app(), access_log_class=logger_class) as (client, url),
            client.get(url + "/", params={"token": TOKEN}) as response,
        ):
            return response.status

    caplog.set_level(logging.INFO, logger="aiohttp.access")
    assert run(scenario) == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert any('"GET /"' in line and " 200 " in line for line in lines), lines
    assert not any(TOKEN in line for line in lines), lines


# --- the livestream API's text and fields -------------------------------------------------------------
def test_bad_text_is_a_400_and_the_event_stream_outlives_any_event():
    """Before: one /api/say with a lone surrogate was a 202 whose `item_queued` event raised
    UnicodeEncodeError in every open /api/events stream, which all closed."""
    server = broadcast_server()
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    async def scenario():
        async with served(server.app()) as (client, url):
            events = await client.get(url + "/api/events", headers=bearer)
            first = json.loads((await events.content.readline()).removeprefix(b"data: "))
            codes = {}
            bad = {
                "say surrogate": ("/api/say", b'{"text": "hi \\ud800"}'),
                "say NUL": ("/api/say", b'{"text": "hi \\u0000 there"}'),
                "comment surrogate": ("/api/comments", b'{"user": "ann", "text": "\\udfff?"}'),
                "comment NUL user": ("/api/comments", b'{"user": "a\\u0000nn", "text": "hello"}'),
                "avatar NUL": ("/api/control/avatar", b'{"avatar": "mona\\u0000"}'),
            }
            for name, (path, body) in bad.items():
                async with client.post(url + path, data=body, headers=bearer) as response:
                    codes[name] = (response.status, await response.json())
            server.events_hub.publish({"type": "probe", "text": "lone \ud800 surrogate"})
            server.events_hub.publish({"type": "probe", "text": "after"})
            received = []
            while True:
                line = await asyncio.wait_for(events.content.readline(), 5.0)
                if line.startswith(b"data: "):
                    event = json.loads(line.removeprefix(b"data: "))
                    if event["type"] == "probe":
                        received.append(event["text"])
                if not line or received[-1:] == ["after"]:  # the stream ended, or all came
                    break
            events.close()
        return first, codes, received

    first, codes, received = run(scenario)
    assert first["type"] == "status"
    for name, (status, body) in codes.items():
        assert status == 400, (name, status, body)
        assert "NUL" in body["error"] or "surrogate" in body["error"], (name, body)
    assert received == ["lone \ud800 surrogate", "after"]


def test_say_takes_json_booleans_only():
    """Before: `"now": "false"` was a 202 that interrupted (bool("false") is True)."""
    server = broadcast_server()
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    async def scenario():
        async with served(server.app()) as (client, url):
            typed = []
            for body in (
                {"text": "hi", "now": "false"},
                {"text": "hi", "now": 1},
                {"text": "hi", "emotion": 5},
            ):
                async with client.post(url + "/api/say", json=body, headers=bearer) as response:
                    typed.append((response.status, await response.json()))
        return typed, server.host.items.count("interjection")

    typed, queued = run(scenario)
    assert [status for status, _ in typed] == [400, 400, 400], typed
    assert '"now" must be true or false' in typed[0][1]["error"]
    assert queued == 0  # nothing was queued, nothing interrupted


def test_waiting_interjections_are_capped():
    """Before: interjections queued without limit."""
    from avatar.broadcast.items import MAX_WAITING_INTERJECTIONS

    server = broadcast_server()
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    async def scenario():
        async with served(server.app()) as (client, url):
            codes = []
            for index in range(MAX_WAITING_INTERJECTIONS + 2):
                body = {"text": f"line {index}", "now": False}
                async with client.post(url + "/api/say", json=body, headers=bearer) as response:
                    codes.append((response.status, await response.json()))
        return codes

    codes = run(scenario)
    assert MAX_WAITING_INTERJECTIONS == 50
    assert [status for status, _ in codes] == [202] * MAX_WAITING_INTERJECTIONS + [503, 503]
    assert f"the limit is {MAX_WAITING_INTERJECTIONS}" in codes[-1][1]["error"]
    assert server.host.items.count("interjection") == MAX_WAITING_INTERJECTIONS


# --- the live data channel --------------------------------------------------------------------------
def test_the_data_channel_ignores_junk_with_a_debug_line(caplog):
    """Before: `[]`, `"x"` or `5` raised AttributeError (`data.get`) in a session task (logged as
    an error); a non-string "text" was said as its repr."""
    from avatar.live.server import LiveSession

    server = live_server()
    calls = []

    class Session:
        async def interrupt(self, reason):
            calls.append(("interrupt", reason))

        async def say(self, text):
            calls.append(("say", text))

    live = LiveSession("s1", None, Session())
    junk = ["[]", '"x"', "5", "null", "not json", b"\x00\xff", '{"type": 3}', '{"type": "say", "text": 5}']
    junk += ['{"type": "say", "text": "\\ud800"}', '{"type": "say", "text": "a\\u0000b"}', '{"type": "say"}']
    caplog.set_level(logging.DEBUG, logger="avatar.live")

    async def scenario():
        for message in junk:
            await server._on_client_message(live, message)
        ignored = list(calls)
        await server._on_client_message(live, '{"type": "say", "text": "hello"}')
        return ignored

    assert run(scenario) == []
    assert calls == [("interrupt", "api"), ("say", "hello")]
    debug = [r for r in caplog.records if r.name == "avatar.live" and r.levelno == logging.DEBUG]
    assert len(debug) == len(junk) and not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- session caps under slow bodies -------------------------------------------------------------------
@pytest.fixture(scope="module")
def engines():
    pytest.importorskip("aiortc")
    from avatar.engines.live_set import LiveConfig, LiveEngines

    loaded = LiveEngines(LiveConfig(SAMPLE_PORTRAIT, size_px=256, llm="stub")).load()
    yield loaded
    loaded.close()


def test_twenty_slow_offers_open_at_most_max_sessions(engines):
    """Before: the cap was read before the body; all 20 slow offers passed it, then all opened."""
    from avatar.live.server import LiveServer
    from tests.support.loopback_ice import loopback_only
    from tests.support.offers import browser_like_offer

    server = LiveServer(engines, max_sessions=2, connect_timeout_s=1.5)

    async def scenario():
        client_pc, sdp = await browser_like_offer()
        async with served(server.app()) as (_client, url):
            codes = await slow_offers(url, sdp)
            opened = len(server.sessions)
        await client_pc.close()
        return codes, opened

    with loopback_only():
        codes, opened = asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
    assert sorted(codes) == [200, 200] + [503] * (SLOW_CLIENTS - 2), codes
    assert opened == 2


def test_twenty_slow_monitor_offers_open_at_most_max_monitors():
    pytest.importorskip("aiortc")
    from aiohttp import web

    from avatar.broadcast.monitor import MonitorPeers
    from avatar.core.clock import SystemClock
    from tests.support.loopback_ice import loopback_only
    from tests.support.offers import browser_like_offer

    server = broadcast_server(token=None)
    server.monitors = MonitorPeers(max_monitors=2, connect_timeout_s=1.5)
    server.host = SimpleNamespace(pump=SimpleNamespace(origin_s=None, clock=SystemClock()))
    app = web.Application()
    app.router.add_post("/offer", server.offer)  # `avatar live`'s handler, without its host start-up

    async def scenario():
        client_pc, sdp = await browser_like_offer()
        async with served(app) as (_client, url):
            codes = await slow_offers(url, sdp)
            opened = server.monitors.open_count
        await server.monitors.close()
        await client_pc.close()
        return codes, opened

    with loopback_only():
        codes, opened = asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
    assert sorted(codes) == [200, 200] + [503] * (SLOW_CLIENTS - 2), codes
    assert opened == 2
