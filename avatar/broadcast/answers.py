"""A viewer's comment answered on air: the chat model's reply, or a spoken fallback, as script.

Kept apart from the host's clock and queues because it is the one part that waits on a model
that may hang, fail or write brackets that are not our tags: whatever it does, the show gets
something speakable and the operator an event.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from avatar.broadcast.items import HostItem
from avatar.core.deadlines import StageTimeouts, guarded_tokens, within
from avatar.core.errors import EngineFailed
from avatar.core.text_script import parse_script
from avatar.core.types import TextSegment

log = logging.getLogger("avatar.broadcast")

ANSWER_TIMEOUT_S = 20.0
FALLBACK_ANSWER = "Sorry, I cannot answer that right now. Let me come back to it later."
_STRAY_BRACKETS = re.compile(r"[\[\]]")


async def answer_comment(
    llm,
    system_prompt: str,
    item: HostItem,
    *,
    timeout_s: float,
    emit: Callable[..., Any],
    clock,
    timeouts: StageTimeouts | None = None,
) -> str:
    """The model's whole answer to `item`'s comment (tags kept), or FALLBACK_ANSWER when it fails,
    hangs past `timeout_s` (on `clock`) or a token deadline of `timeouts`, sends something that
    is not text, or says nothing; a failure is also an `answer_failed` event (stage llm). An
    answer longer than `timeouts.max_reply_chars` is cut there."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": item.source_text, "name": item.user})
    try:
        tokens = guarded_tokens(llm.stream(messages), clock=clock, timeouts=timeouts or StageTimeouts())
        answer = await within(clock, collect(tokens), timeout_s)
    except Exception as error:  # any LLM failure: the audience hears a fallback, the operator an event
        if isinstance(error, EngineFailed):
            detail = error.detail
        elif isinstance(error, TimeoutError):
            detail = f"TimeoutError: no answer within {timeout_s:g} s"
        else:
            detail = f"{type(error).__name__}: {error}"
        log.warning("answering comment %s failed: %s", item.comment_id, detail)
        emit("answer_failed", comment_id=item.comment_id, stage="llm", error=detail)
        answer = FALLBACK_ANSWER
    return answer.strip() or FALLBACK_ANSWER


def spoken_answer(item: HostItem, answer: str, *, read_aloud: bool) -> tuple[str, tuple[TextSegment, ...]]:
    """(what the operator reads: the words without tags, what the avatar says: tagged segments),
    the comment itself read out first when `read_aloud`."""
    lead = f"{item.user} asks: {item.source_text}" if read_aloud else ""
    try:
        segments = parse_script(f"{plain(lead)} {answer}" if lead else answer)
    except ValueError:  # the LLM wrote brackets that are not our tags: say them as plain text
        segments = parse_script(plain(f"{lead} {answer}"))
    try:
        text = " ".join(segment.text for segment in parse_script(answer) if segment.text)
    except ValueError:
        text = plain(answer).strip()
    return text, tuple(segments)


async def collect(tokens: AsyncIterator[str]) -> str:
    """Every piece of a reply stream, which is closed however the wait ends (a timeout included),
    so a model generating on its own thread stops too."""
    parts = []
    try:
        async for token in tokens:
            parts.append(token)
    finally:
        aclose = getattr(tokens, "aclose", None)
        if aclose is not None:
            await aclose()
    return "".join(parts)


def plain(text: str) -> str:
    """Brackets that would read as tags, blanked."""
    return _STRAY_BRACKETS.sub(" ", text)
