"""An idle logged-in connection costs the relay as little as it can (issue 10, item 4: at most
20 KB each at 2,000 connections, measured by bench/relay_memory.py). Memory figures are too
noisy for a test; what they come from is not: an idle connection runs no task of the relay's
own (no delivery loop, no send-answering task, no deadline sleeping), so a change that adds
per-connection work fails here long before the benchmark is run."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from pathlib import Path

from protocol.frames import Deliver, Send
from tests.server.raw import Person, connect, new_id, request, wait_for
from tests.support import Relay, years_ago

SERVER = str(Path(__file__).resolve().parents[2] / "server")


def relay_tasks() -> collections.Counter[str]:
    """The running tasks whose coroutine is the relay's own code, by name."""
    names: collections.Counter[str] = collections.Counter()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename.startswith(SERVER):
            names[code.co_qualname] += 1
    return names


async def settled(before: collections.Counter[str], timeout: float = 3.0) -> collections.Counter:
    """The relay's tasks once they are back to ``before`` (or as they are at the timeout)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (now := relay_tasks()) != before and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return now


async def test_idle_connections_run_no_task_of_the_relays_own(relay: Relay):
    # Teens: their messages are visible, so a plain-text `send` is what the relay expects.
    people = [await Person(f"idle{i}", years_ago(15, days=i)).register(relay) for i in range(4)]
    before = relay_tasks()
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(connect(relay, p)) for p in people]
        assert await settled(before) == before
        # Busy for a moment (a message sent, delivered and acknowledged), then idle again.
        message = Send(id=new_id(), to=people[1].handle, mode="visible", body="hello")
        await request(sockets[0], message)
        await wait_for(sockets[1], lambda f: isinstance(f, Deliver) and f.id == message.id)
        after_a_send = await settled(before)
        # The sender keeps the task that answers its sends in order; nothing else stays.
        assert after_a_send - before == collections.Counter({"_Session.answer_accepts": 1})
