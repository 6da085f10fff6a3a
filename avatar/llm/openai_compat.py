"""The neural LLM tier: any OpenAI-compatible chat server (Ollama, vLLM, llama.cpp, DashScope, OpenAI).

A live avatar must never go silent and never hang: until the first word arrives the client
retries what is worth retrying (connection refused, 5xx, 429 with its Retry-After), all inside
one first-token deadline, and then speaks a fallback line instead of an error. Once words have been
spoken a failure only ends the reply, because repeating the answer from its start would be worse.
Configuration mistakes (401/403 wrong key, 404 wrong model or URL) are not retried: the reason, with
its fix, goes to the log and to `last_error` for status pages.

Barge-in closes the generator (`aclose()`, or cancels the task reading it): the HTTP response is
closed at once, so the server stops generating a reply nobody will hear.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from urllib.parse import urlparse

from avatar.core.errors import EngineUnavailable, InputError
from avatar.llm.prompt import SpokenTextFilter

log = logging.getLogger(__name__)

DEFAULT_FALLBACK_LINE = "[sad] Sorry, I cannot think right now. Please ask me again in a moment."
OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_RETRY_AFTER_S = 5.0  # a longer Retry-After than this is not waited for: the user hears the fallback
CHECK_TIMEOUT_S = 5.0
_URL_HINT = (
    "start your server or set --llm-url / AVATAR_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama)"
)
_KEY_HINT = "set AVATAR_LLM_API_KEY (or OPENAI_API_KEY) to a valid key"


class _Failure(Exception):
    """Why an attempt got no reply; `retry` says whether another attempt may help."""

    def __init__(self, reason: str, retry: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry, self.retry_after_s = reason, retry, retry_after_s


class OpenAICompatibleLLM:
    """Streams chat replies from an OpenAI-compatible `/chat/completions` endpoint.

    Arguments override the environment: AVATAR_LLM_BASE_URL / OPENAI_BASE_URL, AVATAR_LLM_MODEL /
    OPENAI_MODEL, AVATAR_LLM_API_KEY / OPENAI_API_KEY (optional: local servers need none; with a key
    and no URL the OpenAI API is used).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        first_token_timeout_s: float = 10.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        temperature: float = 0.7,
        max_tokens: int = 200,
        fallback_line: str = DEFAULT_FALLBACK_LINE,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        """`timeout_s` bounds every network wait once the reply flows (a stalled stream ends the
        reply); `first_token_timeout_s` bounds the silence before the first word, retries included."""
        _require_httpx()
        env = os.environ
        self.api_key = api_key or env.get("AVATAR_LLM_API_KEY") or env.get("OPENAI_API_KEY") or None
        base_url = base_url or env.get("AVATAR_LLM_BASE_URL") or env.get("OPENAI_BASE_URL")
        if not base_url and self.api_key:
            base_url = OPENAI_BASE_URL
        if not base_url:
            raise EngineUnavailable("no LLM server is configured", _URL_HINT)
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(
                f"cannot use the LLM URL {base_url!r}", "give one like http://127.0.0.1:11434/v1"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model or env.get("AVATAR_LLM_MODEL") or env.get("OPENAI_MODEL")
        if not self.model:
            raise EngineUnavailable(
                "no LLM model name is configured",
                "set --llm-model or AVATAR_LLM_MODEL (e.g. qwen2.5:3b for Ollama, gpt-4o-mini for OpenAI)",
            )
        self.timeout_s = timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.fallback_line = fallback_line
        self.extra_headers = dict(extra_headers or {})
        self.last_error: str | None = None
        self._client = None  # httpx.AsyncClient, reused for its connection pool
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # --- setup ---------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers | self.extra_headers

    def check(self) -> list[str]:
        """Blocking, at startup: the server answers and accepts the key; returns the models it lists.

        A server that does not list models (404) passes; a model missing from the list is only
        logged, because some servers (llama.cpp) answer to any model name.
        """
        import httpx

        url = f"{self.base_url}/models"
        try:
            response = httpx.get(url, headers=self._headers(), timeout=min(self.timeout_s, CHECK_TIMEOUT_S))
        except httpx.HTTPError as error:
            self.last_error = f"cannot reach the LLM at {self.base_url} ({_describe(error)})"
            raise EngineUnavailable(self.last_error, _URL_HINT) from None
        if response.status_code in (401, 403):
            self.last_error = self._status_failure(
                response.status_code, response.headers, response.text
            ).reason
            which = "refused the API key" if self.api_key else "needs an API key"
            raise EngineUnavailable(
                f"the LLM at {self.base_url} {which} (HTTP {response.status_code})", _KEY_HINT
            )
        if response.status_code != 200:
            return []
        try:
            models = [str(entry.get("id")) for entry in response.json().get("data", [])]
        except (ValueError, AttributeError):
            return []
        if models and self.model not in models and f"{self.model}:latest" not in models:
            log.warning(
                "the LLM at %s does not list model %r (it lists: %s)", url, self.model, ", ".join(models)
            )
        return models

    def _http_client(self):
        """One pooled client per event loop (a client's connections belong to the loop that made them)."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, self.first_token_timeout_s))
            self._client = httpx.AsyncClient(timeout=timeout, headers=self._headers())
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close pooled connections (at server shutdown, on the loop that streamed)."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.aclose()

    # --- streaming -----------------------------------------------------------------------------
    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        """The reply in small text pieces; the fallback line when no reply starts in time."""
        import httpx

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_token_timeout_s
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        client = self._http_client()
        delay_s = 0.0
        for attempt in range(self.max_retries + 1):
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            to_close: list = []  # this attempt's response and readers, closed whatever happens
            try:
                try:
                    pieces, first = await asyncio.wait_for(
                        self._open_reply(client, body, to_close), max(deadline - loop.time(), 0.0)
                    )
                except asyncio.TimeoutError:
                    failure = _Failure(f"no reply from the LLM within {self.first_token_timeout_s:g} s")
                except (_Failure, httpx.HTTPError) as error:
                    failure = error if isinstance(error, _Failure) else self._transport_failure(error)
                else:
                    async with aclosing(self._rest_of_reply(pieces, first)) as rest:
                        async for text in rest:
                            yield text
                    return
            finally:
                for closable in reversed(to_close):
                    await closable.aclose()
            delay_s = self._retry_delay_s(failure, attempt, deadline - loop.time())
            if delay_s is None:
                self.last_error = failure.reason
                tries = f" after {attempt + 1} attempts" if attempt else ""
                log.warning("LLM gave no reply%s: %s; speaking the fallback line", tries, failure.reason)
                yield self.fallback_line
                return
            log.info("LLM attempt %d failed (%s); retrying in %.2f s", attempt + 1, failure.reason, delay_s)

    async def _rest_of_reply(self, pieces: AsyncIterator[str], first: str) -> AsyncIterator[str]:
        """Speakable text from the first piece on; a failure now ends the reply with what was said."""
        import httpx

        self.last_error = None
        spoken = SpokenTextFilter()
        text = spoken.feed(first)
        if text:
            yield text
        try:
            async for piece in pieces:
                text = spoken.feed(piece)
                if text:
                    yield text
        except (_Failure, httpx.HTTPError) as error:
            failure = error if isinstance(error, _Failure) else self._transport_failure(error)
            self.last_error = f"the reply broke off: {failure.reason}"
            log.warning("LLM %s; the avatar stops after what it said", self.last_error)
        text = spoken.finish()
        if text:
            yield text

    async def _open_reply(self, client, body: dict, to_close: list) -> tuple[AsyncIterator[str], str]:
        """Send the request and read up to the first piece of content: (the rest, the first piece)."""
        request = client.build_request("POST", f"{self.base_url}/chat/completions", json=body)
        response = await client.send(request, stream=True)
        to_close.append(response)
        if response.status_code != 200:
            await response.aread()
            raise self._status_failure(response.status_code, response.headers, response.text)
        pieces = _content_pieces(response)
        to_close.append(pieces)
        async for first in pieces:
            return pieces, first
        raise _Failure(
            "the LLM sent an empty reply (a thinking model may have spent max_tokens on reasoning)"
        )

    def _retry_delay_s(self, failure: _Failure, attempt: int, remaining_s: float) -> float | None:
        """Seconds to wait before the next attempt, or None when retrying is pointless or too late."""
        if not failure.retry or attempt >= self.max_retries:
            return None
        if failure.retry_after_s is not None:
            delay_s = failure.retry_after_s
            if delay_s > MAX_RETRY_AFTER_S:
                return None
        else:
            delay_s = self.backoff_s * 2**attempt
        return delay_s if delay_s < remaining_s else None

    def _transport_failure(self, error: Exception) -> _Failure:
        import httpx

        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
            return _Failure(
                f"cannot reach the LLM at {self.base_url} ({_describe(error)}): {_URL_HINT}", True
            )
        return _Failure(f"the connection to the LLM at {self.base_url} failed ({_describe(error)})", True)

    def _status_failure(self, status: int, headers, body_text: str) -> _Failure:
        detail = _error_message(body_text)
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            which = "refused the API key" if self.api_key else "needs an API key"
            return _Failure(f"the LLM at {self.base_url} {which} (HTTP {status}{said}): {_KEY_HINT}")
        if status == 404:
            return _Failure(
                f"the LLM at {self.base_url} has no model {self.model!r} or no chat endpoint (HTTP 404{said}): "
                "check --llm-model / AVATAR_LLM_MODEL, and that the URL ends in /v1"
            )
        if status == 429 or status >= 500:
            retry_after_s = _retry_after_s(headers)
            wait = f", retry after {retry_after_s:g} s" if retry_after_s is not None else ""
            return _Failure(
                f"the LLM at {self.base_url} answered HTTP {status}{wait}{said}", True, retry_after_s
            )
        return _Failure(f"the LLM at {self.base_url} refused the request (HTTP {status}{said})")


async def _content_pieces(response) -> AsyncIterator[str]:
    """The non-empty `delta.content` strings of an SSE chat stream, until `[DONE]`.

    Role-only and empty deltas, `reasoning_content` and usage chunks carry nothing to say and are
    skipped; an `error` object in the stream raises `_Failure`. A server that ignored
    `stream: true` and sent one JSON completion is read as a single piece.
    """
    if "text/event-stream" not in response.headers.get("content-type", "text/event-stream"):
        await response.aread()
        content = _completion_content(response.text)
        if content:
            yield content
        return
    async with aclosing(response.aiter_bytes()) as chunks, aclosing(_sse_data(chunks)) as events:
        async for data in events:
            if data.strip() == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                log.debug("skipping an SSE event that is not JSON: %.80s", data)
                continue
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                raise _stream_error(chunk["error"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    yield content


def _stream_error(error) -> _Failure:
    """An `error` object sent inside the stream (vLLM, OpenAI); server-side trouble may pass on retry."""
    message = _error_message(json.dumps({"error": error}))
    code = str(error.get("code") or error.get("type") or "") if isinstance(error, dict) else ""
    retry = code.startswith("5") or code in ("429", "server_error", "overloaded_error", "rate_limit_exceeded")
    return _Failure(f"the LLM reported an error: {message}", retry)


async def _sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The data of each server-sent event, however the bytes were split across network reads.

    Lines end in LF or CRLF; `:` lines are keep-alive comments; an event's data lines are joined
    with newlines and the event ends at a blank line (or at the end of the stream).
    """
    buffer = b""
    data_lines: list[str] = []
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data_lines:
                    yield "\n".join(data_lines)
                    data_lines = []
            elif line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
            # comments (":"), "event:", "id:" and "retry:" fields carry no text
    if buffer.strip().startswith(b"data:"):
        data_lines.append(buffer.strip()[5:].decode("utf-8", errors="replace").strip())
    if data_lines:
        yield "\n".join(data_lines)


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise EngineUnavailable(
            "the OpenAI-compatible LLM client needs httpx", "pip install 'talking-avatar[llm]'"
        ) from None


def _completion_content(body_text: str) -> str:
    try:
        choices = json.loads(body_text).get("choices") or []
        return str(choices[0]["message"]["content"] or "") if choices else ""
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return ""


def _error_message(body_text: str) -> str:
    """The server's own one-line explanation from an error body (OpenAI, Ollama or plain text)."""
    try:
        body = json.loads(body_text)
    except ValueError:
        body = body_text
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message", "")))
        body = error.get("message", "") if isinstance(error, dict) else error
    return " ".join(str(body).split())[:200]


def _retry_after_s(headers) -> float | None:
    """Seconds asked for by `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _describe(error: BaseException) -> str:
    """'connection refused' rather than 'All connection attempts failed' or a nested errno dump."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        text = str(cause).lower()
        for words in ("connection refused", "name or service not known", "timed out", "connection reset"):
            if words in text:
                return words
        if "temporary failure in name resolution" in text or "nodename nor servname" in text:
            return "unknown host name"
        cause = cause.__cause__ or cause.__context__
    return " ".join(str(error).split())[:120] or type(error).__name__
