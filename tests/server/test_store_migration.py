"""The relay store's schema migrations: a v3 file (before franking) opens as v4 with its
queued messages intact, and commitments round-trip until the recipient acknowledges; a v6
file (before guardian links) opens as v7 with its contacts and audit chain intact; a v8
file (messages unique by sender first) opens as v9 with every row, its seq and the seq
counter kept, and the statements run on every message use the indexes meant for them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from server.delivery.records import AckRecord, NewMessage
from server.delivery.store import (
    _ACK_PLAIN_SQL,
    _SCHEMA_V1,
    _SCHEMA_V2,
    _SCHEMA_V3,
    _SCHEMA_V4,
    _SCHEMA_V5,
    _SCHEMA_V6,
    _SCHEMA_V7,
    _SCHEMA_V8,
    SCHEMA_VERSION,
    SqliteStore,
)
from server.groups.store import Group, GroupStore, Member
from server.safety.audit import AuditLog
from server.social.guardian_store import GuardianStore, LinkRow

SENT = datetime(2026, 11, 23, 15, 0, 1, 250000, tzinfo=UTC)


SCRIPTS = (
    _SCHEMA_V1,
    _SCHEMA_V2,
    _SCHEMA_V3,
    _SCHEMA_V4,
    _SCHEMA_V5,
    _SCHEMA_V6,
    _SCHEMA_V7,
    _SCHEMA_V8,
)


def file_at(path, version: int) -> sqlite3.Connection:
    """A store file as a relay of schema ``version`` left it."""
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(SCRIPTS[:version], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    return db


def make_v3(path) -> None:
    db = file_at(path, 3)
    db.execute(
        "INSERT INTO messages (sender, msg_id, recipient, conversation, mode, body, sent_at) "
        "VALUES ('ana', 'old-message-1', 'ben', 'dm:ana:ben', 'visible', 'hi', ?)",
        (SENT.timestamp(),),
    )
    db.close()


async def test_a_v3_store_migrates_and_keeps_its_queue(tmp_path):
    path = tmp_path / "relay.sqlite3"
    make_v3(path)
    store = SqliteStore(path)
    await store.open()
    try:
        async with store.reader.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == SCHEMA_VERSION == 9
        (old,) = await store.pending_for("ben", 0, 10)
        assert (old.msg_id, old.body, old.sent_at, old.commitment) == (
            "old-message-1",
            "hi",
            SENT,
            None,
        )
    finally:
        await store.close()


async def test_a_commitment_is_stored_delivered_and_dropped_on_ack(tmp_path):
    store = SqliteStore(tmp_path / "relay.sqlite3")
    await store.open()
    try:
        message = NewMessage(
            sender="ana",
            msg_id="new-message-1",
            recipient="ben",
            conversation="dm:ana:ben",
            mode="e2ee",
            body="AQA=",
            sent_at=SENT,
            commitment=b"\x07" * 32,
        )
        (stored,) = (await store.write_batch([message], [], SENT)).stored
        assert stored.commitment == b"\x07" * 32
        (pending,) = await store.pending_for("ben", 0, 10)
        assert pending.commitment == b"\x07" * 32
        await store.write_batch([], [AckRecord("ben", "ana", "new-message-1")], SENT)
        kept = await store.find_message("ana", "new-message-1")
        assert kept is not None and (kept.body, kept.commitment) == (None, None)
    finally:
        await store.close()


def make_v6(path) -> None:
    db = file_at(path, 6)
    db.execute(
        "INSERT INTO contacts (low, high, state, requester, created_at, updated_at) "
        "VALUES ('dana', 'tia', 'connected', 'tia', ?, ?)",
        (SENT.timestamp(), SENT.timestamp()),
    )
    db.close()


async def test_a_v6_store_migrates_to_guardian_links(tmp_path):
    path = tmp_path / "relay.sqlite3"
    make_v6(path)
    store = SqliteStore(path)
    await store.open()
    try:
        async with store.reader.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == SCHEMA_VERSION == 9
        async with store.reader.execute("SELECT low, high, state FROM contacts") as cur:
            assert await cur.fetchall() == [("dana", "tia", "connected")]
        guardians = GuardianStore(store)
        assert await guardians.links() == []
        assert await guardians.pending() == []
        invited = LinkRow("dana", "tia", "invited", "tia", SENT)
        await guardians.invite(invited)
        linked = await guardians.link(invited, "dana", SENT)
        assert await guardians.links() == [linked]
        assert await guardians.connected_since("tia") == {"dana": SENT}
        count, _, problem = await AuditLog(store).verify()
        assert (count, problem) == (1, None)  # the link is the chain's first entry
    finally:
        await store.close()


def make_v7(path) -> None:
    db = file_at(path, 7)
    db.execute(
        "INSERT INTO messages (sender, msg_id, recipient, conversation, mode, body, sent_at) "
        "VALUES ('ana', 'old-message-1', 'ben', 'dm:ana:ben', 'visible', 'hi', ?)",
        (SENT.timestamp(),),
    )
    db.close()


async def test_a_v7_store_migrates_to_groups(tmp_path):
    path = tmp_path / "relay.sqlite3"
    make_v7(path)
    store = SqliteStore(path)
    await store.open()
    try:
        async with store.reader.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == SCHEMA_VERSION == 9
        kept = await store.find_message("ana", "old-message-1")
        assert kept is not None and kept.body == "hi"
        groups = GroupStore(store)
        assert await groups.load() == {}
        group = Group("g" * 22, "Robotics", "ana", SENT, "visible")
        group.members["ana"] = Member("ana", "admin", "member", "ana", SENT)
        await groups.create(group)
        assert await groups.load() == {group.id: group}
    finally:
        await store.close()


async def test_an_ack_frees_the_attachment_it_names_even_after_a_restart(tmp_path):
    """write_batch knows which waiting messages name a blob (read again at open): the ack
    of one of them reports its blob as released, and the others' acks nothing."""
    from protocol.attachments import AttachmentRef

    path = tmp_path / "relay.sqlite3"
    ref = AttachmentRef(id="blob-0001", size=6, name="x.txt", type="text/plain")
    with_file = NewMessage("ana", "m-1", "ben", "dm:ana:ben", "visible", "", SENT, attachment=ref)
    plain = NewMessage("ana", "m-2", "ben", "dm:ana:ben", "visible", "hi", SENT)
    store = SqliteStore(path)
    await store.open()
    try:
        await store.write_batch([with_file, plain], [], SENT)
    finally:
        await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        acks = [AckRecord("ben", "ana", "m-2"), AckRecord("ben", "ana", "m-1")]
        result = await store.write_batch([], acks, SENT)
        assert result.released == [("ana", "blob-0001")]
        for msg_id in ("m-1", "m-2"):
            gone = await store.find_message("ana", msg_id)
            assert gone is not None and gone.body is None
        again = await store.write_batch([], acks, SENT)  # acknowledged twice: nothing more
        assert again.released == []
    finally:
        await store.close()


