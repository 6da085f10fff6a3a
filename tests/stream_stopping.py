"""Barge-in from the consumer's side, shared by the LLM client tests: read a reply stream and stop
it after a few pieces, either by closing the generator or by cancelling the task reading it."""

from __future__ import annotations

import asyncio


async def read_then_stop(stream, how: str, pieces: int = 3, poll_s: float = 0.001) -> list[str]:
    """`how` is "aclose" (the generator is closed from inside the loop) or "cancel" (the reading
    task is cancelled from outside); returns what was read."""
    got: list[str] = []

    async def listen():
        async for piece in stream:
            got.append(piece)
            if len(got) == pieces and how == "aclose":
                await stream.aclose()
                return

    task = asyncio.get_running_loop().create_task(listen())
    if how == "cancel":
        while len(got) < pieces and not task.done():
            await asyncio.sleep(poll_s)
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return got
