"""FairQueue: one holder at a time, first come first served, a cancelled waiter leaves the line, and
turns pass between event loops in different threads."""

from __future__ import annotations

import asyncio
import threading

from avatar.llm.fair_queue import FairQueue


def test_waiters_are_served_in_arrival_order_one_at_a_time():
    queue = FairQueue()
    order: list[str] = []
    holding: list[str] = []

    async def request(name: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with queue.turn():
            holding.append(name)
            assert len(holding) == 1, f"{holding} hold the model at once"
            order.append(name)
            await asyncio.sleep(0.01)
            holding.remove(name)

    async def main():
        await asyncio.gather(request("c", 0.003), request("a", 0.0), request("b", 0.001), request("d", 0.005))

    asyncio.run(main())
    assert order == ["a", "b", "c", "d"]
    assert queue.turns_granted == 4 and not queue.busy and queue.waiting == 0


def test_a_cancelled_waiter_leaves_the_line_and_never_holds_the_model():
    queue = FairQueue()
    served: list[str] = []

    async def request(name: str) -> None:
        async with queue.turn():
            served.append(name)
            await asyncio.sleep(0.02)

    async def main():
        first = asyncio.create_task(request("first"))
        await asyncio.sleep(0.001)
        gone = asyncio.create_task(request("gone"))
        last = asyncio.create_task(request("last"))
        await asyncio.sleep(0.001)
        assert queue.waiting == 2
        gone.cancel()
        await asyncio.gather(first, gone, last, return_exceptions=True)
        return gone

    gone = asyncio.run(main())
    assert gone.cancelled() and served == ["first", "last"]
    assert not queue.busy and queue.waiting == 0


def test_a_waiter_cancelled_as_its_turn_comes_passes_the_turn_on():
    queue = FairQueue()
    served: list[str] = []

    async def main():
        await queue._acquire()  # held by the test
        unlucky = asyncio.create_task(queue._acquire())
        after = asyncio.create_task(queue._acquire())
        await asyncio.sleep(0)
        queue._release()  # the turn goes to `unlucky` (granted on the next loop pass) ...
        unlucky.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(unlucky, return_exceptions=True)
        await asyncio.wait_for(after, 1.0)  # so the turn went on to the next waiter
        served.append("after")
        queue._release()

    asyncio.run(main())
    assert served == ["after"] and not queue.busy


def test_turns_pass_between_event_loops_in_different_threads():
    queue = FairQueue()
    holders: list[str] = []
    overlaps: list[str] = []
    lock = threading.Lock()

    def session(name: str) -> None:
        async def run():
            for _ in range(5):
                async with queue.turn():
                    with lock:
                        holders.append(name)
                        if len(holders) > 1:
                            overlaps.append(name)
                    await asyncio.sleep(0.002)
                    with lock:
                        holders.remove(name)

        asyncio.run(run())

    threads = [threading.Thread(target=session, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == [] and queue.turns_granted == 15 and not queue.busy
