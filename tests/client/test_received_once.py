"""Every message the client stores is announced exactly once (issue 9, defect 4).

The receiving client stores a delivery, then acknowledges it. If the connection dies in
between, the relay delivers it again on the next connection, where it is recognised as
already stored. These tests cut the connection at exactly that point (right after the
local store, before the ack) against a real relay, and check what the user would: one
``MessageReceived`` for it, one row in history, and the relay's copy acknowledged.
"""

from __future__ import annotations

import sqlite3

import pytest

from client.events import ClientEvent, Connected, Disconnected, MessageReceived, Synced
from client.history import HistoryMessage
from client.relay import RelayClient
from tests.support import TEEN, Relay, make_profile, open_clients


def drop_connection_after_first_store(
    client: RelayClient, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """Close the client's socket as soon as its history has stored the first delivery, so
    the acknowledgement that follows the store can't be sent. Returns, once that happened,
    how many deliveries the relay still held unacknowledged at that moment."""
    real_add_incoming = client.history.add_incoming
    held_when_dropped: list[int] = []

    async def store_then_drop(**fields: object) -> HistoryMessage | None:
        stored = await real_add_incoming(**fields)  # type: ignore[arg-type]
        if not held_when_dropped:
            held_when_dropped.append(unacknowledged_at_relay(relay.config.database_path))
            await client.reconnect_now()
        return stored

    monkeypatch.setattr(client.history, "add_incoming", store_then_drop)
    return held_when_dropped


async def events_until_resynced(client: RelayClient) -> list[ClientEvent]:
    """Events up to the end of the backlog on the next connection, and any that follow
    within a short quiet period (a duplicate announcement would arrive there)."""
    events: list[ClientEvent] = []
    dropped = False
    while True:
        event = await client.next_event(10)
        assert event is not None, f"no reconnect and resync; got {events}"
        events.append(event)
        dropped = dropped or isinstance(event, Disconnected)
        if dropped and isinstance(event, Synced):
            break
    while (event := await client.next_event(0.5)) is not None:
        events.append(event)
    return events


def announced(events: list[ClientEvent]) -> list[tuple[str, str]]:
    return [(e.message.kind, e.message.body) for e in events if isinstance(e, MessageReceived)]


def unacknowledged_at_relay(database: object) -> int:
    with sqlite3.connect(str(database)) as conn:
        return conn.execute("SELECT count(*) FROM messages WHERE body IS NOT NULL").fetchone()[0]


async def skip_startup_events(client: RelayClient) -> None:
    """open_clients waited for the first sync: take its Connected/Synced off the queue."""
    while (event := await client.next_event(0.2)) is not None:
        assert isinstance(event, Connected | Synced), event


@pytest.mark.parametrize(
    ("sender_born", "mode"), [(None, "e2ee"), (TEEN, "visible")], ids=["e2ee", "visible"]
)
async def test_a_message_stored_as_the_connection_drops_is_announced_once(
    relay, tmp_path, monkeypatch, sender_born, mode
):
    extra = {"birthdate": sender_born} if sender_born else {}
    alice = await make_profile(tmp_path, relay.url, "alice", **extra)
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_clients(alice, bob) as (a, b):
        await skip_startup_events(b)
        held = drop_connection_after_first_store(b, relay, monkeypatch)
        message = await a.send("bob", "stored just before the line dropped")
        await a.wait_accepted(message.msg_id)

        events = await events_until_resynced(b)

        assert held == [1]  # stored by bob, not acknowledged: the relay delivers it again
        assert announced(events) == [("message", "stored just before the line dropped")]
        rows = await b.history.conversation("dm:alice:bob")
        assert [(m.msg_id, m.mode) for m in rows] == [(message.msg_id, mode)]
        # The redelivery was acknowledged: the relay no longer holds the body.
        assert unacknowledged_at_relay(relay.config.database_path) == 0


async def test_a_relay_event_stored_as_the_connection_drops_is_announced_once(
    relay, tmp_path, monkeypatch
):
    alice = await make_profile(tmp_path, relay.url, "alice")
    bob = await make_profile(tmp_path, relay.url, "bob")
    async with open_clients(alice, bob) as (a, b):
        await skip_startup_events(b)
        held = drop_connection_after_first_store(b, relay, monkeypatch)
        assert await a.contact_request("bob") == "requested"

        events = await events_until_resynced(b)

        assert held == [1]
        received = [e.message for e in events if isinstance(e, MessageReceived)]
        assert [(m.kind, m.code) for m in received] == [("system", "contact_request")]
        rows = await b.history.conversation("dm:alice:bob")
        assert [m.code for m in rows] == ["contact_request"]
        assert unacknowledged_at_relay(relay.config.database_path) == 0
