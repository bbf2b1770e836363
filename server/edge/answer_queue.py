"""The bounded queue of one connection's sends awaiting their answers, in order.

`asyncio.Queue` would do, but it asks for the running loop each time it waits, and on
Python 3.11 that is a getpid() system call (a fork check): once per message on the relay's
hottest path (bench/RESULTS.md). This queue is told its loop once. One task reads it (the
connection's answering loop); whoever puts waits while it is full, which is the
back-pressure on a client with too many sends in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class AnswerQueue(Generic[T]):
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._loop = loop
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> bool:
        """Add ``item`` unless the queue is full (then False: `put` waits for room). The
        common case, without a coroutine."""
        if len(self._items) >= self._maxsize or self._putters:
            return False
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)
        return True

    async def put(self, item: T) -> None:
        """Add ``item``, waiting first while the queue is full."""
        while len(self._items) >= self._maxsize:
            waiter = self._loop.create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:  # cancelled: as asyncio.Queue.put does
                waiter.cancel()  # in case it isn't done yet
                with contextlib.suppress(ValueError):
                    self._putters.remove(waiter)
                if len(self._items) < self._maxsize and not waiter.cancelled():
                    self._wake_putter()  # it was given a free slot: pass it on
                raise
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    def get_nowait(self) -> T | None:
        """The oldest item, or None if there is none (items are never None here)."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._wake_putter()
        return item

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none (one reader at a time)."""
        while not self._items:
            getter = self._getter = self._loop.create_future()
            try:
                await getter
            finally:
                self._getter = None
        item = self._items.popleft()
        self._wake_putter()
        return item

    def _wake_putter(self) -> None:
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
