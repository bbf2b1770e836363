"""Raw-frame helpers for relay tests: accounts registered over plain HTTP (nothing
publishes prekeys or sends frames behind the test's back) and logged-in WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime

import aiohttp
import nacl.signing

from protocol.codec import decode_relay_frame, encode, encode_frame
from protocol.frames import Accepted, Auth, Bundle, Done, Error, Frame, Ready, Synced
from protocol.identity import auth_message, declaration_message, dh_key_for
from protocol.policy import band
from protocol.registration import AgeDeclaration, RegisterRequest
from tests.support import ADULT, Relay


class Person:
    """An account registered with raw HTTP (so nothing publishes prekeys behind our back)."""

    def __init__(self, handle: str, birthdate: date = ADULT) -> None:
        self.handle = handle
        self.birthdate = birthdate
        self.key = nacl.signing.SigningKey(os.urandom(32))
        self.identity_key = bytes(self.key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message).signature

    async def register(self, relay: Relay) -> Person:
        now = datetime.now(UTC).replace(microsecond=0)
        declared = band(self.birthdate, now.date())
        signed = declaration_message(self.handle, declared, self.identity_key, now)
        body = RegisterRequest(
            handle=self.handle,
            display_name=self.handle.title(),
            identity_key=self.identity_key,
            dh_identity_key=dh_key_for(self.identity_key),
            birthdate=self.birthdate,
            declaration=AgeDeclaration(
                handle=self.handle,
                band=declared,
                identity_key=self.identity_key,
                declared_at=now,
                signature=self.sign(signed),
            ),
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{relay.url}/v1/accounts", data=encode(body)) as response,
        ):
            assert response.status == 201, await response.text()
        return self


async def receive(ws) -> object:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return decode_relay_frame(msg.data)


async def wait_for(ws, match: Callable[[object], bool]) -> object:
    """The next frame ``match`` accepts, skipping others (events, receipts)."""
    while not match(frame := await receive(ws)):
        pass
    return frame


async def answer(ws, rid: str) -> object:
    """The `accepted`, `done`, `bundle` or `error` frame answering message/request ``rid``."""
    return await wait_for(
        ws,
        lambda f: (
            (isinstance(f, Error) and f.ref == rid)
            or (isinstance(f, Done | Bundle) and f.rid == rid)
            or (not isinstance(f, Error) and getattr(f, "rid", None) == rid)
            or (isinstance(f, Accepted) and f.id == rid)
        ),
    )


@contextlib.asynccontextmanager
async def connect(relay: Relay, person: Person) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A logged-in raw WebSocket, past its backlog (which it leaves unacknowledged)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        challenge = await receive(ws)
        signed = auth_message(challenge.relay_id, challenge.nonce, person.handle)
        await ws.send_str(encode_frame(Auth(handle=person.handle, signature=person.sign(signed))))
        assert isinstance(await receive(ws), Ready)
        await wait_for(ws, lambda f: isinstance(f, Synced))
        yield ws


def new_id() -> str:
    return secrets.token_urlsafe(16)


async def request(ws, frame: Frame) -> object:
    """Send a frame with a `rid` (or a `send` with an `id`) and return its answer."""
    await ws.send_str(encode_frame(frame))
    return await answer(ws, getattr(frame, "rid", None) or frame.id)
