"""Delete on ack reaches the disk: a visible body leaves the database file *and* its WAL
within a few seconds of its acknowledgement, while the relay keeps running (PROTOCOL.md §5;
issue 9, defect 5)."""

from __future__ import annotations

import asyncio
import secrets

from tests.support import Relay, drain, make_profile, open_clients, years_ago


def on_disk(relay: Relay) -> bytes:
    data_dir = relay.config.data_dir
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


async def test_an_acknowledged_visible_body_leaves_the_database_and_its_wal(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    try:
        teen = await make_profile(tmp_path, relay.url, "tess", years_ago(15))
        friend = await make_profile(tmp_path, relay.url, "finn", years_ago(15, days=40))
        async with open_clients(teen, friend) as (t, f):
            await t.contact_request("finn")
            await f.respond("tess", accept=True)
            await drain(f)
            words = "canary-" + secrets.token_hex(12)
            message = await t.send("finn", words)
            await t.wait_accepted(message.msg_id)
            assert words.encode() in on_disk(relay)  # stored before it was acknowledged
            assert [e.message.body for e in await drain(f)] == [words]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while words.encode() in on_disk(relay) and loop.time() < deadline:
                await asyncio.sleep(0.1)
            assert words.encode() not in on_disk(relay)
    finally:
        await relay.stop()


async def test_a_long_reader_does_not_stall_writes_behind_the_scrub(tmp_path):
    """An operator's open read transaction makes the scrub give up quickly (and retry later)
    instead of holding the write lock for the whole busy timeout."""
    import sqlite3
    import time

    from server.delivery.store import SqliteStore

    store = SqliteStore(tmp_path / "relay.sqlite3")
    await store.open()
    try:
        await store.set_meta("k", "v")
        reader = sqlite3.connect(tmp_path / "relay.sqlite3")
        reader.execute("BEGIN")
        reader.execute("SELECT * FROM meta").fetchall()  # holds a snapshot
        await store.set_meta("k", "w")  # a frame the reader's snapshot predates
        started = time.monotonic()
        assert await store.scrub_wal() is False
        assert time.monotonic() - started < 1.0
        reader.rollback()
        reader.close()
        assert await store.scrub_wal() is True
    finally:
        await store.close()
