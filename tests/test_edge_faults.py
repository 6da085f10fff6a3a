"""Clients that vanish or stall at the HTTP edge of both servers (issue 18): a closed event stream
frees its slot at once, and a body that never completes is a 408 with the connection closed."""

from __future__ import annotations

import asyncio
import time

import pytest

from avatar.broadcast import events as events_module
from avatar.playout import http_edge
from tests.support.edge_servers import broadcast_server, live_server, served

pytest.importorskip("aiohttp")


def run(scenario, timeout_s: float = 30.0):
    return asyncio.run(asyncio.wait_for(scenario(), timeout_s))


async def open_raw(url: str, head: bytes):
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    await writer.drain()
    return reader, writer


def test_a_closed_event_stream_frees_its_slot_at_once_with_no_event_or_heartbeat():
    server = broadcast_server(token=None)
    hub = server.events_hub

    async def scenario():
        async with served(server.app()) as (_, url):
            reader, writer = await open_raw(url, b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"data: ")  # the first event (the status) has come
            assert b"200" in head.split(b"\r\n", 1)[0] and hub.reader_count == 1
            writer.close()  # the page is closed: nothing is published from now on
            closed_at = time.monotonic()
            while hub.reader_count and time.monotonic() - closed_at < 5.0:
                await asyncio.sleep(0.01)
            return hub.reader_count, time.monotonic() - closed_at

    readers, freed_after_s = run(scenario)
    assert readers == 0
    # within one disconnect check (plus scheduling), far below the 15 s heartbeat
    assert freed_after_s < events_module.DISCONNECT_CHECK_S + 0.5 < events_module.SSE_HEARTBEAT_S


@pytest.mark.parametrize(
    ("make_server", "path"),
    [(live_server, "/offer"), (broadcast_server, "/api/say")],
    ids=["avatar-serve", "avatar-live"],
)
def test_a_body_that_never_completes_is_a_408_and_the_connection_closes(make_server, path, monkeypatch):
    monkeypatch.setattr(http_edge, "BODY_READ_TIMEOUT_S", 0.5)
    server = make_server(token=None)

    async def scenario():
        async with served(server.app()) as (client, url):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 5000\r\n\r\n"
            ).encode()
            reader, writer = await open_raw(url, head + b'{"text": "only the start')  # 5000 promised
            started = time.monotonic()
            answer = await asyncio.wait_for(reader.read(), 10.0)  # read() returns at EOF: closed
            waited_s = time.monotonic() - started
            writer.close()
            healthy = await client.get(url + "/health")  # the server goes on
            return answer, waited_s, healthy.status

    answer, waited_s, health_status = run(scenario)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert http_edge.BODY_TIMED_OUT.encode() in answer
    assert 0.5 <= waited_s < 2.0
    assert health_status == 200


def test_a_slow_but_complete_body_is_served_normally(monkeypatch):
    """Bounded arrival, not a refusal of slow clients: a body spread over 0.3 s of a 1 s limit."""
    monkeypatch.setattr(http_edge, "BODY_READ_TIMEOUT_S", 1.0)
    server = broadcast_server(token=None)

    async def scenario():
        async with served(server.app()) as (_, url):
            body = b'{"text": "Hello there."}'
            head = f"POST /api/say HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            reader, writer = await open_raw(url, head.encode() + body[:5])
            await asyncio.sleep(0.3)
            writer.write(body[5:])
            answer = await asyncio.wait_for(reader.read(), 10.0)
            writer.close()
            return answer

    answer = run(scenario)
    assert not answer.startswith(b"HTTP/1.1 408"), answer[:120]
    assert answer.split(b" ", 2)[1] in (b"200", b"202", b"503"), answer[:120]


def test_avatar_api_a_stalled_body_is_a_408_and_the_server_goes_on(monkeypatch):
    """`avatar api` runs under uvicorn, which has no body timeout: `BoundedBody` (its outermost
    layer, as `avatar api` serves it) answers 408 and the next request is served."""
    pytest.importorskip("fastapi")
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from avatar.api import edge
    from avatar.core.system_tools import free_port

    monkeypatch.setattr(edge, "BODY_IDLE_TIMEOUT_S", 0.5)

    async def echo(request):
        return JSONResponse({"bytes": len(await request.body())})

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(edge.BoundedBody(app), host="127.0.0.1", port=port, log_level="warning")
    )

    async def scenario():
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        try:
            head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            reader, writer = await open_raw(url, head + b'{"a": 1')
            started = time.monotonic()
            answer = await asyncio.wait_for(reader.read(), 10.0)
            waited_s = time.monotonic() - started
            writer.close()
            body = b'{"a": 1}'
            reader, writer = await open_raw(
                url,
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n" + body,
            )
            normal = await asyncio.wait_for(reader.read(), 10.0)
            writer.close()
            return answer, waited_s, normal
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 10.0)

    answer, waited_s, normal = run(scenario)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert edge.BODY_TIMED_OUT.encode() in answer and b"connection: close" in answer.lower()
    assert 0.5 <= waited_s < 2.0
    assert normal.startswith(b"HTTP/1.1 200 ") and normal.endswith(b'{"bytes":8}')
