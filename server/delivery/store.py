"""Relay storage: one interface, with SQLite (aiosqlite, WAL) as the embedded backend.

Messages are stored before the sender is acknowledged and their bodies are deleted when the
recipient acknowledges (Signal-Server's delete-on-ack). The row's (sender, id) stays for the
dedupe window so a late resend is recognised, then ``prune`` removes it. ``secure_delete``
overwrites deleted bodies on disk instead of leaving them in free pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

import aiosqlite
import msgspec

from protocol.attachments import AttachmentRef
from protocol.codec import utf8_size
from server.delivery.records import AccountRecord, AckRecord, NewMessage, StoredMessage

SCHEMA_VERSION = 9
#: How long a connection waits for SQLite's lock (the admin command may hold it briefly).
BUSY_TIMEOUT_MS = 5000
#: How long the WAL scrub waits for readers before trying again next time.
SCRUB_BUSY_MS = 50
WAL_AUTOCHECKPOINT_PAGES = 4000

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    handle TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    identity_key BLOB NOT NULL,
    dh_identity_key BLOB NOT NULL,
    birthdate TEXT NOT NULL,
    declaration BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    conversation TEXT NOT NULL,
    mode TEXT NOT NULL,
    body TEXT,
    sent_at REAL NOT NULL,
    acked_at REAL,
    UNIQUE (sender, msg_id)
);
CREATE INDEX IF NOT EXISTS messages_pending
    ON messages (recipient, seq) WHERE acked_at IS NULL;
"""


# v2 (issue #3): relay events travel as messages with a kind; contact state, blocks, the
# contact-event log that feeds rate limits and restriction, reports, the admin audit trail,
# and the last band announced per account (to notice birthdays).
_SCHEMA_V2 = """
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
ALTER TABLE messages ADD COLUMN code TEXT;
ALTER TABLE messages ADD COLUMN request INTEGER NOT NULL DEFAULT 0;
CREATE TABLE contacts (
    low TEXT NOT NULL,
    high TEXT NOT NULL,
    state TEXT NOT NULL,
    requester TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (low, high)
);
CREATE TABLE blocks (
    blocker TEXT NOT NULL,
    blocked TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE TABLE contact_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    target TEXT NOT NULL,
    event TEXT NOT NULL,
    target_minor INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX contact_events_actor ON contact_events (actor, event, created_at);
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter TEXT NOT NULL,
    reported TEXT NOT NULL,
    reason TEXT NOT NULL,
    conversation TEXT NOT NULL,
    evidence BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    created_at REAL NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE announced_bands (handle TEXT PRIMARY KEY, band TEXT NOT NULL);
"""


# v3 (issue #4): the key directory — signed prekeys (the newest is handed out, older ones
# kept for the grace period) and one-time prekeys (each handed out once, then deleted).
_SCHEMA_V3 = """
CREATE TABLE prekeys (
    handle TEXT NOT NULL,
    kind TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    public BLOB NOT NULL,
    signature BLOB,
    created_at REAL NOT NULL,
    PRIMARY KEY (handle, kind, key_id)
);
"""


# v4 (issue #4): an e2ee message's franking commitment (PROTOCOL.md §6.4), kept until the
# recipient acknowledges it (the relay tag is recomputed from it on each delivery).
_SCHEMA_V4 = """
ALTER TABLE messages ADD COLUMN commitment BLOB;
"""


