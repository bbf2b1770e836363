"""Delivery through a real relay with real clients: order, exactly-once, outbox, acks."""

from __future__ import annotations

import asyncio
import sqlite3

from client.events import MessageAccepted, Synced
from tests.support import Relay, collect, make_profile, open_client, received_bodies


async def test_offline_recipient_gets_everything_once_in_order(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice) as a:
        await a.wait_connected()
        ids = [(await a.send("bob", f"message {i}")).msg_id for i in range(20)]
        for msg_id in ids:
            stored = await a.wait_accepted(msg_id)
            assert stored.state == "sent"
    async with open_client(bob) as b:
        events = await collect(b, 20)
        assert received_bodies(events) == [f"message {i}" for i in range(20)]
        # Nothing more arrives: exactly once.
        assert received_bodies(await collect(b, 1, timeout=0.3)) == []
    # A second session receives nothing again: the acks deleted it at the relay.
    async with open_client(bob) as b:
        await b.wait_connected()
        await asyncio.wait_for(b.synced.wait(), 5)
        assert received_bodies(await collect(b, 1, timeout=0.3)) == []


async def test_online_recipient_gets_messages_live(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice) as a, open_client(bob) as b:
        await a.wait_connected()
        await b.wait_connected()
        await asyncio.wait_for(b.synced.wait(), 5)
        msg = await a.send("bob", "live hello")
        accepted = await a.wait_accepted(msg.msg_id)
        events = await collect(b, 1)
        assert received_bodies(events) == ["live hello"]
        received = events[-1].message
        assert received.msg_id == msg.msg_id
        assert received.conversation == "dm:alice:bob"
        assert received.mode == "e2ee"  # two adults
        assert received.sent_at == accepted.sent_at


async def test_acknowledged_bodies_are_deleted_at_the_relay(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice) as a:
        await a.wait_connected()
        await a.wait_accepted((await a.send("bob", "delete me after delivery")).msg_id)
    db = relay.config.database_path
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM messages WHERE body IS NOT NULL").fetchone()[0] == 1
        )
    async with open_client(bob) as b:
        assert received_bodies(await collect(b, 1)) == ["delete me after delivery"]
        await asyncio.sleep(0.2)  # the ack is a frame after the message: let the relay apply it
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM messages WHERE body IS NOT NULL").fetchone()[0] == 0
        )


async def test_dropped_connection_mid_send_resends_without_duplicates(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice) as a:
        await a.wait_connected()
        sent = [await a.send("bob", f"burst {i}") for i in range(30)]
        await a.reconnect_now()  # drop the socket while the burst is in flight
        for msg in sent:
            await a.wait_accepted(msg.msg_id, timeout=10)
        assert await a.history.outbox() == []
    async with open_client(bob) as b:
        events = await collect(b, 30)
        assert received_bodies(events) == [f"burst {i}" for i in range(30)]
        assert received_bodies(await collect(b, 1, timeout=0.3)) == []


async def test_resend_after_lost_acceptance_is_idempotent(relay, tmp_path):
    """The relay stored a message but the sender never heard: the outbox resend is deduped."""
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice) as a:
        await a.wait_connected()
        msg = await a.send("bob", "only once")
        await a.wait_accepted(msg.msg_id)
    # Make the same message pending again in the sender's outbox, as if the ack was lost.
    with sqlite3.connect(alice.history_path) as conn:
        conn.execute("UPDATE messages SET state = 'pending' WHERE msg_id = ?", (msg.msg_id,))
    async with open_client(alice) as a:
        again = await a.wait_accepted(msg.msg_id)
        assert again.state == "sent"
    async with open_client(bob) as b:
        assert received_bodies(await collect(b, 2, timeout=1.0)) == ["only once"]


async def test_outbox_survives_an_unreachable_relay(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    port = relay.port
    await relay.stop()
    async with open_client(alice) as a:
        msg = await a.send("bob", "written while offline")
        await asyncio.sleep(0.3)
        assert not a.is_connected
        assert [m.msg_id for m in await a.history.outbox()] == [msg.msg_id]
        # The relay comes back on the same port and data: the client reconnects by itself.
        back = await Relay(relay.config.data_dir, port=port).start()
        try:
            await a.wait_accepted(msg.msg_id, timeout=10)
            async with open_client(bob) as b:
                assert received_bodies(await collect(b, 1)) == ["written while offline"]
        finally:
            await back.stop()


async def test_events_report_acceptance_and_sync(relay, tmp_path):
    alice = await make_profile(tmp_path, relay.url, "alice")
    await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice) as a:
        await a.wait_connected()
        msg = await a.send("bob", "hi")
        await a.wait_accepted(msg.msg_id)
        events = await collect(a, 1, timeout=0.5)
        kinds = {type(e) for e in events}
        assert Synced in kinds and MessageAccepted in kinds


async def test_sender_sees_delivered_once_the_recipient_stored_it(relay, tmp_path):
    from client.events import MessageDelivered

    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_client(alice) as a:
        await a.wait_connected()
        msg = await a.send("bob", "did you get this?")
        assert (await a.wait_accepted(msg.msg_id)).state == "sent"
        async with open_client(bob) as b:
            assert received_bodies(await collect(b, 1)) == ["did you get this?"]
        events = await collect(a, 1, timeout=2)
        delivered = [e for e in events if isinstance(e, MessageDelivered)]
        assert [e.message.msg_id for e in delivered] == [msg.msg_id]
        assert (await a.history.get("alice", msg.msg_id)).state == "delivered"
