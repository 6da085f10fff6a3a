"""What `avatar api` checks before any handler runs, and how every error looks.

* **The key.** With API keys configured, every route except `/health` needs one, checked by a
  middleware so a new endpoint cannot forget it. It comes as `Authorization: Bearer KEY`,
  `X-API-Key: KEY`, or `?api_key=KEY` (`?token=` for the live page) for what a browser opens or
  streams without headers (EventSource).
  The comparison is the servers' own constant-time one (avatar.playout.http_edge.token_matches).
  Binding anything but loopback without a key is refused at start-up
  (`avatar.playout.http_edge.require_secret_for_bind`, shared with `avatar serve` and `avatar live`).
* **Owners.** Limits are per key: each key is an owner, named by a short hash so the key itself
  never reaches the store or a log.
* **Upload size.** A body whose Content-Length is over the limit is refused before it is read;
  without a length, `avatar.api.uploads` counts while saving.
* **Errors** are JSON `{"error": {"code", "message"}}`, one line that says what to fix; a user's
  mistake is a 4xx, never a traceback or a 500.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from avatar.core.errors import AvatarError, EngineUnavailable
from avatar.playout.http_edge import token_matches

PUBLIC_PATHS = frozenset({"/health"})
KEY_REFUSED = "missing or wrong API key (send 'Authorization: Bearer KEY')"
ANONYMOUS = "anonymous"  # the owner on a loopback service without keys


class ApiError(Exception):
    """An HTTP error with a machine-readable code and a one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def owner_of(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def presented_key(request) -> str | None:
    scheme, _, credentials = _header(request, "authorization").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    query = request.query_params
    return _header(request, "x-api-key") or query.get("api_key") or query.get("token") or None


def _header(request, name: str) -> str:
    """A header as the client's UTF-8 text (Starlette decodes header bytes as Latin-1)."""
    value = request.headers.get(name, "")
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def matching_key(presented: str | None, keys: Iterable[str]) -> str | None:
    """The configured key that was presented (every key compared, in constant time each)."""
    found = None
    for key in keys:
        if token_matches(presented, key):
            found = key
    return found


def install_edge(app, keys: tuple[str, ...], max_upload_bytes: int) -> None:
    """The key middleware, the Content-Length limit and the JSON error handlers on `app`."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.middleware("http")
    async def require_key(request, call_next):
        if keys and request.url.path not in PUBLIC_PATHS:
            key = matching_key(presented_key(request), keys)
            if key is None:
                return error_response(401, "unauthorized", KEY_REFUSED, {"WWW-Authenticate": "Bearer"})
            request.state.owner = owner_of(key)
        else:
            request.state.owner = ANONYMOUS
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_upload_bytes:
            return error_response(
                413,
                "payload_too_large",
                f"the upload is {int(length) / 1e6:.1f} MB; the limit is {limit_mb(max_upload_bytes)}",
            )
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(AvatarError)
    async def avatar_error(request, exc: AvatarError):
        if isinstance(exc, EngineUnavailable):
            return error_response(422, "engine_unavailable", str(exc))
        return error_response(400, "invalid_input", str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return error_response(400, "invalid_request", describe_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


def limit_mb(max_upload_bytes: int) -> str:
    return f"{max_upload_bytes / 1e6:g} MB"


def describe_validation(errors: list[dict]) -> str:
    """FastAPI's list of validation errors as one line: `text: Field required; size: ...`."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "header", "path"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


BODY_IDLE_TIMEOUT_S = 30.0  # uploads may be large and slow; a body that stops arriving may not hold a worker
BODY_TIMED_OUT = "the request body stopped arriving"


class BoundedBody:
    """ASGI wrapper (outermost, around the whole app): a request whose body stops arriving for
    `BODY_IDLE_TIMEOUT_S` (read at call time) is answered 408 with `Connection: close`, and the
    app sees the client as gone. uvicorn has no such timeout of its own: a client that announces
    more bytes than it sends would hold its request, and an upload's temp file, for good. Only
    the body is bounded: once it is complete, `receive` is the server's own again (a streaming
    response waits on it for the client's disconnect)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        import asyncio
        import logging

        state = {"body_done": False, "answered": False, "started": False}

        async def bounded_receive():
            if state["body_done"] or state["answered"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_TIMEOUT_S)
            except TimeoutError:
                if not state["started"]:
                    await _send_timeout(send)
                state["answered"] = True
                logging.getLogger("avatar.api").info(
                    "%s %s: body stalled for %g s: 408",
                    scope.get("method"),
                    scope.get("path"),
                    BODY_IDLE_TIMEOUT_S,
                )
                return {"type": "http.disconnect"}
            if message.get("type") != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def guarded_send(message) -> None:
            if state["answered"]:
                return  # the app's answer to a request this wrapper has answered already
            if message.get("type") == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not state["answered"]:
                raise  # the app's own fault: the server logs it as before
            # the app failed on the "disconnect" it was handed: that is the timeout, answered


async def _send_timeout(send) -> None:
    import json

    body = json.dumps({"error": {"code": "request_timeout", "message": BODY_TIMED_OUT}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
