"""SIGKILL the relay between acknowledging a message and delivering it: nothing is lost."""

from __future__ import annotations

import sqlite3

import pytest

from client.errors import ClientError
from tests.e2e.test_e2ee import connect  # the first asks, the second accepts
from tests.support import (
    RelayProcess,
    collect,
    make_profile,
    open_client,
    received_bodies,
    years_ago,
)


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


async def test_counted_attempts_are_on_disk_once_a_later_message_is_accepted(tmp_path):
    """The contact-event log is written behind, in the group commit (docs/POLICY.md "Known
    trade-offs"): an event is on disk no later than any message accepted after it, so a
    SIGKILL then loses no attempt that restriction counts."""
    relay = await RelayProcess(tmp_path / "relay").start()
    try:
        vic = await make_profile(tmp_path, relay.url, "vic", years_ago(40))
        amy = await make_profile(tmp_path, relay.url, "amy", years_ago(38))
        for minor in ("tia", "una", "val"):
            await make_profile(tmp_path, relay.url, minor, years_ago(14))
        async with open_client(vic, reconnect=False) as v, open_client(amy, reconnect=False) as a:
            await v.wait_connected()
            for minor in ("tia", "una", "val"):
                with pytest.raises(ClientError) as refused:
                    await v.contact_request(minor)
                assert refused.value.code == "contact_not_allowed"
            await connect(a, v)
            m = await v.send("amy", "after the attempts")
            await v.wait_accepted(m.msg_id)
        relay.kill()  # SIGKILL: no shutdown hooks, no flush
        with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
            refused_on = {
                t
                for (t,) in db.execute(
                    "SELECT target FROM contact_events WHERE actor = 'vic' "
                    "AND event = 'refused_to_minor'"
                )
            }
        assert refused_on == {"tia", "una", "val"}
    finally:
        relay.terminate()
