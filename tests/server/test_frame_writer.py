"""FrameWriter: frames written in one turn of the loop go out in one write, framed as
RFC 6455 says, in order; a peer that doesn't read holds up its writer, not memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from server.delivery.frame_writer import FLUSH_BYTES, FrameWriter

# Lengths at each edge of the three length encodings (7, 7+16 and 7+64 bits).
SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70000)


class _CountingTransport:
    """The real transport, with its writes counted (asyncio's, not the project's)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()


@contextlib.asynccontextmanager
async def _server(
    on_socket: Callable[[web.WebSocketResponse, FrameWriter, _CountingTransport], Any],
) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        assert request.transport is not None
        counting = _CountingTransport(request.transport)
        writer = FrameWriter(
            ws,
            counting,  # type: ignore[arg-type]
            request.protocol,
            asyncio.get_running_loop(),
        )
        await on_socket(ws, writer, counting)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


async def test_frames_of_one_turn_arrive_whole_in_order_from_one_write() -> None:
    writes: list[int] = []

    async def on_socket(
        ws: web.WebSocketResponse, writer: FrameWriter, t: _CountingTransport
    ) -> None:
        for size in SIZES:
            writer.write(bytes([ord("a") + size % 26]) * size)
        await asyncio.sleep(0)  # the end of this turn: the flush runs
        await asyncio.sleep(0)
        writes.append(t.writes)

    async with (
        _server(on_socket) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0) as ws,
    ):
        got = [await ws.receive(timeout=5) for _ in SIZES]
    assert [m.type for m in got] == [aiohttp.WSMsgType.TEXT] * len(SIZES)
    assert [len(m.data) for m in got] == list(SIZES)
    assert [m.data[:1] for m in got[1:]] == [chr(ord("a") + s % 26) for s in SIZES[1:]]
    assert writes == [1]


async def test_nothing_is_written_after_the_socket_closes() -> None:
    async def on_socket(
        ws: web.WebSocketResponse, writer: FrameWriter, t: _CountingTransport
    ) -> None:
        writer.write(b"before")
        writer.flush()  # as Connection.close does before closing
        writer.write(b"after")  # waits for the end of the turn; the close comes first
        await ws.close()

    async with (
        _server(on_socket) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as ws,
    ):
        first = await ws.receive(timeout=5)
        second = await ws.receive(timeout=5)
    assert (first.type, first.data) == (aiohttp.WSMsgType.TEXT, "before")
    assert second.type == aiohttp.WSMsgType.CLOSE


async def test_a_peer_that_does_not_read_holds_up_the_writer() -> None:
    drained = asyncio.Event()
    waiting: list[bool] = []

    async def on_socket(
        ws: web.WebSocketResponse, writer: FrameWriter, t: _CountingTransport
    ) -> None:
        chunk = b"x" * 60_000
        for _ in range(400):  # 24 MB: far past what the kernel's buffers take
            writer.write(chunk)
            if writer.must_flush:
                waiting.append(True)
                try:
                    await asyncio.wait_for(writer.drain(), timeout=0.5)
                except TimeoutError:
                    drained.set()  # held up, as it must be
                    return
        waiting.append(False)

    async with (
        _server(on_socket) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0) as ws,
    ):
        await asyncio.wait_for(drained.wait(), timeout=10)
        await ws.close()
    assert waiting and waiting[-1] is True


async def test_past_flush_bytes_the_caller_is_told_to_flush() -> None:
    size = FLUSH_BYTES + 1
    seen: list[bool] = []

    async def on_socket(
        ws: web.WebSocketResponse, writer: FrameWriter, t: _CountingTransport
    ) -> None:
        writer.write(b"y" * 10)
        seen.append(writer.must_flush)
        writer.write(b"y" * size)
        seen.append(writer.must_flush)
        await writer.drain()
        seen.append(t.writes == 1)

    async with (
        _server(on_socket) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0) as ws,
    ):
        await ws.receive(timeout=5)
        await ws.receive(timeout=5)
    assert seen == [False, True, True]


async def test_a_cancelled_drain_leaves_the_others_on_the_connection_waiting() -> None:
    """aiohttp shares one waiter among a connection's drains: cancelling one (a close's
    timeout) must not cancel another (the delivery loop's), which goes on once the peer
    reads."""
    ready, outcome = asyncio.Event(), asyncio.get_running_loop().create_future()
    frames = 0

    async def on_socket(
        ws: web.WebSocketResponse, writer: FrameWriter, t: _CountingTransport
    ) -> None:
        nonlocal frames
        chunk = b"z" * 60_000
        for _ in range(400):  # until the kernel's buffers are full and writing pauses
            writer.write(chunk)
            frames += 1
            writer.flush()
            if writer._protocol.writing_paused:  # type: ignore[attr-defined]
                break
        cancelled = asyncio.create_task(writer.drain())
        other = asyncio.create_task(writer.drain())
        await asyncio.sleep(0.05)  # both wait on the paused socket
        cancelled.cancel()
        await asyncio.sleep(0.05)
        ready.set()  # the peer reads from now on
        try:
            await asyncio.wait_for(other, timeout=10)
            outcome.set_result("drained")
        except BaseException as exc:  # what it must not be: CancelledError
            outcome.set_result(type(exc).__name__)

    async with (
        _server(on_socket) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0) as ws,
    ):
        await asyncio.wait_for(ready.wait(), timeout=10)
        for _ in range(frames):
            await ws.receive(timeout=10)
        assert await asyncio.wait_for(outcome, timeout=10) == "drained"
