"""Edge cases found in review: slow readers, big messages, bad sends, lost answers."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp
import msgspec
import nacl.signing
import pytest

import server.delivery.connection
from client.account import create_account
from client.errors import ClientError
from client.keystore import MINIMUM
from client.profile import Profile
from protocol.codec import encode
from tests.server.test_registration import post, request_for
from tests.support import (
    PASSPHRASE,
    TEEN,
    collect,
    make_profile,
    open_client,
    open_clients,
    received_bodies,
)


async def test_overflowing_live_queue_loses_nothing_and_keeps_order(relay, tmp_path, monkeypatch):
    monkeypatch.setattr(server.delivery.connection, "LIVE_QUEUE_LIMIT", 2)
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_clients(alice, bob) as (a, b):
        await b.contact_request("alice")
        await a.respond("bob", accept=True)
        sent = [await a.send("bob", f"n{i:03d}") for i in range(200)]
        for m in sent:
            await a.wait_accepted(m.msg_id)
        events = await collect(b, 201, timeout=20)  # + the contact_accepted event
        bodies = [x for x in received_bodies(events) if x.startswith("n")]
        assert bodies == [f"n{i:03d}" for i in range(200)]


async def test_a_deliver_larger_than_the_send_limit_still_arrives(relay, tmp_path):
    # A visible conversation (alice is 14), so the relay delivers the text as sent.
    alice = await make_profile(tmp_path, relay.url, "alice", TEEN)
    bob = await make_profile(tmp_path, relay.url, "bob")
    big = '"' * 32_700  # 65,400 bytes once JSON-escaped; the deliver frame is larger still
    async with open_clients(alice, bob) as (a, b):
        m = await a.send("bob", big)
        await a.wait_accepted(m.msg_id)
        assert big in received_bodies(await collect(b, 1))


async def test_unsendable_messages_are_refused_before_the_outbox(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    async with open_client(alice) as a:
        with pytest.raises(ClientError) as info:
            await a.send("Not A Handle", "hi")
        assert info.value.code == "invalid_handle"
        with pytest.raises(ClientError) as info:
            await a.send("bob", "x" * 70_000)
        assert info.value.code == "message_too_large"
        with pytest.raises(ClientError) as info:
            await a.send("alice", "me")
        assert info.value.code == "cannot_target_self"
        assert await a.history.outbox() == []


async def test_waiting_callers_learn_of_a_lost_relay_at_once(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice, reconnect=False) as a:
        await a.wait_connected()
        await relay.stop()
        with pytest.raises(ClientError) as info:
            await asyncio.wait_for(a.search("bob"), 3)
        assert info.value.code in ("connection_closed", "relay_unreachable")


async def test_chunked_registration_body_is_read_whole(relay):
    body = encode(request_for())

    async def chunks():
        yield body[:50]
        await asyncio.sleep(0.05)
        yield body[50:]

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{relay.url}/v1/accounts", data=chunks(), headers={"Content-Type": "application/json"}
        ) as response,
    ):
        assert response.status == 201


async def test_a_time_without_offset_is_a_400_not_a_500(relay):
    raw = msgspec.json.decode(encode(request_for()))
    raw["declaration"]["declared_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    status, body = await post(relay, msgspec.json.encode(raw))
    assert status == 400
    assert body["error"]["code"] == "declaration_mismatch"


async def test_registration_is_idempotent_for_the_same_key(relay):
    key = nacl.signing.SigningKey(b"\x05" * 32)
    assert (await post(relay, request_for(key=key)))[0] == 201
    assert (await post(relay, request_for(key=key)))[0] == 201  # a retry after a lost answer
    other = nacl.signing.SigningKey(b"\x06" * 32)
    status, body = await post(relay, request_for(key=other))
    assert (status, body["error"]["code"]) == (409, "handle_taken")


async def test_an_interrupted_registration_keeps_its_key_and_finishes_on_retry(relay, tmp_path):
    async def hang_up(reader, writer):  # reads the request, then drops the connection
        await reader.read(100)
        writer.close()

    broken = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    broken_url = f"http://127.0.0.1:{broken.sockets[0].getsockname()[1]}"
    directory = tmp_path / "carol"
    kwargs = dict(
        handle="carol",
        display_name="Carol",
        birthdate=dt.date(1980, 1, 1),
        passphrase=PASSPHRASE,
        kdf=MINIMUM,
    )
    async with broken:
        with pytest.raises(ClientError) as info:
            await create_account(directory, server=broken_url, **kwargs)
    assert info.value.code == "relay_unreachable_after_send"
    pending = directory / "profile.json.pending"
    kept_key = msgspec.json.decode(pending.read_bytes())["identity_key"]
    # The same command against the same URL finishes with the kept key.
    with pytest.raises(ClientError) as info:
        await create_account(directory, server=relay.url, **kwargs)
    assert info.value.code == "registration_pending"  # a different server: not silently lost
    pending.write_bytes(pending.read_bytes().replace(broken_url.encode(), relay.url.encode()))
    profile = await create_account(directory, server=relay.url, **kwargs)
    assert (
        msgspec.json.decode((directory / "profile.json").read_bytes())["identity_key"] == kept_key
    )
    assert not pending.exists()
    assert isinstance(profile, Profile)


async def test_profile_and_history_are_owner_only(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    async with open_client(alice) as a:
        await a.wait_connected()
    for path in (alice.directory, alice.history_path, alice.directory / "profile.json"):
        assert path.stat().st_mode & 0o077 == 0, path
