"""Files between people (issue 13) through the real client library and CLI against real
relays: between adults the relay holds only ciphertext and the file arrives byte-identical;
in a chat with a minor it arrives as sent and the relay could read it; a file the relay
no longer has is said to be unavailable; limits give their codes. Files are generated."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import msgspec
import pytest

from client.events import MessageReceived
from client.relay.blobs import BlobTransfer
from protocol.attachments import AttachmentRef
from protocol.codec import encode_frame
from protocol.frames import (
    Accepted,
    Ack,
    ContactRequest,
    ContactRespond,
    Deliver,
    MessageRef,
    Send,
)
from server.app_keys import RELAY_ID
from tests.e2e.test_cli import agechat, create
from tests.server.raw import Person, new_id, request, wait_for
from tests.server.raw import connect as raw_connect
from tests.support import (
    Relay,
    RelayProcess,
    connect,
    drain,
    make_profile,
    open_client,
    open_clients,
    refused,
    years_ago,
)

ADULT, ADULT2, TEEN = years_ago(40), years_ago(35), years_ago(15)


def bytes_under(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes()
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def canary_file(folder: Path, size: int, name: str = "notes.bin") -> tuple[Path, bytes]:
    marker = b"canary-" + secrets.token_hex(12).encode()
    data = (marker + secrets.token_bytes(size))[:size] if size > len(marker) else marker
    path = folder / name
    path.write_bytes(data)
    return path, marker


def received(events) -> list:
    return [
        e.message for e in events if isinstance(e, MessageReceived) and e.message.kind == "message"
    ]


async def test_adults_exchange_a_file_the_relay_never_holds_in_the_clear(tmp_path):
    data = tmp_path / "relay-data"
    relay = await RelayProcess(data).start()
    try:
        alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
        bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
        # Larger than one cipher chunk, with the canary at its start.
        source, marker = canary_file(tmp_path, 200_000)
        async with open_clients(alice, bob) as (a, b):
            await connect(a, b)
        async with open_client(alice) as a:  # bob offline: the blob waits on the relay
            message = await a.send_file("bob", source, "the notes")
            sent = await a.wait_accepted(message.msg_id, 30)
            assert sent.mode == "e2ee" and sent.attachment.uploaded
        assert marker not in bytes_under(data)
        async with open_client(bob) as b:
            (got,) = received(await drain(b, 2.0))
        assert (got.body, got.mode, got.attachment.state) == ("the notes", "e2ee", "ready")
        assert Path(got.attachment.path).read_bytes() == source.read_bytes()
        assert got.attachment.sha256 == sent.attachment.sha256
        assert (got.attachment.name, got.attachment.size) == ("notes.bin", 200_000)
    finally:
        relay.terminate()
    everything = bytes_under(data) + bytes_under(tmp_path / f"relay-{relay.port}.log")
    assert marker not in everything


@pytest.fixture
async def relay(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    yield relay
    await relay.stop()


async def test_a_minors_chat_carries_a_file_the_relay_can_read(relay, tmp_path):
    teen = await make_profile(tmp_path, relay.url, "tia", TEEN)
    friend = await make_profile(tmp_path, relay.url, "finn", years_ago(14))
    source, marker = canary_file(tmp_path, 5_000, "drawing.png")
    async with open_clients(teen, friend) as (t, f):
        await connect(t, f)
        message = await t.send_file("finn", source)
        sent = await t.wait_accepted(message.msg_id)
        assert sent.mode == "visible"
        assert marker in bytes_under(relay.config.data_dir)  # safety checks could see it
        (got,) = received(await drain(f, 1.0))
    assert got.attachment.type == "image/png" and got.attachment.state == "ready"
    assert Path(got.attachment.path).read_bytes() == source.read_bytes()
    # Delivered and acknowledged: the blob is gone from the relay with the message.
    assert marker not in bytes_under(relay.config.data_dir / "blobs")


async def test_the_cli_sends_a_file_and_inbox_lists_it(relay, tmp_path):
    tia = await create(tmp_path, relay, "tia", years_ago(15).isoformat())
    finn = await create(tmp_path, relay, "finn", years_ago(14).isoformat())
    code, _, err = await agechat("--profile", str(tia), "contacts", "request", "finn")
    assert code == 0, err
    code, _, err = await agechat("--profile", str(finn), "contacts", "accept", "tia")
    assert code == 0, err
    source, _ = canary_file(tmp_path, 3_000, "map.txt")
    code, out, err = await agechat(
        "--json", "--profile", str(tia), "send", "finn", "--file", str(source)
    )
    assert code == 0, err
    sent = json.loads(out)
    assert (sent["attachment"]["name"], sent["attachment"]["size"]) == ("map.txt", 3_000)
    code, out, err = await agechat("--json", "--profile", str(finn), "inbox")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    (with_file,) = [m for m in lines if m["attachment"] is not None]
    assert set(with_file["attachment"]) == {"name", "size", "type", "sha256", "path", "state"}
    assert Path(with_file["attachment"]["path"]).read_bytes() == source.read_bytes()
    code, _, err = await agechat("--profile", str(tia), "send", "finn")
    assert code != 0 and "TEXT, --file, or both" in err


async def test_an_oversized_file_is_refused_with_its_code(relay, tmp_path):
    amy = await make_profile(tmp_path, relay.url, "amy", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(16 * 1024 * 1024 + 1)  # one byte over the default limit
    async with open_clients(amy, bob) as (a, b):
        await connect(a, b)
        message = await a.send_file("bob", big)
        assert await refused(a.wait_accepted(message.msg_id, 30)) == "attachment_too_large"


async def test_a_reported_encrypted_file_message_verifies_by_its_digest(relay, tmp_path):
    import sqlite3

    amy = await make_profile(tmp_path, relay.url, "amy", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    source, _ = canary_file(tmp_path, 1_000, "offer.pdf")
    async with open_clients(amy, bob) as (a, b):
        await connect(a, b)
        message = await a.send_file("bob", source, "see attached")
        await a.wait_accepted(message.msg_id)
        (got,) = received(await drain(b, 1.0))
        assert got.attachment.state == "ready"
        await b.report("amy", "scam file", last=1)  # franking covers the file's digest
    with sqlite3.connect(relay.config.database_path) as db:
        rows = db.execute("SELECT sender, mode, franking FROM evidence").fetchall()
    assert rows == [("amy", "e2ee", "verified")]


async def test_a_long_file_name_from_a_peer_is_saved_and_nothing_stalls(relay, tmp_path):
    teen = await make_profile(tmp_path, relay.url, "tia", TEEN)
    friend = await make_profile(tmp_path, relay.url, "finn", years_ago(14))
    long_name = ("é" * 120) + ".txt"  # 244 bytes: too long for a file system with ".part"
    source = tmp_path / "src.txt"
    source.write_bytes(b"benign words")
    async with open_clients(teen, friend) as (t, f):
        await connect(t, f)
        named = tmp_path / long_name
        named.write_bytes(source.read_bytes())
        first = await t.send_file("finn", named)
        await t.wait_accepted(first.msg_id)
        second = await t.send("finn", "and a plain line after it")
        await t.wait_accepted(second.msg_id)
        got = received(await drain(f, 1.5))
    assert [m.body for m in got] == ["", "and a plain line after it"]
    saved = Path(got[0].attachment.path)
    assert saved.read_bytes() == b"benign words" and saved.name.endswith(".txt")
    assert len(saved.name.encode()) <= 200


async def test_resending_a_delivered_file_message_gets_its_first_answer(relay, tmp_path):
    teen = await Person("tia", TEEN).register(relay)
    friend = await Person("finn", years_ago(14)).register(relay)
    async with raw_connect(relay, teen) as t, raw_connect(relay, friend) as f:
        await request(t, ContactRequest(rid=new_id(), to="finn"))
        await request(f, ContactRespond(rid=new_id(), handle="tia", accept=True))
        path = tmp_path / "x.txt"
        path.write_bytes(b"benign")
        transfer = BlobTransfer(
            relay.url, "tia", teen.sign, lambda: relay.app[RELAY_ID], relay.config.clock
        )
        blob = new_id()
        await transfer.upload(blob, path, "visible")
        ref = AttachmentRef(id=blob, size=6, name="x.txt", type="text/plain")
        sent = Send(id=new_id(), to="finn", mode="visible", body="", attachment=ref)
        assert isinstance(await request(t, sent), Accepted)
        await wait_for(f, lambda frame: isinstance(frame, Deliver) and frame.id == sent.id)
        await f.send_str(encode_frame(Ack(refs=[MessageRef(sender="tia", id=sent.id)])))
        held_file = relay.config.data_dir / "blobs" / "tia" / blob
        for _ in range(50):  # the blob goes with the ack
            if not held_file.exists():
                break
            await asyncio.sleep(0.05)
        assert not held_file.exists()
        # A resend (a client that never saw `accepted`) is answered as the first time.
        again = await request(t, sent)
        assert isinstance(again, Accepted) and again.id == sent.id


async def test_an_upload_that_expired_before_its_message_left_is_uploaded_again(relay, tmp_path):
    from datetime import UTC, datetime

    from client.attachments import take_copy
    from client.history import History
    from protocol.frames import conversation_id

    teen = await make_profile(tmp_path, relay.url, "tia", TEEN)
    friend = await make_profile(tmp_path, relay.url, "finn", years_ago(14))
    async with open_clients(teen, friend) as (t, f):
        await connect(t, f)
    # A message whose file the relay no longer has (its upload expired while it waited).
    source, _ = canary_file(tmp_path, 2_000, "late.txt")
    msg_id = "late-message-0001"
    copy = msgspec.structs.replace(
        take_copy(source, teen.directory, msg_id), uploaded=True, uploaded_as="visible"
    )
    history = History(teen.history_path)
    await history.open()
    await history.add_outgoing(
        sender="tia",
        msg_id=msg_id,
        recipient="finn",
        conversation=conversation_id("tia", "finn"),
        mode="visible",
        body="sorry, late",
        created_at=datetime.now(UTC),
        attachment=copy,
    )
    await history.close()
    async with open_clients(teen, friend) as (t, f):
        sent = await t.wait_accepted(msg_id, 15)
        assert sent.attachment.uploaded
        (got,) = received(await drain(f, 1.0))
    assert Path(got.attachment.path).read_bytes() == source.read_bytes()
