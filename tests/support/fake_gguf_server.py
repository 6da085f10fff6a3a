"""A scripted stand-in for xllamacpp's `Server`, for testing `GGUFChatModel` without a model.

It has the two calls the chat model makes: `handle_chat_completions(body, callback)` blocks while
it hands each scripted chunk to the callback (stopping when the callback returns True, as
llama.cpp does), and `handle_metrics()`. Each request plays the next script (the last repeats) and
is recorded with its body, how many chunks it delivered and whether the caller stopped it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


def content_chunk(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def reply_chunks(*pieces: str) -> list[dict]:
    """A reply as llama.cpp streams it: a role chunk, content chunks, a finish chunk."""
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return [role, *(content_chunk(piece) for piece in pieces), finish]


def error_chunk(message: str, kind: str = "server_error") -> list[dict]:
    return [{"error": {"code": 500, "message": message, "type": kind}}]


@dataclass
class FakeRequest:
    body: dict
    delivered: int = 0
    stopped: bool = False
    finished: threading.Event = field(default_factory=threading.Event)


class FakeGGUFServer:
    """Plays `scripts` (lists of chunks), one per request, `chunk_delay_s` apart."""

    def __init__(self, *scripts: list[dict], chunk_delay_s: float = 0.0) -> None:
        self.scripts = list(scripts) or [reply_chunks("Hello.")]
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[FakeRequest] = []
        self.active = 0
        self.max_active = 0  # requests generating at the same moment, at most
        self._lock = threading.Lock()

    def handle_chat_completions(self, body: dict, callback) -> None:
        request = FakeRequest(body)
        with self._lock:
            script = self.scripts[min(len(self.requests), len(self.scripts) - 1)]
            self.requests.append(request)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            for chunk in script:
                time.sleep(self.chunk_delay_s)
                request.delivered += 1
                if callback(chunk):
                    request.stopped = True
                    return
        finally:
            with self._lock:
                self.active -= 1
            request.finished.set()

    def handle_metrics(self) -> str:
        return f"# HELP llamacpp:requests_processing x\nllamacpp:requests_processing {self.active}\n"