BLOB_REF = '{"id":"blob-0001","size":6,"name":"x.txt","type":"text/plain"}'


def make_v8(path) -> None:
    db = file_at(path, 8)
    for n in range(1, 5):
        db.execute(
            "INSERT INTO messages (sender, msg_id, recipient, conversation, mode, body, sent_at, "
            "acked_at, commitment, size, attachment) VALUES ('ana', ?, 'ben', 'dm:ana:ben', "
            "'e2ee', 'AQA=', ?, ?, ?, 4, ?)",
            (
                f"old-message-{n}",
                SENT.timestamp(),
                SENT.timestamp() if n == 1 else None,
                b"\x07" * 32,
                BLOB_REF if n == 2 else None,
            ),
        )
    # The newest row went (pruned): its seq must never be given out again.
    db.execute("DELETE FROM messages WHERE msg_id = 'old-message-4'")
    db.close()


async def test_a_v8_store_migrates_to_ids_first_keeping_rows_and_seqs(tmp_path):
    path = tmp_path / "relay.sqlite3"
    make_v8(path)
    store = SqliteStore(path)
    await store.open()
    try:
        async with store.reader.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == SCHEMA_VERSION == 9
        async with store.reader.execute(
            "SELECT seq, msg_id, acked_at IS NOT NULL, commitment, attachment IS NOT NULL "
            "FROM messages ORDER BY seq"
        ) as cur:
            assert await cur.fetchall() == [
                (1, "old-message-1", 1, b"\x07" * 32, 0),
                (2, "old-message-2", 0, b"\x07" * 32, 1),
                (3, "old-message-3", 0, b"\x07" * 32, 0),
            ]
        assert [m.msg_id for m in await store.pending_for("ben", 0, 10)] == [
            "old-message-2",
            "old-message-3",
        ]
        resend = NewMessage("ana", "old-message-3", "ben", "dm:ana:ben", "e2ee", "AQA=", SENT)
        fresh = NewMessage("ana", "new-message-1", "ben", "dm:ana:ben", "e2ee", "AQA=", SENT)
        # The new row comes after the pruned seq 4, and the resend is still recognised.
        stored = (await store.write_batch([fresh], [], SENT)).stored
        assert [(m.seq, m.msg_id) for m in stored] == [(5, "new-message-1")]
        assert (await store.write_batch([resend], [], SENT)).stored == []
        # The blob named by a waiting message is still found at open.
        acked = await store.write_batch([], [AckRecord("ben", "ana", "old-message-2")], SENT)
        assert acked.released == [("ana", "blob-0001")]
    finally:
        await store.close()