# v5 (issue #11): the audit log becomes a hash chain (server/safety/audit.py; entries
# written before are chained once, by the first process that opens the log); moderator
# roles, cases with their findings, sealed evidence and decisions, and account flags set
# by moderators (suspension, a restriction a person decided); the addresses accounts log
# in from (a CyberTipline report's IP capture events).
_SCHEMA_V5 = """
ALTER TABLE audit ADD COLUMN prev_hash BLOB;
ALTER TABLE audit ADD COLUMN entry_hash BLOB;
CREATE TABLE roles (
    handle TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at REAL NOT NULL,
    PRIMARY KEY (handle, role)
);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    assignee TEXT,
    opened_at REAL NOT NULL,
    closed_at REAL
);
CREATE UNIQUE INDEX cases_one_open_per_subject ON cases (subject) WHERE status = 'open';
CREATE TABLE findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    source TEXT NOT NULL,
    score REAL NOT NULL,
    explanation TEXT NOT NULL,
    reporter TEXT,
    involves_minor INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    finding_id INTEGER NOT NULL REFERENCES findings (id),
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    mode TEXT NOT NULL,
    sent_at REAL NOT NULL,
    franking TEXT NOT NULL,
    chars INTEGER NOT NULL,
    sealed BLOB NOT NULL
);
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    moderator TEXT NOT NULL,
    action TEXT NOT NULL,
    note TEXT NOT NULL,
    decided_at REAL NOT NULL
);
CREATE TABLE logins (
    handle TEXT NOT NULL,
    address TEXT NOT NULL,
    logged_in_at REAL NOT NULL
);
CREATE INDEX logins_by_handle ON logins (handle, logged_in_at);
CREATE TABLE account_flags (
    handle TEXT PRIMARY KEY,
    suspended INTEGER NOT NULL DEFAULT 0,
    restricted_by TEXT,
    restricted_reason TEXT
);
"""


# v6 (issue #11 review, issue #12): which queue and case set an account's moderator flags,
# so only a moderator who may see that queue can lift them (a general moderator can't undo a
# child-safety decision through a later general case); each message's size (delivery
# metadata kept for the retention period, server/safety/retention.py); preservation
# requests, which hold an account's data past normal retention; attachments (issue #13):
# the blob a message names (its AttachmentRef as JSON) and the uploaded blobs, whose bytes
# live in files under <data-dir>/blobs/ (server/attachments/store.py); each conversation's
# grooming-risk state (issue #14: firings and counters, never message text).
_SCHEMA_V6 = """
ALTER TABLE account_flags ADD COLUMN queue TEXT;
ALTER TABLE account_flags ADD COLUMN case_id INTEGER;
ALTER TABLE messages ADD COLUMN size INTEGER;
CREATE TABLE preservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handle TEXT NOT NULL,
    reference TEXT NOT NULL,
    until REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX preservations_by_handle ON preservations (handle, until);
ALTER TABLE messages ADD COLUMN attachment TEXT;
ALTER TABLE evidence ADD COLUMN blob TEXT;
CREATE TABLE conversation_risk (
    conversation TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE blobs (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    mode TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'uploaded',
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, id)
);
"""


# v7 (issue #16): guardian links — invitations and confirmed links between an adult (the
# guardian) and a minor (the ward); a ward's new adult contacts waiting for a guardian's
# approval, and their answers; and what happened in each link (views of the ward's contacts,
# approvals, what the guardian was told), which moderators see in the ward's case
# (server/social/guardian_store.py). Links, unlinks and approvals also go to the audit log.
_SCHEMA_V7 = """
CREATE TABLE guardian_links (
    guardian TEXT NOT NULL,
    ward TEXT NOT NULL,
    state TEXT NOT NULL,
    inviter TEXT NOT NULL,
    created_at REAL NOT NULL,
    linked_at REAL,
    PRIMARY KEY (guardian, ward)
);
CREATE INDEX guardian_links_by_ward ON guardian_links (ward);
CREATE TABLE guardian_approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ward TEXT NOT NULL,
    contact TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    requested_at REAL NOT NULL,
    decided_by TEXT,
    decided_at REAL
);
CREATE UNIQUE INDEX guardian_approvals_one_pending
    ON guardian_approvals (ward, contact) WHERE state = 'pending';
CREATE TABLE guardian_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    guardian TEXT NOT NULL,
    ward TEXT NOT NULL,
    event TEXT NOT NULL,
    about TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX guardian_events_by_ward ON guardian_events (ward, created_at);
CREATE INDEX guardian_events_by_guardian ON guardian_events (guardian, created_at);
"""


