"""What both servers (`avatar serve`, `avatar live`) check at the HTTP edge, in one place.

* **The token.** With `--token` set, every route needs it; a middleware checks it before any
  handler runs, so a new endpoint cannot forget. It comes in `Authorization: Bearer TOKEN`, or as
  `?token=TOKEN` for what a browser opens or streams without headers (the pages, EventSource).
  The comparison is on UTF-8 bytes in constant time: `hmac.compare_digest` on two `str` raises
  TypeError for non-ASCII text, which made a token like `tökén` a 500 on every endpoint. Only the
  routes a server names as public answer without it (a `/health` that says it is alive and
  nothing more, the livestream's viewer comment page); a page asked for without the token gets a
  small form that asks for it.
* **Text.** A lone surrogate (`"\\ud800"` in JSON) cannot be encoded as UTF-8, and NUL bytes break
  paths and C libraries further in: such text is refused where it arrives.
* **The access log** leaves out query strings: aiohttp's default `%r` would write `?token=` to it.
* **The error log** is for the server's faults. aiohttp logs what a client did wrong at the HTTP
  level (a request line or header over 8 KB, 100+ headers, a bare CR; a client that leaves in the
  middle of its body) as "Error handling request" at ERROR with a traceback, although it answers
  the malformed ones with a 400 itself: `client_fault_logging` makes those one INFO line.
* **Cross-site requests.** A browser sends `Origin` with every POST. One from another site's page
  (which could drive a server on this machine through its visitor's browser, token or not) is
  refused with 403 before anything else; clients that are not browsers send no `Origin` and are
  judged by the token alone.
* **The bind.** Only loopback may be served without a secret (`require_secret_for_bind`): a
  server on `0.0.0.0` without one would let anyone who can reach the port use the avatar.
* **Bodies that never end.** aiohttp waits for a body as long as the connection stays open: a
  client that announces more bytes (`Content-Length`) than it sends would hold a handler, its
  memory and a session slot for good. A body not complete within `BODY_READ_TIMEOUT_S` is a 408
  and the connection is closed (`protect` installs it on every route).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
from collections.abc import Iterable

from avatar.core.errors import InputError

TOKEN_REFUSED = "missing or wrong token"
BODY_READ_TIMEOUT_S = 10.0  # a 100 KB offer over the slowest link a browser would use: well under a second
BODY_TIMED_OUT = "the request body did not arrive in time"
REFERRER_POLICY = "no-referrer"  # a token in a page's URL must not leave in a Referer header


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine ("localhost", 127.x, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def require_secret_for_bind(
    host: str, secret: str | None, *, option: str = "--token", env: str = "AVATAR_TOKEN"
) -> None:
    """Refuse to serve another address than loopback without a secret (one line: how to fix)."""
    if not secret and not is_loopback(host):
        raise InputError(
            f"--host {host} is reachable from other machines, so a secret is required",
            f"pass {option} SECRET (or set {env}), or bind 127.0.0.1; see SECURITY.md",
        )


def token_matches(presented: str | None, token: str) -> bool:
    """Constant-time comparison of UTF-8 bytes; any text at all (non-ASCII, surrogates) is safe."""
    if not presented:
        return False
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )


def presented_token(request) -> str | None:
    """The bearer token of the Authorization header, else the `token` query parameter."""
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query.get("token") or None


def is_authorized(request, token: str | None) -> bool:
    """True without a configured token; else only with the right one (header or `?token=`)."""
    return not token or token_matches(presented_token(request), token)


def protect(app, token: str | None, *, public: Iterable[str] = (), pages: Iterable[str] = ()) -> None:
    """Require `token` on every route of `app` except the `public` paths (route patterns such as
    "/health"); `pages` answer a browser without the token with a form asking for it. Each
    request carries `request["authorized"]` for the public handlers that say more to the owner."""
    from aiohttp import web

    public_paths, page_paths = frozenset(public), frozenset(pages)

    @web.middleware
    async def require_token(request, handler):
        if not same_origin(request):
            return web.json_response({"error": CROSS_SITE_REFUSED, "message": CROSS_SITE_REFUSED}, status=403)
        request["authorized"] = is_authorized(request, token)
        if request["authorized"] or _route_path(request) in public_paths:
            return await handler(request)
        if _route_path(request) in page_paths and request.method in ("GET", "HEAD"):
            return _token_form(request)
        return web.json_response(
            {"error": TOKEN_REFUSED, "message": TOKEN_REFUSED},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="avatar"'},
        )

    async def no_referrer(request, response) -> None:
        response.headers.setdefault("Referrer-Policy", REFERRER_POLICY)

    app.middlewares.append(require_token)
    app.middlewares.append(bounded_body_middleware())
    app.on_response_prepare.append(no_referrer)


def bounded_body_middleware(timeout_s: float | None = None):
    """A middleware that answers 408 (and closes the connection) when a request's body is not
    all there within `timeout_s` (default `BODY_READ_TIMEOUT_S`, read at call time).

    The handler runs meanwhile (it may read the body as it comes, which keeps flow control going
    for a large upload); only the body's arrival is bounded, not the handler's work after it."""
    import asyncio

    from aiohttp import web

    @web.middleware
    async def bounded_body(request, handler):
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        limit_s = BODY_READ_TIMEOUT_S if timeout_s is None else timeout_s
        work = asyncio.ensure_future(handler(request))
        arrived = asyncio.ensure_future(request.content.wait_eof())
        try:
            await asyncio.wait({work, arrived}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
        if work.done() or arrived.done():
            return await work
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        logging.getLogger("aiohttp.server").info(
            "%s %s: body not complete after %g s: 408", request.method, request.path, limit_s
        )
        response = web.json_response({"error": BODY_TIMED_OUT, "message": BODY_TIMED_OUT}, status=408)
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        # aiohttp would otherwise linger up to 10 s reading the rest of a body that is not coming
        request.protocol.force_close()
        return response

    return bounded_body


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CROSS_SITE_REFUSED = "a request from another site's page is refused (Origin does not match this server)"


def same_origin(request) -> bool:
    """False for a state-changing browser request whose `Origin` names another host than the one it
    was sent to; behind a reverse proxy, the proxy must pass `Host` on (SECURITY.md)."""
    origin = request.headers.get("Origin")
    if request.method not in STATE_CHANGING or origin is None:
        return True
    from urllib.parse import urlsplit

    try:
        origin_host = urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    return bool(origin_host) and origin_host == (request.host or "").lower()


def _route_path(request) -> str | None:
    """The matched route's pattern ("/sessions/{session_id}/interrupt"); None for no route."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def _token_form(request):
    """401 for a page: a form that reopens the page with `?token=` (no detail about the server)."""
    from aiohttp import web

    path = html.escape(request.path, quote=True)
    wrong = "<p>That token is wrong.</p>" if presented_token(request) else ""
    body = (
        '<!doctype html><meta charset="utf-8"><title>Access token needed</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<h1>This server needs its access token</h1>" + wrong + f'<form method="get" action="{path}">'
        '<input type="password" name="token" autocomplete="current-password" placeholder="access token" '
        'autofocus required> <button type="submit">Open</button></form>'
    )
    return web.Response(
        text=body,
        content_type="text/html",
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="avatar"', "Cache-Control": "no-store"},
    )


