"""Hostile requests against the HTTP edge of `avatar serve` (issue 18), and the request helpers
that tests/support/hostile_live_cases.py uses for `avatar live`.

Each case is a `Case` (tests/support/hostile_check.py): what a clumsy user or an attacker sends,
the answers that are acceptable, and afterwards the surface's health check. The apps are the
in-process ones of tests/support/edge_servers.py (stand-in engines, no engine loads), one per
surface, kept up across all of its cases so that a case that breaks the server shows in the next
health checks too. `SURFACES` maps each surface to (app factory, health check, cases).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import SimpleNamespace

from tests.support.edge_servers import TOKEN, live_server, served
from tests.support.hostile_check import NO_ANSWER, Case, first_line

BEARER = {"Authorization": f"Bearer {TOKEN}"}
EVIL_ORIGIN = {**BEARER, "Origin": "https://evil.example"}
BIG_BYTES = 200_000  # twice the servers' 100 kB body limit


def _message(body: bytes) -> str:
    """The `error`/`message` of a JSON answer, else the body's first line."""
    try:
        data = json.loads(body)
    except ValueError:
        return first_line(body.decode("utf-8", "replace"))
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return first_line(data[key])
    return first_line(body.decode("utf-8", "replace"))


def request(method: str, path: str, body=None, *, headers=BEARER, json_body=None):
    """A send function: one request with aiohttp's client; (status, message)."""

    async def send(target) -> tuple[int, str]:
        data = body() if callable(body) else body
        options = {"json": json_body} if json_body is not None else {"data": data}
        async with target.client.request(method, target.url + path, headers=headers, **options) as response:
            return response.status, _message(await response.read())

    return send


def raw(head: str, body: bytes = b"", *, close_after: int | None = None):
    """A send function writing bytes as they are (what no client library sends); `close_after`
    bytes of the body are written and then the connection is dropped (no answer is read)."""

    async def send(target) -> tuple[int, str]:
        host, port = target.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head.replace("\n", "\r\n").encode("utf-8", "surrogateescape") + b"\r\n")
            if close_after is not None:
                writer.write(body[:close_after])
                await writer.drain()
                return NO_ANSWER, f"client left after {close_after} of {len(body)} body bytes"
            writer.write(body)
            await writer.drain()
            head_bytes = await reader.readuntil(b"\r\n\r\n")  # not to EOF: aiohttp lingers
            status_line, _, headers = head_bytes.partition(b"\r\n")
            length = [line for line in headers.lower().split(b"\r\n") if line.startswith(b"content-length:")]
            answer = await reader.readexactly(int(length[0].split(b":")[1])) if length else b""
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return int(status_line.split(b" ")[1]), _message(answer)

    return send


def post_raw(path: str, body: bytes, *, length: int | None = None, extra: str = "", close_after=None):
    length = len(body) if length is None else length
    head = (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\nAuthorization: Bearer {TOKEN}\n"
        f"Content-Type: application/json\nContent-Length: {length}\n{extra}"
    )
    return raw(head, body, close_after=close_after)


def get_raw(target_path: str, extra: str = ""):
    return raw(f"GET {target_path} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n{extra}")


