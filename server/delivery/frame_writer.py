"""Writes one connection's text frames, coalescing those of one turn of the event loop.

Under load a connection is sent several frames at once: the `accepted` answers of a
group commit, the messages it released, the receipts of a batch of acks. Written one by
one (as aiohttp's `send_frame` does) each frame is a `send` system call, and on loopback the
kernel does the receiver's work inside it too. Here the frames written during one turn of
the loop are joined and written once, at the end of that turn (`loop.call_soon`): no
added wait, one call instead of several.

A frame is framed as RFC 6455 §5.2 says for a server: FIN set, opcode 0x1 (text), no mask,
the payload length in 7, 7+16 or 7+64 bits. Only data frames go through here; aiohttp still
writes its own control frames (ping, pong, close) straight to the transport, which is safe
because both write whole frames only.

Flow control is aiohttp's: past `FLUSH_BYTES` the frames are written at once, and while
the transport is over its high-water mark the writer waits for it to drain, as aiohttp's
own writer does (so a slow reader holds up its own sender, never the relay's memory).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Protocol

#: RFC 6455 §5.2: FIN | opcode 0x1 (text); the three ways to give the payload length.
_TEXT = 0x81
_LEN7 = struct.Struct("!BB").pack
_LEN16 = struct.Struct("!BBH").pack
_LEN64 = struct.Struct("!BBQ").pack
#: Written at once when this many bytes wait (aiohttp's own writer checks at 64 KiB too).
FLUSH_BYTES = 64 * 1024


class _FlowControl(Protocol):
    """What aiohttp's request handler (its `BaseProtocol`) offers for back-pressure."""

    @property
    def writing_paused(self) -> bool: ...

    async def _drain_helper(self) -> None: ...


class _Socket(Protocol):
    @property
    def closed(self) -> bool: ...


def frame_header(size: int) -> bytes:
    """The header of an unmasked, final text frame of ``size`` payload bytes."""
    if size < 126:
        return _LEN7(_TEXT, size)
    if size < 65536:
        return _LEN16(_TEXT, 126, size)
    return _LEN64(_TEXT, 127, size)


class FrameWriter:
    """The data frames of one WebSocket. Once the socket is closing (either side) what
    waits is dropped: nothing is sent after a close frame. Whoever closes the socket calls
    `flush` first, so what was written before the close goes out before it."""

    __slots__ = ("_loop", "_parts", "_protocol", "_size", "_transport", "_ws")

    def __init__(
        self,
        ws: _Socket,
        transport: asyncio.Transport,
        protocol: _FlowControl,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        # The loop is given, not asked for per frame: on Python 3.11 each
        # `asyncio.get_running_loop()` is a getpid() system call.
        self._loop = loop
        self._ws = ws
        self._transport = transport
        self._protocol = protocol
        self._parts: list[bytes] | None = None
        self._size = 0

    def write(self, payload: bytes) -> None:
        """Queue one text frame; it goes out at the end of this turn of the loop."""
        parts = self._parts
        if parts is None:
            self._parts = [frame_header(len(payload)), payload]
            self._size = len(payload)
            self._loop.call_soon(self.flush)
        else:
            parts += (frame_header(len(payload)), payload)
            self._size += len(payload)

    @property
    def must_flush(self) -> bool:
        """Enough is waiting that the caller should flush and drain before writing on."""
        return self._size > FLUSH_BYTES or self._protocol.writing_paused

    def flush(self) -> None:
        """Write what is waiting now (also before a close frame, so it goes first)."""
        parts, self._parts = self._parts, None
        if parts and not self._ws.closed and not self._transport.is_closing():
            self._transport.write(b"".join(parts))

    async def drain(self) -> None:
        """Write what is waiting, then wait while the peer reads too slowly to keep up."""
        self.flush()
        if self._protocol.writing_paused and not self._transport.is_closing():
            # Shielded: aiohttp gives every drain of one connection the same waiter, so a
            # cancelled one (a close's timeout, the end of the answer task) would otherwise
            # cancel the others' too (the delivery loop's).
            await asyncio.shield(self._protocol._drain_helper())
