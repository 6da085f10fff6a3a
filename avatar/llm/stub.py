"""An LLM stand-in that answers at once, for latency benchmarks and smoke tests.

Benchmarks of the live pipeline need an LLM whose thinking time is zero, so the numbers measure
our pipeline (VAD, ASR, TTS, rendering, transport) and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

DEFAULT_REPLY = "[happy] Thank you for asking! I heard you loud and clear, and I am happy to help."


class InstantReplyLLM:
    """Streams a fixed reply word by word with no delay (same interface as the LLM clients)."""

    def __init__(self, reply: str = DEFAULT_REPLY) -> None:
        self.reply = reply

    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        words = self.reply.split(" ")
        for index, word in enumerate(words):
            yield word if index == 0 else " " + word
