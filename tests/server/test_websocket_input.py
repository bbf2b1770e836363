"""Bad input on the WebSocket: every case gets its code and the relay serves others on."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import msgspec
import pytest

from protocol.codec import decode_relay_frame, encode_frame
from protocol.frames import (
    Auth,
    Challenge,
    ContactsList,
    ContactsResult,
    Error,
    Ready,
    Send,
    Synced,
)
from protocol.identity import auth_message
from protocol.limits import MAX_FRAME_BYTES
from tests.support import PASSPHRASE, collect, make_profile, open_client, received_bodies


async def receive(ws) -> object:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return decode_relay_frame(msg.data)


async def login(ws, profile) -> Challenge:
    challenge = await receive(ws)
    assert isinstance(challenge, Challenge)
    identity = profile.unlock(PASSPHRASE)
    signed = auth_message(challenge.relay_id, challenge.nonce, profile.handle)
    await ws.send_str(encode_frame(Auth(handle=profile.handle, signature=identity.sign(signed))))
    assert isinstance(await receive(ws), Ready)
    while not isinstance(await receive(ws), Synced):
        pass  # skip whatever was queued (relay events from the test's setup)
    return challenge


@pytest.fixture
async def alice(relay, tmp_path):
    return await make_profile(tmp_path, relay.url, "alice")


@pytest.fixture
async def bob(relay, tmp_path):
    return await make_profile(tmp_path, relay.url, "bob")


BAD_FRAMES = [
    ("{oops", "invalid_json"),
    ('{"type": "teleport"}', "unknown_frame_type"),
    ('{"type": "send", "id": 12, "to": "bob", "mode": "visible", "body": "x"}', "invalid_frame"),
    ('{"type": "send", "id": "abcdefgh", "to": "bob", "mode": "visible"}', "invalid_frame"),
    ('"just a string"', "invalid_frame"),
    # Nested too deeply for the parser: refused like any other unparsable text.
    ("[" * 1000 + "]" * 1000, "invalid_json"),
    ('{"type": "send", "id": "abcdefgh", "body": ' + "[" * 1000 + "]" * 1000 + "}", "invalid_json"),
    (
        '{"type": "send", "id": "abcdefgh", "to": "bob", "mode": "visible", "body": "'
        + "x" * MAX_FRAME_BYTES
        + '"}',
        "frame_too_large",
    ),
]


async def test_bad_frames_after_auth_get_codes_and_the_connection_lives(relay, alice, bob):
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        await login(ws, alice)
        for raw, code in BAD_FRAMES:
            await ws.send_str(raw)
            reply = await receive(ws)
            assert isinstance(reply, Error), raw[:40]
            assert reply.code == code, raw[:40]
        await ws.send_bytes(b"\x00\x01")
        assert (await receive(ws)).code == "binary_not_supported"
        # Still alive: a good frame works on the same connection (one whose answer doesn't
        # depend on the conversation's mode).
        await ws.send_str(encode_frame(ContactsList(rid="good-req-1")))
        answer = await receive(ws)
        assert isinstance(answer, ContactsResult) and answer.rid == "good-req-1"


async def test_delivery_refusals_carry_the_message_id(relay, alice, bob):
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        await login(ws, alice)
        await ws.send_str(encode_frame(Send(id="to-nobody", to="nobody", mode="visible", body="x")))
        reply = await receive(ws)
        assert (reply.code, reply.ref) == ("unknown_recipient", "to-nobody")
        await ws.send_str(encode_frame(Send(id="wrong-mode", to="bob", mode="e2ee", body="x")))
        reply = await receive(ws)
        assert (reply.code, reply.ref) == ("mode_mismatch", "wrong-mode")


async def test_sending_before_auth_is_refused(relay):
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        await receive(ws)  # challenge
        await ws.send_str(encode_frame(Send(id="too-early", to="bob", mode="visible", body="x")))
        assert (await receive(ws)).code == "not_authenticated"


async def test_deeply_nested_json_before_login_is_refused_without_a_traceback(relay, caplog):
    """Nothing a peer sends may write a traceback (issue 9, defect 3)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        await receive(ws)  # challenge
        await ws.send_str('{"a": ' * 1000 + "1" + "}" * 1000)
        assert (await receive(ws)).code == "invalid_json"
        await ws.send_str("[" * 5000 + "]" * 5000)
        assert (await receive(ws)).code == "invalid_json"
    assert [r for r in caplog.records if r.exc_info] == []
    assert "internal_error" not in caplog.text


async def test_bad_signature_fails_auth_and_closes(relay, alice):
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        await receive(ws)
        await ws.send_str(encode_frame(Auth(handle="alice", signature=b"\x01" * 64)))
        assert (await receive(ws)).code == "auth_failed"
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4001


async def test_unknown_account_fails_auth(relay):
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        await receive(ws)
        await ws.send_str(encode_frame(Auth(handle="ghost", signature=b"\x01" * 64)))
        assert (await receive(ws)).code == "auth_failed"


async def test_replayed_auth_is_refused(relay, alice):
    """A signature captured from one connection is useless on the next (fresh nonce)."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(relay.ws_url) as ws:
            challenge = await receive(ws)
            identity = alice.unlock(PASSPHRASE)
            signature = identity.sign(auth_message(challenge.relay_id, challenge.nonce, "alice"))
            captured = encode_frame(Auth(handle="alice", signature=signature))
            await ws.send_str(captured)
            assert isinstance(await receive(ws), Ready)
            await ws.send_str(captured)  # replay on the same connection
            assert (await receive(ws)).code == "already_authenticated"
        async with session.ws_connect(relay.ws_url) as ws:
            await receive(ws)
            await ws.send_str(captured)  # replay on a new connection
            assert (await receive(ws)).code == "auth_failed"


async def test_a_flood_of_garbage_does_not_disturb_other_clients(relay, alice, bob):
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as bad:
        await receive(bad)
        for i in range(200):
            await bad.send_str(json.dumps({"type": "send", "junk": i}) if i % 2 else "\x00{[")
        async with open_client(alice) as a, open_client(bob) as b:
            await a.wait_connected()
            msg = await a.send("bob", "still here")
            await a.wait_accepted(msg.msg_id)
            assert received_bodies(await collect(b, 1)) == ["still here"]


async def test_auth_timeout_closes_idle_connections(relay, monkeypatch):
    import server.edge.websocket as ws_module

    monkeypatch.setattr(ws_module, "AUTH_TIMEOUT_SECONDS", 0.2)
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        await receive(ws)
        assert (await receive(ws)).code == "auth_timeout"


async def test_second_login_replaces_the_first(relay, alice):
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(relay.ws_url) as first,
        session.ws_connect(relay.ws_url) as second,
    ):
        await login(first, alice)
        await login(second, alice)
        assert (await receive(first)).code == "session_replaced"


def test_error_frames_are_json_objects_with_code_and_message():
    raw = encode_frame(Error(code="invalid_json", message="The frame is not valid UTF-8 JSON."))
    assert msgspec.json.decode(raw) == {
        "type": "error",
        "code": "invalid_json",
        "message": "The frame is not valid UTF-8 JSON.",
        "ref": None,
    }
