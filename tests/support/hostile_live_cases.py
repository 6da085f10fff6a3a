"""Hostile requests against `avatar live`'s HTTP API and its viewers' comment intake (issue 18).

The app is `avatar live`'s around a real BroadcastHost over fakes, never started (no clock runs;
tests/support/edge_servers.py), with an empty avatar library in the scratch folder. Its `/offer`
gets the same offer cases as `avatar serve` (tests/support/hostile_http_cases.py); the malformed
HTTP and odd Authorization cases run there only (the same aiohttp parser and token check).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from types import SimpleNamespace

from tests.support.edge_servers import broadcast_server, served
from tests.support.hostile_check import NO_ANSWER, Case
from tests.support.hostile_http_cases import (
    BEARER,
    EVIL_ORIGIN,
    _offer_and_edge_cases,
    chunked,
    post_raw,
    request,
)

EVENT_CLIENTS = 40  # more than the event hub's 16 stream slots
_unique = itertools.count()


def unique_comment(text: str, user: str = "ann") -> dict:
    """A comment the intake has not seen (it refuses duplicates by design)."""
    return {"user": user, "text": f"{text} #{next(_unique)}"}


def comment(name: str, body=None, raw_body: bytes | None = None, expect=(202,), make=None) -> Case:
    """A case on the viewers' comment API (public: no token); `make` builds a fresh body each time."""

    async def send(target) -> tuple[int, str]:
        data = make() if make is not None else body
        return await request("POST", "/api/comments", raw_body, json_body=data, headers={})(target)

    return Case("live comments", name, send, expect)


def event_streams(count: int = EVENT_CLIENTS):
    """`count` concurrent SSE clients; answers the last one's status and the tally."""

    async def send(target) -> tuple[int, str]:
        responses = await asyncio.gather(
            *(target.client.get(target.url + "/api/events", headers=BEARER) for _ in range(count))
        )
        statuses = [response.status for response in responses]
        for response in responses:
            response.close()
        await asyncio.sleep(0.05)
        # A stream whose client left is noticed when the next event (or the 15 s heartbeat) is
        # written to it; publish one so the slots come back now.
        target.server.events_hub.publish({"type": "probe"})
        opened = statuses.count(200)
        return (503 if 503 in statuses else statuses[-1]), f"{opened} x 200, {statuses.count(503)} x 503"

    return send


def live_cases() -> list[Case]:
    surface, say = "live HTTP", "/api/say"
    nested = b"[" * 45_000 + b"]" * 45_000
    control = "/api/control/"
    return [
        *_offer_and_edge_cases(surface, control + "pause"),
        Case(surface, "say: body not JSON", request("POST", say, b"say hi"), (400,)),
        Case(surface, "say: a JSON string", request("POST", say, b'"hello"'), (400,)),
        Case(surface, "say: an empty object", request("POST", say, json_body={}), (400,)),
        Case(surface, 'say: "text": 5', request("POST", say, json_body={"text": 5}), (400,)),
        Case(surface, 'say: "text": ["a"]', request("POST", say, json_body={"text": ["a"]}), (400,)),
        Case(
            surface,
            "say: 100 000-character text",
            request("POST", say, json_body={"text": "a" * 100_000}),
            (413,),
        ),
        Case(
            surface, "say: 2001-character text", request("POST", say, json_body={"text": "a" * 2001}), (400,)
        ),
        Case(
            surface,
            "say: unknown emotion",
            request("POST", say, json_body={"text": "hi", "emotion": "furious"}),
            (400,),
        ),
        Case(surface, 'say: "now": []', request("POST", say, json_body={"text": "hi", "now": []}), (400,)),
        Case(
            surface,
            "say: RTL override, zero-width and emoji",
            request("POST", say, json_body={"text": "\u202ehi\u200b there \U0001f600"}),
            (202,),
        ),
        Case(
            surface,
            "say: CR/LF in the text",
            request("POST", say, json_body={"text": "line one\r\nline two\r"}),
            (202,),
        ),
        Case(surface, "say: body invalid UTF-8", request("POST", say, b'{"text": "\xc3\x28"}'), (400,)),
        Case(surface, "say: 45 000-deep nested JSON", request("POST", say, nested), (400,)),
        Case(surface, "say: 200 kB chunked", chunked(say), (413,)),
        Case(
            surface,
            "say: client leaves mid-body",
            post_raw(say, b'{"text": "' + b"a" * 3000, close_after=500),
            (NO_ANSWER,),
        ),
        Case(surface, "say: GET", request("GET", say), (405,)),
        Case(
            surface,
            "cross-site Origin on POST /api/say",
            request("POST", say, json_body={"text": "hi"}, headers=EVIL_ORIGIN),
            (403,),
        ),
        Case(surface, "control: unknown action", request("POST", control + "selfdestruct"), (404,)),
        Case(surface, "control: GET pause", request("GET", control + "pause"), (405,)),
        Case(
            surface,
            "control emotion: unknown",
            request("POST", control + "emotion", json_body={"emotion": "furious"}),
            (400,),
        ),
        Case(surface, "control emotion: not JSON", request("POST", control + "emotion", b"happy"), (400,)),
        Case(
            surface,
            "control emotion: a list",
            request("POST", control + "emotion", json_body={"emotion": ["happy"]}),
            (400,),
        ),
        Case(
            surface, "control avatar: name missing", request("POST", control + "avatar", json_body={}), (400,)
        ),
        Case(
            surface,
            "control avatar: unknown name",
            request("POST", control + "avatar", json_body={"avatar": "nobody"}),
            (404,),
        ),
        Case(
            surface,
            "control avatar: ../../etc/passwd",
            request("POST", control + "avatar", json_body={"avatar": "../../etc/passwd"}),
            (404,),
        ),
        Case(
            surface,
            "control avatar: RTL override, zero-width, CR/LF",
            request("POST", control + "avatar", json_body={"avatar": "\u202eMona\u200b\r\nLisa"}),
            (404,),
        ),
        Case(
            surface,
            "control avatar: 100 000-character name",
            request("POST", control + "avatar", json_body={"avatar": "a" * 99_000}),
            (400, 404),
        ),
        Case(
            surface,
            "cross-site Origin on POST /api/control/skip",
            request("POST", control + "skip", headers=EVIL_ORIGIN),
            (403,),
        ),
        Case(
            surface,
            "cross-site Origin on POST /api/comments",
            request(
                "POST", "/api/comments", json_body={"text": "x"}, headers={"Origin": "https://evil.example"}
            ),
            (403,),
        ),
        Case(surface, f"{EVENT_CLIENTS} concurrent /api/events clients", event_streams(), (503,)),
        Case(surface, "/api/events without the token", request("GET", "/api/events", headers={}), (401,)),
    ]


