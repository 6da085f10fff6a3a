"""A scripted OpenAI-compatible chat server on 127.0.0.1, for testing LLM clients without a network.

It runs aiohttp on its own event loop in a thread, so both blocking (`check()`) and async clients
can talk to it from any test. Each POST /v1/chat/completions plays the next `ScriptedReply`
(the last one repeats): SSE tokens with delays, HTTP errors, a hang before the first token, a
dropped connection. Every request is recorded with its JSON body and headers, how many tokens it
was sent and whether the client went away before the reply ended.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from avatar.core.system_tools import free_port

POLL_S = 0.005  # how often a waiting handler looks whether the client has gone


@dataclass(frozen=True)
class ScriptedReply:
    """One response. `status` other than 200 answers with `error_body` (OpenAI's error shape)."""

    tokens: tuple[str, ...] = ()
    status: int = 200
    error_body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Retry-After": "0.3"}
    token_delay_s: float = 0.0  # before each token
    first_token_delay_s: float = 0.0  # before the first token (a long one: a hang)
    role_delta_first: bool = True  # `{"delta": {"role": "assistant"}}` before any content
    reasoning: tuple[str, ...] = ()  # `reasoning_content` deltas before the content
    keepalive_comments: bool = False  # a `: keep-alive` comment line before each event
    split_bytes: int | None = None  # write every event in writes of this many bytes
    drop_after_tokens: int | None = None  # cut the TCP connection after this many tokens
    error_after_tokens: int | None = None  # send an `error` event after this many tokens
    send_done: bool = True
    as_sse: bool = True  # False: one JSON completion, as a server that ignores `stream: true` sends


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict | None
    received_at_s: float  # time.monotonic()
    tokens_sent: int = 0
    completed: bool = False
    client_gone: threading.Event = field(default_factory=threading.Event)


def error_reply(status: int, message: str, **headers: str) -> ScriptedReply:
    return ScriptedReply(
        status=status,
        error_body={"error": {"message": message, "type": "invalid_request_error", "code": None}},
        headers=headers,
    )


class FakeOpenAIServer:
    """`with FakeOpenAIServer([ScriptedReply(("Hi", " there."))]) as server:` then use `server.base_url`."""

    def __init__(self, replies: list[ScriptedReply], models: tuple[str, ...] = ("tiny-model",)) -> None:
        self.replies = list(replies)
        self.models = models
        self.requests: list[RecordedRequest] = []
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __enter__(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self._run, name="fake-openai-server")
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"the fake OpenAI server did not start: {self._error}")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        try:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except BaseException as error:
            self._error = error
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _record(self, request: web.Request, body: dict | None) -> RecordedRequest:
        record = RecordedRequest(request.path, dict(request.headers), body, time.monotonic())
        self.requests.append(record)
        return record

    async def _models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        if self.replies and self.replies[0].status in (401, 403):
            return web.json_response(self.replies[0].error_body, status=self.replies[0].status)
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request, await request.json())
        index = len(self.chat_requests) - 1
        reply = self.replies[min(index, len(self.replies) - 1)]
        if reply.status != 200:
            record.completed = True
            return web.json_response(reply.error_body or {}, status=reply.status, headers=reply.headers)
        if not reply.as_sse:
            record.completed = True
            message = {"role": "assistant", "content": "".join(reply.tokens)}
            return web.json_response(
                {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            await self._play(request, response, reply, record)
        except ConnectionError:
            record.client_gone.set()
        return response

    async def _play(
        self,
        request: web.Request,
        response: web.StreamResponse,
        reply: ScriptedReply,
        record: RecordedRequest,
    ) -> None:
        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "model": (record.body or {}).get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async def send(data: str) -> None:
            event = (": keep-alive\n\n" if reply.keepalive_comments else "") + f"data: {data}\n\n"
            raw = event.encode()
            step = reply.split_bytes or len(raw)
            for start in range(0, len(raw), step):
                if self._gone(request):
                    raise ConnectionResetError("client went away")
                await response.write(raw[start : start + step])
                if reply.split_bytes:
                    await asyncio.sleep(0.002)  # separate TCP segments, so the client reads pieces

        if reply.role_delta_first:
            await send(json.dumps(chunk({"role": "assistant", "content": ""})))
        for thought in reply.reasoning:
            await send(json.dumps(chunk({"reasoning_content": thought})))
        if not await self._wait(request, reply.first_token_delay_s):
            raise ConnectionResetError("client went away before the first token")
        for index, token in enumerate(reply.tokens):
            if index == reply.drop_after_tokens:
                request.transport.abort()
                record.completed = True
                return
            if index == reply.error_after_tokens:
                await send(json.dumps({"error": {"message": "the model crashed", "type": "server_error"}}))
                record.completed = True
                return
            if index and not await self._wait(request, reply.token_delay_s):
                raise ConnectionResetError("client went away mid-reply")
            await send(json.dumps(chunk({"content": token}), ensure_ascii=False))
            record.tokens_sent += 1
        await send(json.dumps(chunk({}, "stop")))
        if reply.send_done:
            await send("[DONE]")
        await response.write_eof()
        record.completed = True

    @staticmethod
    def _gone(request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    async def _wait(self, request: web.Request, delay_s: float) -> bool:
        """Sleep `delay_s`, watching the connection; False as soon as the client has gone."""
        until = time.monotonic() + delay_s
        while time.monotonic() < until:
            if self._gone(request):
                return False
            await asyncio.sleep(min(POLL_S, until - time.monotonic()))
        return not self._gone(request)