def chunked(path: str, size: int = BIG_BYTES):
    """A body sent chunked (no Content-Length), larger than the limit."""

    async def pieces():
        for _ in range(size // 10_000):
            yield b" " * 10_000

    return request("POST", path, lambda: pieces())


def _offer_and_edge_cases(surface: str, interrupt_path: str) -> list[Case]:
    """Cases that apply to both servers' `/offer` and HTTP edge."""
    nested = b"[" * 45_000 + b"]" * 45_000
    offer = "/offer"
    return [
        Case(surface, "offer body not JSON", request("POST", offer, b"hello"), (400,)),
        Case(surface, "offer body a JSON array", request("POST", offer, b"[]"), (400,)),
        Case(
            surface, 'offer "sdp": 5', request("POST", offer, json_body={"sdp": 5, "type": "offer"}), (400,)
        ),
        Case(
            surface,
            'offer "type": "answer"',
            request("POST", offer, json_body={"sdp": "v=0", "type": "answer"}),
            (400,),
        ),
        Case(surface, "offer, empty body", request("POST", offer, b""), (400,)),
        Case(
            surface,
            "offer SDP garbage, Content-Type text/plain",
            request(
                "POST",
                offer,
                b'{"sdp": "garbage", "type": "offer"}',
                headers={**BEARER, "Content-Type": "text/plain"},
            ),
            (400,),
        ),
        Case(
            surface,
            "offer body invalid UTF-8",
            request("POST", offer, b'{"sdp": "\xff\xfe", "type": "offer"}'),
            (400,),
        ),
        Case(surface, "offer body 45 000-deep nested JSON array", request("POST", offer, nested), (400, 413)),
        Case(
            surface,
            "offer SDP of 80 000 characters",
            request("POST", offer, json_body={"sdp": "v=0\n" + "a" * 80_000, "type": "offer"}),
            (400,),
        ),
        Case(
            surface,
            "offer SDP with a NUL",
            request("POST", offer, json_body={"sdp": "v=0\x00\r\n", "type": "offer"}),
            (400,),
        ),
        Case(
            surface,
            "offer body of 200 kB with Content-Length",
            request("POST", offer, b" " * BIG_BYTES),
            (413,),
        ),
        Case(surface, "offer body of 200 kB chunked, no length", chunked(offer), (413,)),
        Case(
            surface,
            "Content-Length 10^12, 200 kB sent",
            post_raw(offer, b" " * BIG_BYTES, length=10**12),
            (413,),
        ),
        Case(
            surface,
            "client leaves mid-body (100 of 5000 bytes)",
            post_raw(offer, b" " * 5000, close_after=100),
            (NO_ANSWER,),
        ),
        Case(surface, "GET on POST-only /offer", request("GET", offer), (405,)),
        Case(surface, "DELETE /health", request("DELETE", "/health"), (405,)),
        Case(surface, "PUT on a POST route", request("PUT", interrupt_path, b"{}"), (405,)),
        Case(surface, "unknown route", request("GET", "/admin"), (404,)),
        Case(
            surface,
            "OPTIONS preflight",
            request(
                "OPTIONS",
                offer,
                headers={**BEARER, "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            ),
            (403, 405),
        ),
        Case(
            surface,
            "path traversal /../../etc/passwd",
            get_raw(f"/../../etc/passwd?token={TOKEN}"),
            (400, 404),
        ),
        Case(
            surface,
            "encoded traversal /%2e%2e/%2e%2e/etc/passwd",
            get_raw(f"/%2e%2e/%2e%2e/etc/passwd?token={TOKEN}"),
            (400, 404),
        ),
        Case(
            surface,
            "cross-site Origin on POST /offer",
            request("POST", offer, b"{}", headers=EVIL_ORIGIN),
            (403,),
        ),
        Case(
            surface,
            f"cross-site Origin on POST {interrupt_path}",
            request("POST", interrupt_path, b"{}", headers=EVIL_ORIGIN),
            (403,),
        ),
        Case(
            surface,
            'Origin "http://127.0.0.1:1" (another port)',
            request("POST", interrupt_path, b"{}", headers={**BEARER, "Origin": "http://127.0.0.1:1"}),
            (403,),
        ),
    ]


def _header_cases(surface: str, interrupt_path: str) -> list[Case]:
    """Malformed HTTP and odd Authorization headers: aiohttp's parser and http_edge's token check,
    the same code in both servers, so tried on `avatar serve` only."""
    return [
        Case(surface, "URL of 20 000 characters", get_raw("/health?x=" + "a" * 20_000), (400, 414)),
        Case(
            surface,
            "header of 20 000 characters",
            get_raw("/health", "X-Junk: " + "a" * 20_000 + "\n"),
            (400, 431),
        ),
        Case(
            surface,
            "200 headers",
            get_raw("/health", "".join(f"X-{i}: y\n" for i in range(200))),
            (200, 400, 431),
        ),
        Case(
            surface,
            'Authorization "Bearer" (no token)',
            request("POST", interrupt_path, headers={"Authorization": "Bearer"}),
            (401,),
        ),
        Case(
            surface,
            'Authorization "bearer <token>" (lower case)',
            request("POST", interrupt_path, headers={"Authorization": f"bearer {TOKEN}"}),
            (200, 404),
        ),
        Case(
            surface,
            'Authorization "Basic" with the token',
            request("POST", interrupt_path, headers={"Authorization": "Basic czNjcmV0Og=="}),
            (401,),
        ),
        Case(
            surface,
            "Authorization: the token twice",
            request("POST", interrupt_path, headers={"Authorization": f"Bearer {TOKEN} {TOKEN}"}),
            (401,),
        ),
        Case(
            surface,
            "Authorization of 7000 characters",
            request("POST", interrupt_path, headers={"Authorization": "Bearer " + "x" * 7000}),
            (401,),
        ),
        Case(
            surface,
            "Authorization with a CR/LF-injected header",
            raw(
                f"POST {interrupt_path} HTTP/1.1\nHost: x\nConnection: close\nContent-Length: 0\nAuthorization: Bearer wrong\rX-Token: {TOKEN}\n"
            ),
            (400, 401),
        ),
        Case(
            surface,
            "wrong bearer, right ?token=",
            request("POST", interrupt_path + f"?token={TOKEN}", headers={"Authorization": "Bearer wrong"}),
            (401,),
        ),
    ]


def serve_cases() -> list[Case]:
    surface = "serve HTTP"
    return [
        *_offer_and_edge_cases(surface, "/sessions/x/interrupt"),
        *_header_cases(surface, "/sessions/x/interrupt"),
        Case(
            surface,
            "interrupt a session that does not exist",
            request("POST", "/sessions/0123456789ab/interrupt"),
            (404,),
        ),
        Case(
            surface,
            "session id of 2000 characters",
            request("POST", "/sessions/" + "a" * 2000 + "/interrupt"),
            (404,),
        ),
        Case(
            surface,
            "session id with RTL override and emoji",
            request("POST", "/sessions/\u202eab\U0001f600/interrupt"),
            (404,),
        ),
    ]


# --- health checks --------------------------------------------------------------------------------
async def serve_healthy(target) -> str:
    """/health with the token says ok and no session leaked; the page still opens with the token."""
    async with target.client.get(target.url + "/health", headers=BEARER) as response:
        health = await response.json() if response.status == 200 else {}
    if not health.get("ok") or health.get("sessions") != 0:
        return f"/health: {response.status} {health}"
    async with target.client.get(target.url + "/", params={"token": TOKEN}) as response:
        return "ok" if response.status == 200 else f"GET /: {response.status}"


@contextlib.asynccontextmanager
async def surface_target(surface: str, scratch):
    """`avatar serve`'s running app as the target of its cases: (client, url, server)."""
    server = live_server()
    async with served(server.app()) as (client, url):
        yield SimpleNamespace(client=client, url=url, server=server)


SURFACES = {"serve HTTP": (serve_healthy, serve_cases)}