def comment_cases() -> list[Case]:
    return [
        comment("comment: body not JSON", raw_body=b"hello", expect=(400,)),
        comment("comment: a JSON array", raw_body=b"[]", expect=(400,)),
        comment('comment: "user": 5', {"user": 5, "text": "hi"}, expect=(400,)),
        comment('comment: "text": null', {"user": "ann", "text": None}, expect=(400,)),
        comment("comment: empty text", {"user": "ann", "text": ""}, expect=(400,)),
        comment(
            "comment: only zero-width characters",
            {"user": "ann", "text": "\u200b\u200d\ufeff"},
            expect=(400,),
        ),
        comment("comment: 100 000 characters", {"user": "ann", "text": "a" * 100_000}, expect=(413,)),
        comment("comment: 5000 characters", {"user": "ann", "text": "a" * 5000}, expect=(400,)),
        comment("comment: NUL in the text", {"user": "ann", "text": "hi\x00"}, expect=(400,)),
        comment(
            "comment: name with RTL override, zero-width, emoji",
            make=lambda: unique_comment("hello", "\u202eann\u200b\U0001f600"),
        ),
        comment("comment: name with CR/LF", make=lambda: unique_comment("hello", "ann\r\nAdmin: yes")),
        comment("comment: name of 10 000 characters", make=lambda: unique_comment("hello", "n" * 10_000)),
        comment(
            "comment: HTML and script in the text",
            make=lambda: unique_comment("<script>alert(1)</script><img src=x onerror=alert(1)>"),
        ),
        Case("live comments", "comment: the same comment twice", _duplicate, (409,)),
        comment("comment: body invalid UTF-8", raw_body=b'{"text": "\xff"}', expect=(400,)),
    ]


async def _duplicate(target) -> tuple[int, str]:
    body = unique_comment("same words")
    await request("POST", "/api/comments", json_body=body, headers={})(target)
    return await request("POST", "/api/comments", json_body=body, headers={})(target)


async def live_healthy(target) -> str:
    """/health with the token; status shows no leaked event stream; pause and resume still work."""
    async with target.client.get(target.url + "/health", headers=BEARER) as response:
        if response.status != 200 or not (await response.json()).get("ok"):
            return f"/health: {response.status}"
    for _ in range(20):  # a closed stream is noticed within a few loop turns
        async with target.client.get(target.url + "/api/status", headers=BEARER) as response:
            status = await response.json()
        if status["event_streams"]["open"] == 0 and status["monitors_open"] == 0:
            break
        await asyncio.sleep(0.05)
    else:
        return (
            f"left open: {status['event_streams']['open']} event streams, {status['monitors_open']} monitors"
        )
    for action in ("pause", "resume"):
        async with target.client.post(target.url + "/api/control/" + action, headers=BEARER) as response:
            if response.status != 200:
                return f"{action}: {response.status}"
    return "ok"


@contextlib.asynccontextmanager
async def surface_target(surface: str, scratch):
    """`avatar live`'s running app as the target of its cases: (client, url, server)."""
    server = broadcast_server()
    server.config = dataclasses.replace(server.config, library_root=scratch)
    async with served(server.app()) as (client, url):
        yield SimpleNamespace(client=client, url=url, server=server)


SURFACES = {"live HTTP": (live_healthy, live_cases), "live comments": (live_healthy, comment_cases)}
