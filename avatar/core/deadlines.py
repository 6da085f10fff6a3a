"""Engine calls with a deadline on the caller's clock, and a check of what they hand back.

Live sessions and the livestream wait on engines they do not control: a recogniser, a chat
model, a voice or a renderer may raise, hang or return something unusable. Each such wait goes
through `guarded`: the engine's exception, a result the stage cannot use, or no result within the
stage's deadline becomes one `EngineFailed(stage)`, so the caller ends that turn or item with an
event and a fallback instead of losing the session. The deadline runs on the injected clock, so
virtual-time tests see it fire at an exact instant.

A timed-out call is cancelled, not awaited: blocking engine work in a worker thread cannot be
stopped, and waiting for it would hang the turn (and a barge-in) as the engine does. The task is
kept alive by its thread until that returns; its outcome is collected so nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from avatar.core.errors import AvatarError, EngineFailed

T = TypeVar("T")


@dataclass(frozen=True)
class StageTimeouts:
    """How long a live reply (or a livestream item) waits on each engine before giving up on it.

    Generous for a 2-core CPU: Whisper base needs ~1 s for 10 s of speech, a GGUF model queued
    behind other sessions a few seconds for its first token, CosyVoice on a CPU a few seconds per
    sentence. A stage that needs longer is broken or overloaded, and the user is better served by
    an apology than by silence. None disables a deadline (`LiveConfig.stage_timeouts`)."""

    asr_s: float | None = 30.0  # one utterance (at most 60 s of audio)
    llm_first_token_s: float | None = 30.0
    llm_token_gap_s: float | None = 15.0
    tts_s: float | None = 30.0  # a whole sentence, or one streamed chunk
    render_s: float | None = 15.0  # lip-sync: planning a sentence, or drawing one batch of frames
    max_reply_chars: int = 4000  # a chat model that never stops is cut here (about 3 minutes of speech)


CANCEL_GRACE_S = 2.0  # how long a cancelled caller waits for its engine call to stop (wall clock)
_END = object()  # a stream's end, as a value: StopAsyncIteration must not cross a task


async def _next_or_end(iterator: AsyncIterator[Any]) -> Any:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


async def within(clock, awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """`await awaitable`, or raise TimeoutError after `timeout_s` on `clock` (see module docstring)."""
    work = asyncio.ensure_future(awaitable)
    if timeout_s is None:
        return await work
    timer = asyncio.ensure_future(clock.sleep_until(clock.now_s() + timeout_s))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the caller's turn ends (barge-in): end the call with it
        work.cancel()
        work.add_done_callback(_collect)
        await asyncio.wait({work}, timeout=CANCEL_GRACE_S)  # an engine in a thread may not stop
        raise
    finally:
        timer.cancel()
    if work.done():
        return work.result()
    work.cancel()
    work.add_done_callback(_collect)
    raise TimeoutError(f"no answer within {timeout_s:g} s")


def _collect(task: asyncio.Future) -> None:
    """Retrieve an abandoned call's outcome (asyncio would log it as never retrieved)."""
    if not task.cancelled():
        task.exception()


async def guarded(
    stage: str, awaitable: Awaitable[T], *, clock, timeout_s: float | None, pass_refusals: bool = False
) -> T:
    """The result of `awaitable` as the work of `stage`; EngineFailed(stage) when it raises or
    takes longer than `timeout_s`. With `pass_refusals` an `AvatarError` (a voice's one-line
    refusal of one sentence, which the speaker skips) is passed on as it is."""
    try:
        return await within(clock, awaitable, timeout_s)
    except EngineFailed:
        raise
    except AvatarError as error:
        if pass_refusals:
            raise
        raise EngineFailed(stage, str(error)) from error
    except TimeoutError:
        raise EngineFailed(stage, f"no answer within {timeout_s:g} s (hung)") from None
    except Exception as error:  # an engine's bug or crash: the caller's turn ends, not the session
        raise EngineFailed(stage, f"{type(error).__name__}: {error}") from error


def guarded_blocking(
    stage: str, run_blocking, *, clock, timeout_s: float | None, pass_refusals: bool = False
) -> Callable[..., Awaitable[Any]]:
    """A `run_blocking` whose every call is `guarded` as `stage`."""

    async def run(fn, *args, **kwargs):
        work = run_blocking(fn, *args, **kwargs)
        return await guarded(stage, work, clock=clock, timeout_s=timeout_s, pass_refusals=pass_refusals)

    return run


async def guarded_tokens(
    tokens: AsyncIterator[Any],
    *,
    clock,
    timeouts: StageTimeouts,
    on_truncated: Callable[[int], None] | None = None,
) -> AsyncIterator[str]:
    """A chat model's stream, guarded: a token that is not text, a stream that raises, or a wait
    longer than the first-token / between-token deadline is EngineFailed("llm"); a reply longer
    than `max_reply_chars` ends there (`on_truncated(chars)`). Closing this closes the model's."""
    iterator = aiter(tokens)
    chars, first = 0, True
    try:
        while True:
            timeout_s = timeouts.llm_first_token_s if first else timeouts.llm_token_gap_s
            token = await guarded("llm", _next_or_end(iterator), clock=clock, timeout_s=timeout_s)
            if token is _END:
                return
            first = False
            if not isinstance(token, str):
                raise EngineFailed("llm", f"the model sent {type(token).__name__}, not text")
            if chars + len(token) > timeouts.max_reply_chars:
                if on_truncated is not None:
                    on_truncated(chars)
                yield token[: timeouts.max_reply_chars - chars]
                return
            chars += len(token)
            yield token
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            # A step cancelled by its deadline may still be unwinding: the cancellation closes
            # the stream then, and aclose() would only say it is running.
            with contextlib.suppress(RuntimeError):
                await aclose()
