"""A frame the relay answers in the same turn as the peer's close still reaches the peer
before the close: frames of one turn are written together (server/delivery/frame_writer.py),
and aiohttp closes the socket on its own once it has read the peer's Close frame."""

from __future__ import annotations

import os

import aiohttp

from protocol.codec import decode_relay_frame
from protocol.frames import Error
from tests.server.raw import Person, connect


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """RFC 6455 §5.2, as a client sends it: final, masked, payload under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def test_the_answer_to_a_frame_sent_with_a_close_arrives_before_the_close(relay):
    ana = await Person("ana").register(relay)
    async with connect(relay, ana) as ws:
        transport = ws._response.connection.transport  # type: ignore[union-attr]
        # A frame the relay refuses, and the Close frame, in one TCP write.
        transport.write(_client_frame(0x1, b"{not json") + _client_frame(0x8, b"\x03\xe8"))
        got = await ws.receive(timeout=5)
        assert got.type == aiohttp.WSMsgType.TEXT, got
        refusal = decode_relay_frame(got.data)
        assert isinstance(refusal, Error) and refusal.code == "invalid_json"