# v8 (issue #15): groups and their members (server/groups/store.py owns the tables).
_SCHEMA_V8 = """
CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    mode TEXT NOT NULL
);
CREATE TABLE group_members (
    grp TEXT NOT NULL,
    handle TEXT NOT NULL,
    role TEXT NOT NULL,
    state TEXT NOT NULL,
    added_by TEXT NOT NULL,
    since REAL NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grp, handle)
);
CREATE INDEX group_members_by_handle ON group_members (handle);
"""

# v9 (issue #10): a message's (sender, id) is unique by id first. Keyed by sender first,
# each stored message landed in its sender's part of the index: a batch from a hundred
# senders wrote a hundred pages of it, about one 4 KiB page per message, which was most of
# what a commit cost. Keyed by id first, the time-ordered ids clients send (PROTOCOL.md §1)
# all land at the index's end, a few pages per batch (bench/RESULTS.md). SQLite can't
# change a table's constraint in place, so the table is rebuilt the way its documentation
# says ("ALTER TABLE", section "Making other kinds of table schema changes"), keeping each
# row's seq and the AUTOINCREMENT counter (a seq is never used twice). The queries that
# look up by sender alone are an attachment's (a partial index of the messages that name
# one), a moderator's hold (the pending index) and the legal export's (one read per export).
# Nothing references messages; a later rebuild of a referenced table would also need
# foreign_keys off, which SQLite ignores inside the transaction each step runs in.
_SCHEMA_V9 = """
CREATE TABLE messages_v9 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    conversation TEXT NOT NULL,
    mode TEXT NOT NULL,
    body TEXT,
    sent_at REAL NOT NULL,
    acked_at REAL,
    kind TEXT NOT NULL DEFAULT 'message',
    code TEXT,
    request INTEGER NOT NULL DEFAULT 0,
    commitment BLOB,
    size INTEGER,
    attachment TEXT
);
INSERT INTO messages_v9 (seq, sender, msg_id, recipient, conversation, mode, body, sent_at,
    acked_at, kind, code, request, commitment, size, attachment)
SELECT seq, sender, msg_id, recipient, conversation, mode, body, sent_at,
    acked_at, kind, code, request, commitment, size, attachment FROM messages ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'messages_v9';
INSERT INTO sqlite_sequence (name, seq) SELECT 'messages_v9', seq FROM sqlite_sequence
    WHERE name = 'messages';
DROP TABLE messages;
ALTER TABLE messages_v9 RENAME TO messages;
CREATE UNIQUE INDEX messages_by_id ON messages (msg_id, sender);
CREATE INDEX messages_pending ON messages (recipient, seq) WHERE acked_at IS NULL;
CREATE INDEX messages_attached ON messages (sender, recipient) WHERE attachment IS NOT NULL;
"""


#: A statement and its parameters, written in a batch's transaction (write-behind).
Write = tuple[str, tuple[object, ...]]

_ACK_WHERE = "WHERE recipient = ? AND sender = ? AND msg_id = ? AND acked_at IS NULL "
_ACK_KEEPING_SQL = (
    "UPDATE messages SET body = CASE WHEN mode = 'visible' AND kind = 'message' "
    "AND (? OR EXISTS (SELECT 1 FROM preservations p WHERE p.until > ? "
    "AND p.handle IN (messages.sender, messages.recipient))) "
    "THEN body ELSE NULL END, commitment = NULL, acked_at = ? "
    + _ACK_WHERE
    + "RETURNING sender, CASE WHEN body IS NULL AND attachment IS NOT NULL "
    "THEN json_extract(attachment, '$.id') END"
)
_ACK_SQL = (
    "UPDATE messages SET body = NULL, commitment = NULL, acked_at = ? "
    + _ACK_WHERE
    + "RETURNING sender, CASE WHEN attachment IS NOT NULL "
    "THEN json_extract(attachment, '$.id') END"
)
_ACK_PLAIN_SQL = "UPDATE messages SET body = NULL, commitment = NULL, acked_at = ? " + _ACK_WHERE
_PRESERVING_SQL = "SELECT 1 FROM preservations WHERE until > ? LIMIT 1"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did: the messages it stored (in order), and the (owner, blob id) of
    each attachment whose message's body an ack deleted."""

    stored: list[StoredMessage]
    released: list[tuple[str, str]]
    #: Every message of the batch was stored (none was a resend): ``stored`` is in the
    #: order the messages were given.
    in_order: bool = False


