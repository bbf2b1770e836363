"""Group commit: every write that arrives while a flush runs goes into the next flush.

One SQLite commit per message caps the relay at a fraction of its forwarding speed (measured
on this kind of machine: bench/RESULTS.md); collecting what arrived during the previous
flush and committing it in one transaction costs a few microseconds per message and adds no
timer latency. Callers await their own future, which resolves after the commit, so a sender
is acknowledged only once its message is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from server.delivery.records import AckRecord, NewMessage, StoredMessage
from server.delivery.store import Store, Write

log = logging.getLogger("agechat.relay.store")

OnStored = Callable[[list[StoredMessage]], None]
#: Called with the acks a batch applied and the (owner, blob id) of the attachments they freed.
OnAcked = Callable[[list[AckRecord], list[tuple[str, str]]], None]


class GroupCommitter:
    """The single writer of messages and acks."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        on_stored: OnStored,
        on_acked: OnAcked | None = None,
        keep_visible: Callable[[], bool] = lambda: False,
    ) -> None:
        self._on_acked = on_acked
        #: Whether acknowledged visible bodies are kept for the retention sweep (the policy's
        #: `retention.visible_days` > 0), asked at each flush so a policy reload applies.
        self._keep_visible = keep_visible
        self._store = store
        self._clock = clock
        self._on_stored = on_stored
        self._messages: list[tuple[NewMessage, asyncio.Future[StoredMessage | None]]] = []
        self._acks: list[AckRecord] = []
        self._writes: list[Write] = []
        self._barriers: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Asked for once: on Python 3.11 each `asyncio.get_running_loop()` costs a getpid()
        # system call (a fork check), and this was one per message (bench/RESULTS.md).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.batches = 0
        self.written = 0
        #: Acknowledgements applied so far (the WAL scrubber watches it).
        self.acked = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="group-commit")

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def stop(self) -> None:
        """Flush what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def submit_message(self, message: NewMessage) -> asyncio.Future[StoredMessage | None]:
        """Queue a message for the next flush. The future resolves after the commit with the
        stored row, or None when the same (sender, id) was already stored (a resend)."""
        return self._enqueue(self._messages, message)

    async def store_message(self, message: NewMessage) -> StoredMessage | None:
        """Like ``submit_message``, awaited."""
        return await self.submit_message(message)

    def submit_acks(self, acks: list[AckRecord]) -> None:
        """Queue acknowledgements; nobody waits for them (a lost ack means a redelivery,
        which the recipient de-duplicates)."""
        if self._closing:
            raise RuntimeError("the relay is shutting down")
        self._acks.extend(acks)
        self._wake.set()

    def submit_write(self, sql: str, params: tuple[object, ...]) -> None:
        """Queue a statement for the next flush's transaction (write-behind): for state the
        relay keeps in memory and only needs on disk to survive a restart (the contact-event
        log, conversations' risk state). Nobody waits; it is on disk no later than any
        message submitted after it, and a failed batch is logged."""
        if self._closing:
            raise RuntimeError("the relay is shutting down")
        self._writes.append((sql, params))
        self._wake.set()

    async def barrier(self) -> None:
        """Wait until everything submitted before this call is committed (or its batch
        failed): for readers of the tables written behind (tests, admin reads)."""
        if self._task is None or self._task.done():
            return  # not running: nothing is queued that will ever be written
        future: asyncio.Future[None] = self._running_loop().create_future()
        self._barriers.append(future)
        self._wake.set()
        await future

    def _enqueue(self, queue: list, item: object) -> asyncio.Future[Any]:
        if self._closing:
            raise RuntimeError("the relay is shutting down")
        future: asyncio.Future[Any] = self._running_loop().create_future()
        queue.append((item, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            messages, self._messages = self._messages, []
            acks, self._acks = self._acks, []
            writes, self._writes = self._writes, []
            barriers, self._barriers = self._barriers, []
            if messages or acks or writes:
                await self._flush(messages, acks, writes)
            for barrier in barriers:
                if not barrier.done():
                    barrier.set_result(None)
            if self._closing and not (
                self._messages or self._acks or self._writes or self._barriers
            ):
                return

    async def _flush(
        self,
        messages: list[tuple[NewMessage, asyncio.Future[StoredMessage | None]]],
        acks: list[AckRecord],
        writes: list[Write],
    ) -> None:
        futures = [f for _, f in messages]
        try:
            result = await self._store.write_batch(
                [m for m, _ in messages], acks, self._clock(), self._keep_visible(), writes
            )
        except Exception as exc:  # the batch failed as a whole: every caller learns it
            log.exception(
                "write batch of %d messages, %d acks, %d writes failed",
                len(messages),
                len(acks),
                len(writes),
            )
            for f in futures:
                if not f.done():
                    f.set_exception(exc)
            return
        stored = result.stored
        self.batches += 1
        self.written += len(stored)
        self.acked += len(acks)
        if result.in_order:  # the usual case: each message's row is in its place
            for (_, future), row in zip(messages, stored, strict=True):
                if not future.done():
                    future.set_result(row)
        else:
            by_key = {(s.sender, s.msg_id): s for s in stored}
            for message, future in messages:
                if not future.done():
                    future.set_result(by_key.pop((message.sender, message.msg_id), None))
        if stored:
            self._on_stored(stored)
        if acks and self._on_acked is not None:
            self._on_acked(acks, result.released)
