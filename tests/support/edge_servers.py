"""In-process servers and slow clients for the hostile-input tests and probe (issue 18).

`avatar serve`'s app runs over stand-in engines (no route touches an engine before an offer) and
`avatar live`'s around a real BroadcastHost over fakes that is never started (no clock runs), so
a test of the HTTP edge takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from types import SimpleNamespace

from tests.conftest import SAMPLE_PORTRAIT

TOKEN = "s3cret"


@contextlib.asynccontextmanager
async def served(app, **runner_options):
    """`app` on a free 127.0.0.1 port with a client session; yields (client, base url)."""
    import aiohttp
    from aiohttp import web

    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as client:
            yield client, f"http://127.0.0.1:{port}"
    finally:
        await asyncio.wait_for(runner.cleanup(), 20.0)


def live_server(token: str | None = TOKEN):
    """`avatar serve`'s app over stand-in engines: no route touches an engine before an offer."""
    from avatar.engines.live_set import LiveConfig
    from avatar.live.server import LiveServer

    engines = SimpleNamespace(
        config=LiveConfig(SAMPLE_PORTRAIT, llm="stub"), reply_engine="stub: fixed", turn_rule="silence"
    )
    return LiveServer(engines, token=token)


def broadcast_server(token: str | None = TOKEN):
    """`avatar live`'s app around a real BroadcastHost over fakes, never started (no clock runs)."""
    from avatar.broadcast.comments import CommentIntake
    from avatar.broadcast.host import BroadcastHost
    from avatar.broadcast.server import BroadcastConfig, BroadcastServer
    from avatar.core.clock import SystemClock
    from avatar.engines.live_set import LiveConfig
    from tests.support.fakes import FlatLipSync, ScriptedLLM, ToneTTS

    config = BroadcastConfig(
        live=LiveConfig(SAMPLE_PORTRAIT, llm="stub"), token=token, heap_trim_interval_s=0
    )
    server = BroadcastServer(config, SimpleNamespace(reply_engine="stub: fixed"))

    async def start() -> None:
        clock = SystemClock()
        server.host = BroadcastHost(
            tts=ToneTTS(),
            lipsync=FlatLipSync(),
            llm=ScriptedLLM([]),
            clock=clock,
            intake=CommentIntake(clock, per_user_interval_s=0.0, global_per_minute=1000),
            on_event=server._publish,
            avatar_name="Mona Lisa",
        )

    server.start = start  # the app's start-up hook builds this host instead of loading engines
    return server


def route_requests(app) -> list[tuple[str, str]]:
    """(method, path) for every route, path parameters filled with "x"."""
    return [
        (route.method, re.sub(r"\{[^}]+\}", "x", route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None
    ]


async def raw_request(url: str, head: bytes) -> tuple[int, bytes]:
    """Send request bytes as they are (a UTF-8 header value no HTTP client library would send)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[-1]


SLOW_CLIENTS = 20
SLOW_BODY_S = 1.0


async def slow_body(body: bytes, pieces: int = 5):
    """The body in `pieces`, spread over SLOW_BODY_S (chunked), as a slow or hostile client sends it."""
    step = -(-len(body) // pieces)
    for start in range(0, len(body), step):
        yield body[start : start + step]
        await asyncio.sleep(SLOW_BODY_S / pieces)


async def slow_offers(url: str, sdp: str) -> list[int]:
    import aiohttp

    body = json.dumps({"sdp": sdp, "type": "offer"}).encode()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as client:

        async def one() -> int:
            async with client.post(url + "/offer", data=slow_body(body), headers=headers) as response:
                return response.status

        return list(await asyncio.gather(*(one() for _ in range(SLOW_CLIENTS))))