class HandleTakenError(Exception):
    """Registration of a handle that already exists."""


class Store(Protocol):
    """What the relay needs from storage. Every backend implements all of it."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...
    async def create_account(self, account: AccountRecord) -> None: ...
    async def get_account(self, handle: str) -> AccountRecord | None: ...
    async def all_handles(self) -> list[str]: ...
    async def write_batch(
        self,
        messages: Sequence[NewMessage],
        acks: Sequence[AckRecord],
        now: datetime,
        keep_visible: bool = False,
        writes: Sequence[Write] = (),
    ) -> BatchResult: ...
    async def find_message(self, sender: str, msg_id: str) -> StoredMessage | None: ...
    async def pending_for(
        self, recipient: str, after_seq: int, limit: int
    ) -> list[StoredMessage]: ...
    async def scrub_wal(self) -> bool: ...
    async def prune(self, acked_before: datetime) -> int: ...


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


_ATTACHMENT = msgspec.json.Decoder(AttachmentRef)
#: Where a row ``write_batch`` inserts holds its time (the column's float).
_SENT_AT = 6


def _message(row: sqlite3.Row | tuple) -> StoredMessage:
    seq, sender, msg_id, recipient, conversation, mode, body, sent_at, *rest = row
    kind, code, request, commitment, attachment = rest
    return StoredMessage(
        seq,
        sender,
        msg_id,
        recipient,
        conversation,
        mode,
        body,
        _dt(sent_at),
        kind,
        code,
        bool(request),
        None if commitment is None else bytes(commitment),
        None if attachment is None else _ATTACHMENT.decode(attachment),
    )


def _as_stored(seq: int, m: NewMessage, sent_at: float) -> StoredMessage:
    """The row just written for ``m``, as ``_message`` would read it back: the time is the
    column's float ``sent_at``, so a later read gives the very same value."""
    return StoredMessage(
        seq,
        m.sender,
        m.msg_id,
        m.recipient,
        m.conversation,
        m.mode,
        m.body,
        _dt(sent_at),
        m.kind,
        m.code,
        m.request,
        m.commitment,
        m.attachment,
    )


_MESSAGE_COLUMNS = (
    "seq, sender, msg_id, recipient, conversation, mode, body, sent_at, kind, code, request, "
    "commitment, attachment"
)


