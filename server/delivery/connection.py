"""One authenticated client connection and its in-order delivery loop.

Delivery order comes from the store's sequence numbers. On connect the loop sends the
backlog from the store, then live messages pushed after each commit, skipping any it already
sent. If live messages pile up (a slow reader) the in-memory queue is dropped and the loop
re-reads from the store: the store, not memory, is the source of truth, so this bounds
memory without losing anything (back-pressure).

The loop runs only while there is something to send: once it has sent everything it ends,
and the next push starts it again. An idle connection holds no task and no queue (most
connections are idle most of the time, and a relay holds thousands).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import datetime

from aiohttp import web

from protocol.codec import encode_frame_bytes
from protocol.frames import Delivered, Frame, Synced
from server.delivery.frame_writer import FrameWriter, _FlowControl
from server.delivery.records import AckRecord, StoredMessage
from server.delivery.store import Store

log = logging.getLogger("agechat.relay.delivery")

#: Live messages held in memory per connection before falling back to the store (each can
#: be up to a frame's size, so this bounds a slow reader's memory to a few MiB).
LIVE_QUEUE_LIMIT = 64
#: How long closing a connection may take before its transport is cut.
CLOSE_TIMEOUT_SECONDS = 2.0
BACKLOG_PAGE = 500


class Connection:
    """Owns the writes to one WebSocket; only the handler task reads it."""

    def __init__(
        self,
        handle: str,
        ws: web.WebSocketResponse,
        store: Store,
        franking_secret: bytes,
        transport: asyncio.Transport | None,
        flow_control: _FlowControl,
    ) -> None:
        self.handle = handle
        self.ws = ws
        self._transport = transport
        # None when the peer was gone before login finished: there is nobody to write to.
        self._writer = (
            None
            if transport is None
            else FrameWriter(ws, transport, flow_control, asyncio.get_running_loop())
        )
        self._store = store
        self._franking_secret = franking_secret  # tags e2ee deliveries (PROTOCOL.md §6.4)
        # Made when something is pushed, dropped when the delivery loop has sent it all.
        self._live: deque[StoredMessage] | None = None
        self._receipts: deque[tuple[AckRecord, datetime]] | None = None
        self._resync = False
        self._last_seq = 0
        self._delivering = False  # from start_delivery to stop_delivery
        self._task: asyncio.Task[None] | None = None  # the delivery loop, while it has work

    async def send(self, frame: Frame) -> None:
        """Send one frame; silently skipped when the socket is already closing.

        The frame goes out with the others of this turn of the loop (`FrameWriter`); the
        await is only flow control, when much is waiting or the peer reads slowly.
        """
        if self.write(frame):
            await self.drain()  # the peer may have gone away: the handler task cleans up

    def write(self, frame: Frame) -> bool:
        """`send` without a coroutine, for the per-message answers: True when the caller
        must `await drain()` before writing more (much is waiting, or the peer reads
        slowly)."""
        writer = self._writer
        if writer is None or self.ws.closed:
            return False
        writer.write(encode_frame_bytes(frame))
        return writer.must_flush

    async def drain(self) -> None:
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await writer.drain()

    def flush(self) -> None:
        """Write what waits now: before the socket is closed, so it goes first."""
        if self._writer is not None:
            self._writer.flush()

    async def close(self, code: int, reason: str, notice: Frame | None = None) -> None:
        """Say why (if the peer still reads) and close; cut the transport if that stalls.

        A peer that stopped reading must not hold up whoever closes it (a new login of the
        same account, or the relay shutting down).
        """
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                if notice is not None:
                    await self.send(notice)
                self.flush()
                await self.ws.close(code=code, message=reason.encode(), drain=False)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()

    def push(self, message: StoredMessage) -> None:
        """Called after a commit: queue a message for this connection's delivery loop.

        Once the in-memory queue overflows, it is dropped and everything from the last
        message delivered in order is re-read from the store, so nothing is skipped.
        """
        writer = self._writer_in_place()
        if writer is not None:
            if message.seq > self._last_seq:
                writer.write(encode_frame_bytes(message.to_deliver(self._franking_secret)))
                self._last_seq = message.seq
            return
        if self._resync:
            pass  # the store will supply it
        elif self._live is None:
            self._live = deque((message,))
        elif len(self._live) >= LIVE_QUEUE_LIMIT:
            self._live = None
            self._resync = True
        else:
            self._live.append(message)
        self._wake()

    def push_receipt(self, ack: AckRecord, delivered_at: datetime) -> None:
        """The recipient of one of this account's messages acknowledged it."""
        writer = self._writer_in_place()
        if writer is not None:
            receipt = Delivered(id=ack.msg_id, to=ack.recipient, delivered_at=delivered_at)
            writer.write(encode_frame_bytes(receipt))
            return
        if self._receipts is None:
            self._receipts = deque()
        if len(self._receipts) < LIVE_QUEUE_LIMIT * 16:  # receipts are best effort
            self._receipts.append((ack, delivered_at))
            self._wake()

    def _writer_in_place(self) -> FrameWriter | None:
        """The writer, if a pushed frame can be written now without the delivery loop: only
        when the loop has nothing queued before it (it isn't running) and the peer keeps up.
        That is the common case, and it saves a task per message; otherwise the loop keeps
        the order."""
        writer = self._writer
        if (
            writer is None
            or self._task is not None
            or not self._delivering
            or self._live
            or self._receipts
            or self._resync
            or writer.must_flush
            or self.ws.closed
        ):
            return None
        return writer

    def start_delivery(self) -> None:
        """The backlog from the store, `synced`, then whatever was pushed meanwhile."""
        self._delivering = True
        self._task = asyncio.create_task(self._deliver(True), name=f"deliver-{self.handle}")

    def _wake(self) -> None:
        """Start the delivery loop unless it is running (or delivery hasn't started yet)."""
        if self._task is None and self._delivering and not self.ws.closed:
            self._task = asyncio.create_task(self._deliver(False), name=f"deliver-{self.handle}")

    async def stop_delivery(self) -> None:
        self._delivering = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain_store(self) -> None:
        while True:
            page = await self._store.pending_for(self.handle, self._last_seq, BACKLOG_PAGE)
            for message in page:
                await self.send(message.to_deliver(self._franking_secret))
                self._last_seq = message.seq
            if len(page) < BACKLOG_PAGE:
                return

    async def _deliver(self, backlog: bool) -> None:
        try:
            if backlog:
                await self._drain_store()
                await self.send(Synced())
            while not self.ws.closed:
                if self._resync:
                    self._resync = False
                    self._live = None
                    await self._drain_store()
                    continue
                if not self._receipts and not self._live:
                    self._live = self._receipts = None
                    return  # all sent: the next push starts the loop again
                while self._receipts:
                    ack, delivered_at = self._receipts.popleft()
                    await self.send(
                        Delivered(id=ack.msg_id, to=ack.recipient, delivered_at=delivered_at)
                    )
                while self._live and not self._resync:
                    message = self._live.popleft()
                    if message.seq <= self._last_seq:
                        continue
                    await self.send(message.to_deliver(self._franking_secret))
                    self._last_seq = message.seq
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery to %s failed; closing its connection", self.handle)
            self.flush()
            await self.ws.close()
        finally:
            self._task = None
