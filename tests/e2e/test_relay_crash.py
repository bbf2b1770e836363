"""SIGKILL the relay between acknowledging a message and delivering it: nothing is lost."""

from __future__ import annotations

import sqlite3

from tests.support import RelayProcess, collect, make_profile, open_client, received_bodies


async def test_acknowledged_message_survives_sigkill_and_arrives_once(tmp_path):
    relay = await RelayProcess(tmp_path / "relay").start()
    try:
        alice = await make_profile(tmp_path, relay.url, "alice")
        bob = await make_profile(tmp_path, relay.url, "bob")
        async with open_client(alice, reconnect=False) as a:
            await a.wait_connected()
            msgs = [await a.send("bob", f"before the crash {i}") for i in range(5)]
            for m in msgs:
                await a.wait_accepted(m.msg_id)
        relay.kill()  # SIGKILL: no shutdown hooks, no flush
        relay = await RelayProcess(tmp_path / "relay", port=relay.port).start()
        # The sender's client also resends one it never heard back about: still only once.
        with sqlite3.connect(alice.history_path) as conn:
            conn.execute("UPDATE messages SET state='pending' WHERE msg_id=?", (msgs[-1].msg_id,))
        async with open_client(alice, reconnect=False) as a:
            await a.wait_accepted(msgs[-1].msg_id)
        async with open_client(bob, reconnect=False) as b:
            events = await collect(b, 5)
            assert received_bodies(events) == [f"before the crash {i}" for i in range(5)]
            assert received_bodies(await collect(b, 1, timeout=0.5)) == []
    finally:
        relay.terminate()