class SqliteStore:
    """The embedded backend: one SQLite file in WAL mode, written by one connection."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # aiosqlite serialises calls but not transactions: hold this across each write
        # transaction so nothing else joins (or is rolled back with) it.
        self._write_lock = asyncio.Lock()
        self._max_seq = 0
        # The group commit's own connection and thread (``write_batch``). It writes only
        # under the write lock, so the two writers never contend.
        self._batch_db: sqlite3.Connection | None = None
        self._batch_thread: ThreadPoolExecutor | None = None
        #: (sender, id) of each unacknowledged message that names an attachment (read at
        #: open, kept by write_batch): the acks of all others go in one plain statement.
        self._attached: set[tuple[str, str]] = set()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @property
    def write_lock(self) -> asyncio.Lock:
        return self._write_lock

    @property
    def reader(self) -> aiosqlite.Connection:
        """A second connection for reads: in WAL mode it never sees uncommitted writes."""
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    async def open(self) -> None:
        # Owner-only: visible-mode bodies and birth dates live here.
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the sender is acknowledged, even across power loss.
        await self.db.execute(f"PRAGMA synchronous={self._synchronous}")
        await self.db.execute("PRAGMA secure_delete=ON")
        await self.db.execute("PRAGMA foreign_keys=ON")
        # The admin command may write while the relay runs: wait for the lock, don't fail.
        await self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await self._migrate()
        self._reader = await aiosqlite.connect(self._path, isolation_level=None)
        await self._reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._batch_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-batch")
        loop = asyncio.get_running_loop()
        self._batch_db = await loop.run_in_executor(self._batch_thread, self._connect_batch)
        async with self.db.execute(
            "SELECT sender, msg_id FROM messages WHERE attachment IS NOT NULL AND acked_at IS NULL"
        ) as cur:
            self._attached = {(str(a), str(b)) for a, b in await cur.fetchall()}
        async with self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages") as cur:
            row = await cur.fetchone()
        self._max_seq = int(row[0]) if row else 0

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self._path} has schema version {version}; "
                f"this relay knows up to {SCHEMA_VERSION}"
            )
        # Each step runs in its own transaction and records the version it reached.
        steps = (
            (1, _SCHEMA_V1),
            (2, _SCHEMA_V2),
            (3, _SCHEMA_V3),
            (4, _SCHEMA_V4),
            (5, _SCHEMA_V5),
            (6, _SCHEMA_V6),
            (7, _SCHEMA_V7),
            (8, _SCHEMA_V8),
            (9, _SCHEMA_V9),
        )
        for target, script in steps:
            if version < target:
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in filter(str.strip, script.split(";")):
                        await self.db.execute(statement)
                    if target == 5:
                        # Chaining the audit entries written before v5 is part of the step.
                        from server.safety.audit import chain_existing

                        await chain_existing(self.db)
                    await self.db.execute(f"PRAGMA user_version={target}")
                except BaseException:
                    await self.db.execute("ROLLBACK")
                    raise
                await self.db.execute("COMMIT")
                version = target

    def _connect_batch(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # Per connection, as the main writer's (above).
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute("PRAGMA secure_delete=ON")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # The batch writer's commits run SQLite's automatic checkpoint. Every 4,000 pages
        # (16 MiB) instead of 1,000: a page written by many batches (the tail of the table,
        # the pending index) is copied once, not four times; measured -6% of this thread's
        # CPU per message (bench/RESULTS.md). The WAL still goes at the next scrub, within
        # about a second (server/app.py, `_scrub_forever`).
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        return db

    async def close(self) -> None:
        if self._batch_thread is not None:
            thread, self._batch_thread = self._batch_thread, None
            if self._batch_db is not None:
                db, self._batch_db = self._batch_db, None
                await asyncio.get_running_loop().run_in_executor(thread, db.close)
            thread.shutdown(wait=False)
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def get_meta(self, key: str) -> str | None:
        async with self.reader.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    async def create_account(self, account: AccountRecord) -> None:
        try:
            async with self._write_lock:
                await self.db.execute(
                    "INSERT INTO accounts (handle, display_name, identity_key, dh_identity_key, "
                    "birthdate, declaration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        account.handle,
                        account.display_name,
                        account.identity_key,
                        account.dh_identity_key,
                        account.birthdate.isoformat(),
                        account.declaration,
                        _ts(account.created_at),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise HandleTakenError(account.handle) from exc

    async def get_account(self, handle: str) -> AccountRecord | None:
        async with self.reader.execute(
            "SELECT handle, display_name, identity_key, dh_identity_key, birthdate, "
            "declaration, created_at FROM accounts WHERE handle = ?",
            (handle,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return AccountRecord(
            row[0],
            row[1],
            bytes(row[2]),
            bytes(row[3]),
            date.fromisoformat(row[4]),
            bytes(row[5]),
            _dt(row[6]),
        )

    async def all_handles(self) -> list[str]:
        async with self.reader.execute("SELECT handle FROM accounts") as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction on the writer connection, holding the write lock."""
        async with self._write_lock:
            db = self.db
            try:
                # Inside the try: a task cancelled while BEGIN is on its way must still roll
                # back (aiosqlite runs the BEGIN anyway), or the next writer finds a
                # transaction already open.
                await db.execute("BEGIN IMMEDIATE")
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # none was open
                    await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def write_batch(
        self,
        messages: Sequence[NewMessage],
        acks: Sequence[AckRecord],
        now: datetime,
        keep_visible: bool = False,
        writes: Sequence[Write] = (),
    ) -> BatchResult:
        """Store messages, apply acks and run ``writes`` in one transaction.

        An ack deletes the body (and an e2ee message's commitment) — unless the message is a
        visible one and either ``keep_visible`` (the policy's `retention.visible_days` > 0)
        or a preservation covers its sender or recipient: then the retention sweep deletes
        it later. Encrypted bodies are never kept: the relay can't read them.

        Only one writer calls this (the group committer), so the rows with a sequence number
        above the previous maximum are exactly the ones this batch inserted; a message whose
        (sender, id) already exists is ignored (an idempotent resend).

        The whole transaction is one call on the batch writer's own thread: one hand-off per
        batch, not one per statement (bench/RESULTS.md, "Where the time goes").
        """
        if self._batch_thread is None:
            raise RuntimeError("store is not open")
        async with self._write_lock:
            work = asyncio.get_running_loop().run_in_executor(
                self._batch_thread,
                self._write_batch_now,
                messages,
                acks,
                _ts(now),
                keep_visible,
                writes,
            )
            try:
                result = await asyncio.shield(work)
            except asyncio.CancelledError:
                # Keep the lock until the thread's transaction has ended either way.
                with contextlib.suppress(Exception):
                    await work
                raise
        if result.stored:
            self._max_seq = result.stored[-1].seq
        return result

    def _write_batch_now(
        self,
        messages: Sequence[NewMessage],
        acks: Sequence[AckRecord],
        now: float,
        keep_visible: bool,
        writes: Sequence[Write],
    ) -> BatchResult:
        """``write_batch``'s transaction, on the batch writer's thread."""
        db = self._batch_db
        if db is None:
            raise RuntimeError("store is not open")
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in writes:
                db.execute(sql, params)
            inserted = last = 0
            rows = []
            if messages:
                rows = [
                    (
                        m.sender,
                        m.msg_id,
                        m.recipient,
                        m.conversation,
                        m.mode,
                        m.body,
                        _ts(m.sent_at),
                        m.kind,
                        m.code,
                        int(m.request),
                        m.commitment,
                        utf8_size(m.body) + (m.attachment.size if m.attachment is not None else 0),
                        None
                        if m.attachment is None
                        else msgspec.json.encode(m.attachment).decode(),
                    )
                    for m in messages
                ]
                inserted = db.executemany(
                    "INSERT OR IGNORE INTO messages (sender, msg_id, recipient, conversation, "
                    "mode, body, sent_at, kind, code, request, commitment, size, attachment) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                ).rowcount
                # Read now: only an insert changes it, and one of `writes` may be one.
                (last,) = db.execute("SELECT last_insert_rowid()").fetchone()
            released: list[tuple[str, str]] = []
            # Without retention of visible text or a preservation in force (the usual
            # case), every acknowledged body goes: the plain statement, not the one that
            # looks for a preservation once per ack.
            keeps = bool(acks) and (
                keep_visible or db.execute(_PRESERVING_SQL, (now,)).fetchone() is not None
            )
            attached = self._attached
            plain = []
            for a in acks:
                if not keeps and (a.sender, a.msg_id) not in attached:
                    plain.append((now, a.recipient, a.sender, a.msg_id))
                    continue
                # RETURNING names the blob of a message whose body went with the ack (the
                # blob goes too: server/attachments/), found by the (sender, id) key here
                # instead of by a scan of the table afterwards.
                if keeps:
                    sql, params = _ACK_KEEPING_SQL, (int(keep_visible), now, now)
                else:
                    sql, params = _ACK_SQL, (now,)
                for sender, blob_id in db.execute(sql, (*params, a.recipient, a.sender, a.msg_id)):
                    if blob_id is not None:
                        released.append((str(sender), str(blob_id)))
            if plain:  # no attachment among them: one call for all
                db.executemany(_ACK_PLAIN_SQL, plain)
            stored: list[StoredMessage] = []
            if messages and inserted == len(messages):
                # None was a resend: one statement inserted them in order, each with the
                # next seq (AUTOINCREMENT; BEGIN IMMEDIATE keeps every other connection
                # out, and last_insert_rowid is this connection's), so the last one's seq
                # gives them all.
                first = last - inserted + 1
                stored = [
                    _as_stored(first + n, m, row[_SENT_AT])
                    for n, (m, row) in enumerate(zip(messages, rows, strict=True))
                ]
            elif messages:
                # Only the new rows' keys are read back: the rest is what was just written.
                sent = {
                    (m.sender, m.msg_id): (m, row) for m, row in zip(messages, rows, strict=True)
                }
                new_rows = db.execute(
                    "SELECT seq, sender, msg_id FROM messages WHERE seq > ? ORDER BY seq",
                    (self._max_seq,),
                ).fetchall()
                for seq, sender, msg_id in new_rows:
                    found = sent.get((sender, msg_id))
                    if found is None:  # not from this batch (no other writer does this today)
                        other = db.execute(
                            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE seq = ?", (seq,)
                        ).fetchone()
                        stored.append(_message(other))
                    else:
                        stored.append(_as_stored(seq, found[0], found[1][_SENT_AT]))
        except BaseException:
            with contextlib.suppress(sqlite3.OperationalError):
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        # Only once committed: which waiting messages name an attachment (few do: most
        # batches have nothing to add or take away).
        attached.update((m.sender, m.msg_id) for m in messages if m.attachment is not None)
        if attached:
            attached.difference_update((a.sender, a.msg_id) for a in acks)
        return BatchResult(stored, released, inserted == len(messages))

    async def find_message(self, sender: str, msg_id: str) -> StoredMessage | None:
        async with self.reader.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND msg_id = ?",
            (sender, msg_id),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else _message(row)

    async def pending_for(self, recipient: str, after_seq: int, limit: int) -> list[StoredMessage]:
        async with self.reader.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE recipient = ? AND acked_at IS NULL "
            "AND seq > ? ORDER BY seq LIMIT ?",
            (recipient, after_seq, limit),
        ) as cur:
            return [_message(r) for r in await cur.fetchall()]

    async def scrub_wal(self) -> bool:
        """Copy the WAL into the database and truncate it to zero bytes.

        ``secure_delete`` zeroes a deleted body in the database pages, but the WAL still
        holds the frames that wrote it until a checkpoint copies the newer pages over and
        the WAL is reset: only then are the bytes gone from both files. Returns False when a
        reader kept the checkpoint from finishing (the next scrub retries).

        The writer waits at most ``SCRUB_BUSY_MS`` for readers here, not its usual busy
        timeout: a long read elsewhere (an operator's sqlite3 shell, a backup) must not hold
        every send and ack behind the write lock.

        Every commit waits while this holds the write lock, so it holds it briefly: most of
        the copying is done first by a passive checkpoint beside the commits (on the
        reader's connection), and the truncating one, on the batch writer's thread, is one
        hand-off instead of a round trip per statement through a busy event loop (held up
        to 200 ms at 2,000 clients before: bench/RESULTS.md).
        """
        if self._batch_thread is None:
            raise RuntimeError("store is not open")
        async with self.reader.execute("PRAGMA wal_checkpoint(PASSIVE)") as cur:
            await cur.fetchone()
        async with self._write_lock:
            row = await asyncio.get_running_loop().run_in_executor(
                self._batch_thread, self._truncate_wal_now
            )
        return row is not None and int(row[0]) == 0

    def _truncate_wal_now(self) -> tuple[int, int, int] | None:
        db = self._batch_db
        if db is None:
            raise RuntimeError("store is not open")
        db.execute(f"PRAGMA busy_timeout={SCRUB_BUSY_MS}")
        try:
            return db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    async def prune(self, acked_before: datetime) -> int:
        async with self._write_lock:
            cur = await self.db.execute(
                "DELETE FROM messages WHERE acked_at IS NOT NULL AND acked_at < ?",
                (_ts(acked_before),),
            )
            return cur.rowcount
