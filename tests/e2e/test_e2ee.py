"""End-to-end encryption through the client library against a real relay (issue #4).

What a user (or an auditor) would check: adults' messages arrive as sent and the relay's
disk and log never hold their text; a minor's conversation is visible to the relay; a
report of an encrypted message is verified; a relay lying about someone's age can't turn
encryption off; the mode follows a birthday.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from pathlib import Path

import pytest

from client.events import MessageReceived
from server.app_keys import SOCIAL
from tests.support import (
    TEEN,
    Clock,
    Relay,
    RelayProcess,
    collect,
    drain,
    make_profile,
    open_client,
    open_clients,
    refused,
    send_and_wait,
    years_ago,
)
from tests.support import connect as support_connect

ADULT, ADULT2 = years_ago(40), years_ago(35)


def canary() -> str:
    return "canary-" + secrets.token_hex(12)


def bytes_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())




async def connect(a, b) -> None:
    """``tests.support.connect`` with a shorter quiet wait (this module's many pairs)."""
    await support_connect(a, b, 0.2)


def messages(events) -> list:
    return [e.message for e in events if isinstance(e, MessageReceived)]


async def test_the_relay_never_holds_adult_text_but_holds_a_minors(tmp_path):
    """The canary test: unique strings, a relay in its own process with its log on disk."""
    data = tmp_path / "relay-data"
    relay = await RelayProcess(data).start()
    try:
        alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
        bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
        teen = await make_profile(tmp_path, relay.url, "teen", TEEN)
        adult_words, reply_words, minor_words = canary(), canary(), canary()
        # Bob and alice are offline while the messages wait at the relay: stored, unread.
        async with open_client(alice) as a:
            sent = await send_and_wait(a, "bob", f"hello bob {adult_words}")
            assert sent.mode == "e2ee"
        async with open_client(teen) as t:
            sent = await send_and_wait(t, "alice", f"hi alice {minor_words}")
            assert sent.mode == "visible"  # a conversation with a 14-year-old
        stored = bytes_under(data)
        assert adult_words.encode() not in stored
        assert minor_words.encode() in stored  # safety systems can see the minor's chat
        async with open_client(bob) as b:
            got = messages(await collect(b, 1))
            assert [(m.body, m.mode) for m in got] == [(f"hello bob {adult_words}", "e2ee")]
            await b.respond("alice", accept=True)  # it came as a message request
            await send_and_wait(b, "alice", f"hi alice {reply_words}")
        async with open_client(alice) as a:
            got = [m for m in messages(await collect(a, 3)) if m.kind == "message"]
            assert sorted((m.sender, m.mode) for m in got) == [("bob", "e2ee"), ("teen", "visible")]
            assert f"hi alice {reply_words}" in [m.body for m in got]
    finally:
        relay.terminate()
    everything = bytes_under(data) + bytes_under(tmp_path / f"relay-{relay.port}.log")
    for words in (adult_words, reply_words):
        assert words.encode() not in everything


@pytest.fixture
async def relay(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    yield relay
    await relay.stop()


async def test_adults_exchange_many_encrypted_messages_both_ways(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        await connect(a, b)
        for i in range(5):
            await send_and_wait(a, "bob", f"a{i}")
            await send_and_wait(b, "alice", f"b{i}")
        got_b = messages(await collect(b, 5))
        got_a = messages(await collect(a, 5))
    assert [m.body for m in got_b] == [f"a{i}" for i in range(5)]
    assert [m.body for m in got_a] == [f"b{i}" for i in range(5)]
    assert {m.mode for m in got_a + got_b} == {"e2ee"}
    # What the relay stored was ciphertext in the envelope format (rows deleted on ack,
    # so look at what is left: nothing).
    with sqlite3.connect(relay.config.database_path) as db:
        assert db.execute("SELECT count(*) FROM messages WHERE body IS NOT NULL").fetchone()[0] == 0


async def test_an_undecryptable_message_is_dropped_with_a_system_line(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        await send_and_wait(a, "bob", "first")
        await collect(b, 1)
        # Bob loses his session state (a restored backup, say): alice's next message,
        # which no longer carries the X3DH start, can't be decrypted.
        await b.e2ee.store.delete_sessions("alice")
        await send_and_wait(a, "bob", "second")
        got = messages(await collect(b, 1))
    assert [(m.kind, m.code) for m in got] == [("system", "undecryptable")]
    assert "second" not in got[0].body


async def test_a_report_of_an_encrypted_message_is_verified(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        await send_and_wait(a, "bob", "you will regret this")
        await collect(b, 1)
        attached = await b.report("alice", "threats", last=5)
        assert [m.body for m in attached] == ["you will regret this"]
        # Bob's client alters the text it holds, then reports again: the relay notices.
        await b.history.db.execute(
            "UPDATE messages SET body = 'something worse' WHERE sender = 'alice'"
        )
        await b.history.db.commit()
        assert await refused(b.report("alice", "threats", last=5)) == "franking_invalid"
    with sqlite3.connect(relay.config.database_path) as db:
        rows = db.execute("SELECT reporter, reported, evidence FROM reports").fetchall()
    assert len(rows) == 1  # the forged report was not recorded
    reporter, reported, evidence = rows[0]
    assert (reporter, reported) == ("bob", "alice")
    (message,) = json.loads(evidence)
    assert message["text"] == "you will regret this" and message["verified"] is True


async def test_a_relay_claiming_an_adult_is_a_minor_cannot_turn_encryption_off(
    relay, tmp_path, monkeypatch
):
    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        await connect(a, b)
        await send_and_wait(a, "bob", "encrypted")
        await collect(b, 1)
        # Rig the relay: it now says bob is 16, so the conversation "must" be visible.
        social = relay.app[SOCIAL]
        real_band_of = social.band_of
        monkeypatch.setattr(
            social,
            "band_of",
            lambda h, *today: "teen_16_17" if h == "bob" else real_band_of(h, *today),
        )
        # The relay refuses alice's encrypted message (mode_mismatch); her client asks
        # again, gets "visible", checks bob's own signed declaration (adult) and refuses.
        assert await refused(send_and_wait(a, "bob", "in the clear?")) == "downgrade_refused"
        assert await drain(b) == []
        failed = (await a.history.conversation("dm:alice:bob"))[-1]
        assert (failed.state, failed.error_code) == ("failed", "downgrade_refused")


async def test_a_client_that_sends_plaintext_to_an_adult_is_refused_then_encrypts(relay, tmp_path):
    """The relay refuses plaintext in an e2ee conversation: a client misled into sending
    `visible` (here: its store rigged to think bob is 16) gets `mode_mismatch`, asks the
    relay again and sends the message encrypted, once."""
    from dataclasses import replace

    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        await a.safety_number("bob")  # pins bob's key and declaration
        record = await a.e2ee.peer("bob")
        assert record is not None
        await a.e2ee.store.save_peer(replace(record, mode="visible", declared_band="teen_16_17"))
        stored = await send_and_wait(a, "bob", "should be encrypted")
        got = messages(await collect(b, 1))
    assert stored.mode == "e2ee"
    assert [(m.body, m.mode) for m in got] == [("should be encrypted", "e2ee")]


async def test_the_mode_switches_on_an_eighteenth_birthday(tmp_path):
    clock = Clock()
    relay = await Relay(tmp_path / "relay", clock=clock).start()
    try:
        sam = await make_profile(tmp_path, relay.url, "sam", years_ago(18, days=1))
        mum = await make_profile(tmp_path, relay.url, "mum", ADULT)
        async with open_clients(sam, mum) as (s, m):
            await s.contact_request("mum")
            await m.respond("sam", accept=True)
            await drain(s)
            await drain(m)
            before = await send_and_wait(m, "sam", "happy birthday eve")
            assert before.mode == "visible"
            clock.advance(days=2)
            await relay.app[SOCIAL].check_bands()
            await drain(s)
            await drain(m)
            after = await send_and_wait(m, "sam", "now it's private")
            assert after.mode == "e2ee"
            got = messages(await collect(s, 1))
            assert [(x.body, x.mode) for x in got] == [("now it's private", "e2ee")]
            reply = await send_and_wait(s, "mum", "thanks")
            assert reply.mode == "e2ee"
    finally:
        await relay.stop()


async def test_safety_numbers_agree_and_a_key_change_pauses_a_verified_chat(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        await connect(a, b)
        await send_and_wait(a, "bob", "hi")
        await collect(b, 1)
        mine, theirs = await a.safety_number("bob"), await b.safety_number("alice")
        assert mine.number == theirs.number
        assert (await a.verify("bob")).verified
        # Alice's client now sees another key for bob (as if the relay swapped it).
        from dataclasses import replace

        record = await a.e2ee.peer("bob")
        assert record is not None
        await a.e2ee.store.save_peer(replace(record, identity_key=secrets.token_bytes(32)))
        await a.e2ee.store.delete_sessions("bob")
        assert await refused(send_and_wait(a, "bob", "are you there?")) == "safety_number_changed"
        events = [e.message for e in await drain(a)]
        assert [(e.kind, e.code) for e in events] == [("system", "key_changed")]
        number = await a.safety_number("bob")
        assert number.key_changed and not number.verified
        await a.verify("bob")  # compared again: sending resumes
        await send_and_wait(a, "bob", "verified again")
        assert [x.body for x in messages(await collect(b, 1))] == ["verified again"]


async def test_prekeys_are_topped_up_when_the_relay_says_they_are_low(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        before = await a.e2ee.store.get_meta("next_one_time_id")
        for _ in range(45):  # each fetch hands out one of alice's 50 one-time prekeys
            await b.fetch_bundle("alice")
        for _ in range(50):
            after = await a.e2ee.store.get_meta("next_one_time_id")
            if int(after or 0) > int(before or 0):
                break
            await asyncio.sleep(0.05)
        assert int(after or 0) > int(before or 0)  # she generated a new batch
        # ...and the relay has it: only 5 of the first batch are left, yet 20 more fetches
        # each get a one-time prekey, and alice holds the private half of every one.
        handed_out = []
        for _ in range(200):
            key = (await b.fetch_bundle("alice")).one_time_prekey
            if key is None:  # the upload is still on its way
                await asyncio.sleep(0.05)
                continue
            handed_out.append(key)
            if len(handed_out) == 20:
                break
        assert len(handed_out) == 20
        for key in handed_out:
            held = await a.e2ee.store.prekey("one_time", key.id)
            assert held is not None and held.public == key.public


async def test_what_a_lying_relay_injects_is_dropped_or_filed_where_it_belongs(relay, tmp_path):
    """A relay that forges deliveries: plaintext 'from' an adult in an adults' chat, an e2ee
    message without its franking data, and a real message filed under another chat."""
    from datetime import UTC, datetime

    from protocol.e2ee import Envelope, encode_body
    from protocol.frames import Deliver
    from server.app_keys import HUB

    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    async with open_clients(alice, bob) as (a, b):
        await connect(a, b)
        await send_and_wait(a, "bob", "hello")
        await send_and_wait(b, "alice", "hi")  # bob has alice's adult declaration now
        await collect(b, 1)
        await collect(a, 1)
        # Whatever else is still on its way (a late event, the other message) arrives now,
        # not among the forgeries below.
        await drain(b), await drain(a)
        to_bob = relay.app[HUB].connection("bob")
        assert to_bob is not None

        def forged(msg_id: str, **fields) -> Deliver:
            base = dict(
                id=msg_id,
                sender="alice",
                to="bob",
                conversation="dm:alice:bob",
                mode="visible",
                body="send me the code please",
                sent_at=datetime.now(UTC),
            )
            return Deliver(**{**base, **fields})

        await to_bob.send(forged("forged-plain-1"))
        await to_bob.send(
            forged("forged-nofrank", mode="e2ee", body=encode_body(Envelope(bytes(120))))
        )
        got = messages(await collect(b, 2))
        assert [(m.kind, m.code) for m in got] == [
            ("system", "plaintext_refused"),
            ("system", "undecryptable"),
        ]
        assert "send me the code" not in " ".join(m.body for m in got)
        # Bob's next message still goes encrypted: the forgery didn't change the mode.
        assert (await send_and_wait(b, "alice", "still private?")).mode == "e2ee"
        # A genuine message the relay files under another conversation lands in the right one.
        import msgspec

        from server.delivery.records import StoredMessage

        real_to_deliver = StoredMessage.to_deliver

        def mislabelled(self, secret):
            frame = real_to_deliver(self, secret)
            return msgspec.structs.replace(frame, conversation="dm:bob:carol")

        StoredMessage.to_deliver = mislabelled  # type: ignore[method-assign]
        try:
            sent = await a.send("bob", "for bob")
            await a.wait_accepted(sent.msg_id)
            (real,) = [m for m in messages(await collect(b, 1)) if m.kind == "message"]
        finally:
            StoredMessage.to_deliver = real_to_deliver  # type: ignore[method-assign]
        assert (real.body, real.conversation) == ("for bob", "dm:alice:bob")


async def test_clients_re_sign_their_age_declaration_when_it_is_due(relay, tmp_path):
    import msgspec

    from protocol.registration import AgeDeclaration
    from server.app_keys import STORE

    teen = await make_profile(tmp_path, relay.url, "teen", TEEN)  # connects once: declares
    async with open_clients(teen) as (t,):
        first = await t.e2ee.store.get_meta("declared_at")
        assert first is not None and await t.e2ee.store.get_meta("declared_band") == "teen_13_15"
        assert not await t.e2ee.redeclaration_due("teen_13_15")  # fresh: nothing to do
        await t.e2ee.store.set_meta("declared_at", "2000-01-01T00:00:00+00:00")  # long ago
    async with open_clients(teen) as (t,):
        await asyncio.wait_for(t.prekeys_published.wait(), 5)
        again = await t.e2ee.store.get_meta("declared_at")
    assert again is not None and again >= first  # re-signed (to the second) on connecting
    account = await relay.app[STORE].get_account("teen")
    stored = msgspec.json.decode(account.declaration, type=AgeDeclaration)
    assert stored.declared_at.isoformat() == again