async def test_the_per_message_statements_use_their_indexes(tmp_path):
    """A scan here would cost a read of the whole table per message or per ack."""
    store = SqliteStore(tmp_path / "relay.sqlite3")
    await store.open()
    plans = {
        _ACK_PLAIN_SQL: "USING INDEX messages_by_id",
        "SELECT * FROM messages WHERE sender = ? AND msg_id = ?": "USING INDEX messages_by_id",
        "SELECT * FROM messages WHERE recipient = ? AND acked_at IS NULL AND seq > ? "
        "ORDER BY seq LIMIT 5": "USING INDEX messages_pending",
    }
    try:
        for sql, index in plans.items():
            params = (1,) * sql.count("?")
            async with store.reader.execute(f"EXPLAIN QUERY PLAN {sql}", params) as c:
                plan = " ".join(row[3] for row in await c.fetchall())
            assert index in plan and "SCAN" not in plan, (sql, plan)
    finally:
        await store.close()


async def test_the_seqs_a_batch_reports_are_the_stored_ones_with_or_without_resends(tmp_path):
    """A batch without resends works its seqs out from the last one; one with a resend
    reads them back: both must give exactly what the table holds."""
    store = SqliteStore(tmp_path / "relay.sqlite3")
    await store.open()

    def message(msg_id: str) -> NewMessage:
        return NewMessage("ana", msg_id, "ben", "dm:ana:ben", "visible", msg_id, SENT)

    try:
        batches = [["m-1", "m-2"], ["m-2", "m-3", "m-4"], ["m-5"], ["m-1", "m-5"]]
        reported = []
        for ids in batches:
            result = await store.write_batch([message(i) for i in ids], [], SENT)
            reported += [(m.seq, m.msg_id, m.body) for m in result.stored]
        async with store.reader.execute("SELECT seq, msg_id, body FROM messages") as cur:
            assert reported == sorted(await cur.fetchall())
        assert [r[1] for r in reported] == ["m-1", "m-2", "m-3", "m-4", "m-5"]
    finally:
        await store.close()


async def test_the_legal_exports_evidence_reads_the_messages_table_once(tmp_path):
    """The export's check of which evidence was an encrypted message reads the account's
    encrypted messages once, not the whole table again for each evidence item."""
    from server.admin.legal_export_data import EVIDENCE_SQL

    store = SqliteStore(tmp_path / "relay.sqlite3")
    await store.open()
    try:
        params = ("ana", "ana", 0.0, 1.0) * 2
        async with store.reader.execute(f"EXPLAIN QUERY PLAN {EVIDENCE_SQL}", params) as cur:
            plan = [(row[0], row[1], row[3]) for row in await cur.fetchall()]
        materialized = [node for node, _, detail in plan if detail == "MATERIALIZE held"]
        assert len(materialized) == 1
        scans = [(parent, detail) for _, parent, detail in plan if "messages" in detail]
        assert scans == [(materialized[0], "SCAN messages")]  # inside the one materialization
    finally:
        await store.close()
