"""AnswerQueue: in order, a full queue holds up whoever puts, and a cancelled wait loses
no slot (the same contract as asyncio.Queue, which it stands in for)."""

from __future__ import annotations

import asyncio

import pytest

from server.edge.answer_queue import AnswerQueue


async def test_items_come_out_in_order_and_get_waits_for_one() -> None:
    queue: AnswerQueue[int] = AnswerQueue(asyncio.get_running_loop(), 4)
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not reader.done()
    await queue.put(1)
    assert await reader == 1
    for i in range(2, 5):
        await queue.put(i)
    assert [await queue.get() for _ in range(3)] == [2, 3, 4]


async def test_a_full_queue_holds_up_the_putter_until_one_is_taken() -> None:
    queue: AnswerQueue[int] = AnswerQueue(asyncio.get_running_loop(), 2)
    await queue.put(1)
    await queue.put(2)
    third = asyncio.create_task(queue.put(3))
    await asyncio.sleep(0.01)
    assert not third.done() and len(queue) == 2
    assert await queue.get() == 1
    await asyncio.wait_for(third, 1)
    assert [await queue.get(), await queue.get()] == [2, 3]


async def test_a_cancelled_put_passes_its_slot_on() -> None:
    queue: AnswerQueue[str] = AnswerQueue(asyncio.get_running_loop(), 1)
    await queue.put("a")
    first = asyncio.create_task(queue.put("b"))
    second = asyncio.create_task(queue.put("c"))
    await asyncio.sleep(0)
    assert await queue.get() == "a"  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs: `second` gets the slot
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert await queue.get() == "c"