def unsafe_text(value) -> str | None:
    """Why a JSON value holds text the servers refuse (lone surrogates, NUL), else None; looks
    through lists and objects, keys included."""
    if isinstance(value, str):
        if "\x00" in value:
            return "it contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "it contains a lone UTF-16 surrogate (invalid Unicode)"
        return None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        reason = unsafe_text(item)
        if reason is not None:
            return reason
    return None


class _ClientFaultLogger(logging.LoggerAdapter):
    """aiohttp's server logger, with client faults (`client_fault`) as one INFO line, no traceback."""

    def exception(self, msg, *args, exc_info=True, **kwargs) -> None:
        import sys

        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if client_fault(error):
            self.logger.info("%s: %s: %s", msg % args if args else msg, type(error).__name__, error)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


def client_fault(error: BaseException | None) -> bool:
    """A malformed HTTP message (aiohttp answered it with 400) or a client that left mid-request
    (aiohttp's own `ConnectionResetError("Connection lost")`; another reset, say of an engine's
    connection, stays an error)."""
    from aiohttp.http_exceptions import BadHttpMessage

    if isinstance(error, ConnectionResetError):
        return str(error) == "Connection lost"
    return isinstance(error, BadHttpMessage)


def client_fault_logging() -> dict:
    """`web.Application(handler_args=...)` for a server whose error log holds only its own faults."""
    return {"logger": _ClientFaultLogger(logging.getLogger("aiohttp.server"), {})}


def access_logger_class():
    """aiohttp's access logger without query strings (a `?token=` must not reach the log)."""
    from aiohttp.abc import AbstractAccessLogger

    class PathOnlyAccessLogger(AbstractAccessLogger):
        """`remote "METHOD /path" status bytes seconds`: no query string, no Referer."""

        def log(self, request, response, time: float) -> None:
            if not self.logger.isEnabledFor(logging.INFO):
                return
            self.logger.info(
                '%s "%s %s" %s %s %.3fs',
                request.remote if request is not None else "-",
                request.method if request is not None else "-",
                request.path if request is not None else "-",
                response.status,
                response.body_length,
                time,
            )

    return PathOnlyAccessLogger
