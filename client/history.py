"""Local history and outbox (SQLite in the profile directory).

Sent messages go into history as ``pending`` before anything touches the network, so a
message the user sent survives a crash of the client; the outbox is simply the pending
outgoing rows, resent in order after every (re)connect. Incoming messages are keyed by
(sender, id): a redelivery is recognised and never shown twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import aiosqlite
import msgspec

from client import attachments
from client.attachments import LocalAttachment
from client.local_db import open_profile_db
from protocol.group_frames import GroupView
from protocol.groups import group_of

Direction = Literal["in", "out"]
State = Literal["pending", "sent", "delivered", "failed", "received"]

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS messages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    conversation TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'message',
    mode TEXT NOT NULL,
    body TEXT NOT NULL,
    direction TEXT NOT NULL,
    state TEXT NOT NULL,
    error_code TEXT,
    created_at REAL NOT NULL,
    sent_at REAL,
    UNIQUE (sender, msg_id)
);
CREATE INDEX IF NOT EXISTS messages_outbox ON messages (rowid) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, rowid);
"""

# v2 (issue #3): the code of a system/notice event, and whether a message came as a request.
_SCHEMA_V2 = """
ALTER TABLE messages ADD COLUMN code TEXT;
ALTER TABLE messages ADD COLUMN request INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN seen INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_unseen ON messages (rowid) WHERE direction = 'in' AND seen = 0;
"""

# v3 (issue #4): a received e2ee message's franking evidence, kept so it can be reported
# and verified by the relay (PROTOCOL.md §6.4); sent_at exactly, as the relay tagged it.
_SCHEMA_V3 = """
ALTER TABLE messages ADD COLUMN franking_key BLOB;
ALTER TABLE messages ADD COLUMN commitment BLOB;
ALTER TABLE messages ADD COLUMN franking_tag BLOB;
ALTER TABLE messages ADD COLUMN sent_at_exact TEXT;
"""

# v4 (issue #9): a refused message keeps the relay's sentence, worded for the rule and
# direction that refused it (the code's generic sentence may not fit).
_SCHEMA_V4 = """
ALTER TABLE messages ADD COLUMN error_text TEXT;
"""

# v5 (issue #13): a message's attachment (client/attachments.py LocalAttachment, JSON).
_SCHEMA_V5 = """
ALTER TABLE messages ADD COLUMN attachment TEXT;
"""

# v6 (issue #15): the groups the relay last listed (protocol GroupView as JSON), so the app
# can show a group's name, mode and members while the relay is unreachable. ``current`` is 0
# once a list from the relay no longer has it (you left, or were removed).
_SCHEMA_V6 = """
CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    view TEXT NOT NULL,
    current INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL
);
"""

_COLUMNS = (
    "rowid, sender, msg_id, recipient, conversation, kind, mode, body, direction, state, "
    "error_code, created_at, sent_at, code, request, error_text, attachment"
)


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    rowid: int
    sender: str
    msg_id: str
    recipient: str
    conversation: str
    kind: str
    mode: str
    body: str
    direction: Direction
    state: State
    error_code: str | None
    created_at: datetime
    sent_at: datetime | None
    code: str | None = None
    request: bool = False
    #: The refusal's sentence as the relay worded it (None before v4, or not refused).
    error_text: str | None = None
    #: The file this message carries, on this device (None: no attachment).
    attachment: LocalAttachment | None = None


@dataclass(frozen=True, slots=True)
class FrankingEvidence:
    """What reporting a received e2ee message reveals to the relay (PROTOCOL.md §6.4)."""

    franking_key: bytes
    commitment: bytes
    franking_tag: bytes
    sent_at: datetime  # exactly as the relay sent it (the tag covers it to the microsecond)


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    #: The conversation's key in a list of conversations (``conversation_key``): the other
    #: handle of a one-to-one conversation, or the conversation id of a group.
    peer: str
    conversation: str
    unread: int
    last: HistoryMessage

    @property
    def is_group(self) -> bool:
        return group_of(self.conversation) is not None


@dataclass(frozen=True, slots=True)
class CachedGroup:
    """A group as the relay last listed it; ``current`` is False once it no longer does."""

    view: GroupView
    current: bool


def peer_of(conversation: str, me: str) -> str | None:
    """The other member of a one-to-one conversation id (``dm:a:b``)."""
    parts = conversation.split(":")
    if len(parts) != 3 or parts[0] != "dm" or me not in parts[1:]:
        return None
    return parts[2] if parts[1] == me else parts[1]


def conversation_key(conversation: str, me: str) -> str | None:
    """How a front end names a conversation: the other handle of a one-to-one
    conversation, the conversation id itself (``grp:<id>``) for a group — never a handle,
    as a handle has no colon — else None."""
    if group_of(conversation) is not None:
        return conversation
    return peer_of(conversation, me)


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _row(r: tuple) -> HistoryMessage:
    created = _dt(r[11])
    assert created is not None
    return HistoryMessage(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        created,
        _dt(r[12]),
        r[13],
        bool(r[14]),
        r[15],
        None if r[16] is None else attachments.decode(r[16]),
    )


class History:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        # One statement-and-commit at a time: aiosqlite serialises calls, not cursors, and a
        # commit between another task's execute and fetch fails ("statements in progress").
        self._lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("history is not open")
        return self._db

    async def open(self) -> None:
        migrations = [_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6]
        self._db = await open_profile_db(self._path, migrations)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def add_outgoing(
        self,
        *,
        sender: str,
        msg_id: str,
        recipient: str,
        conversation: str,
        mode: str,
        body: str,
        created_at: datetime,
        attachment: LocalAttachment | None = None,
    ) -> HistoryMessage:
        async with self._lock:
            async with self.db.execute(
                "INSERT INTO messages (sender, msg_id, recipient, conversation, mode, body, "
                "direction, state, created_at, attachment) "
                "VALUES (?, ?, ?, ?, ?, ?, 'out', 'pending', ?, ?) "
                f"RETURNING {_COLUMNS}",
                (
                    sender,
                    msg_id,
                    recipient,
                    conversation,
                    mode,
                    body,
                    _ts(created_at),
                    None if attachment is None else attachments.encode(attachment),
                ),
            ) as cur:
                row = await cur.fetchone()
            await self.db.commit()
            assert row is not None
            return _row(row)

    async def outbox(self) -> list[HistoryMessage]:
        async with (
            self._lock,
            self.db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE state = 'pending' ORDER BY rowid"
            ) as cur,
        ):
            return [_row(r) for r in await cur.fetchall()]

    async def mark_sent(
        self, msg_id: str, sender: str, sent_at: datetime, *, request: bool = False
    ) -> None:
        async with self._lock:
            await self.db.execute(
                "UPDATE messages SET sent_at = ?, request = ?, state = CASE state "
                "WHEN 'delivered' THEN state ELSE 'sent' END WHERE sender = ? AND msg_id = ?",
                (_ts(sent_at), int(request), sender, msg_id),
            )
            await self.db.commit()

    async def mark_delivered(self, msg_id: str, sender: str) -> bool:
        """Record a delivery receipt; False when there was nothing to update."""
        async with self._lock:
            cur = await self.db.execute(
                "UPDATE messages SET state = 'delivered' WHERE sender = ? AND msg_id = ? "
                "AND state = 'sent'",
                (sender, msg_id),
            )
            await self.db.commit()
            return cur.rowcount > 0

    async def set_mode(self, msg_id: str, sender: str, mode: str) -> None:
        """The mode an outgoing message was actually sent in (decided when it leaves)."""
        async with self._lock:
            await self.db.execute(
                "UPDATE messages SET mode = ? WHERE sender = ? AND msg_id = ? AND mode != ?",
                (mode, sender, msg_id, mode),
            )
            await self.db.commit()

    async def franking_evidence(self, sender: str, msg_id: str) -> FrankingEvidence | None:
        async with (
            self._lock,
            self.db.execute(
                "SELECT franking_key, commitment, franking_tag, sent_at_exact FROM messages "
                "WHERE sender = ? AND msg_id = ? AND franking_key IS NOT NULL",
                (sender, msg_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None
        return FrankingEvidence(row[0], row[1], row[2], datetime.fromisoformat(row[3]))

    async def mark_failed(
        self, msg_id: str, sender: str, code: str, text: str | None = None
    ) -> None:
        async with self._lock:
            await self.db.execute(
                "UPDATE messages SET state = 'failed', error_code = ?, error_text = ? "
                "WHERE sender = ? AND msg_id = ?",
                (code, text, sender, msg_id),
            )
            await self.db.commit()

    async def add_incoming(
        self,
        *,
        sender: str,
        msg_id: str,
        recipient: str,
        conversation: str,
        kind: str,
        mode: str,
        body: str,
        sent_at: datetime,
        received_at: datetime,
        code: str | None = None,
        request: bool = False,
        franking: FrankingEvidence | None = None,
        attachment: LocalAttachment | None = None,
    ) -> HistoryMessage | None:
        """Store a received message; None when it was already stored (a redelivery)."""
        async with self._lock:
            async with self.db.execute(
                "INSERT OR IGNORE INTO messages (sender, msg_id, recipient, conversation, kind, "
                "mode, body, direction, state, created_at, sent_at, code, request, "
                "franking_key, commitment, franking_tag, sent_at_exact, attachment) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'in', 'received', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"RETURNING {_COLUMNS}",
                (
                    sender,
                    msg_id,
                    recipient,
                    conversation,
                    kind,
                    mode,
                    body,
                    _ts(received_at),
                    _ts(sent_at),
                    code,
                    int(request),
                    None if franking is None else franking.franking_key,
                    None if franking is None else franking.commitment,
                    None if franking is None else franking.franking_tag,
                    None if franking is None else franking.sent_at.isoformat(),
                    None if attachment is None else attachments.encode(attachment),
                ),
            ) as cur:
                row = await cur.fetchone()
            await self.db.commit()
            return None if row is None else _row(row)

    async def set_attachment(self, msg_id: str, sender: str, attachment: LocalAttachment) -> None:
        """Record progress on an outgoing attachment (encrypted, uploaded)."""
        async with self._lock:
            await self.db.execute(
                "UPDATE messages SET attachment = ? WHERE sender = ? AND msg_id = ?",
                (attachments.encode(attachment), sender, msg_id),
            )
            await self.db.commit()

    async def unseen(self, limit: int = 10_000) -> list[HistoryMessage]:
        """Received messages and events nobody has been shown yet, oldest first."""
        async with (
            self._lock,
            self.db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE direction = 'in' AND seen = 0 "
                "ORDER BY rowid LIMIT ?",
                (limit,),
            ) as cur,
        ):
            return [_row(r) for r in await cur.fetchall()]

    async def mark_seen(self, rowids: list[int]) -> None:
        async with self._lock:
            await self.db.executemany(
                "UPDATE messages SET seen = 1 WHERE rowid = ?", [(r,) for r in rowids]
            )
            await self.db.commit()

    async def conversation_summaries(self, me: str) -> list[ConversationSummary]:
        """One line per conversation: the other handle, unread count, the last message."""
        async with (
            self._lock,
            self.db.execute(
                f"SELECT {_COLUMNS}, totals.unread FROM messages JOIN ("
                "SELECT MAX(rowid) AS last, "
                "SUM(direction = 'in' AND seen = 0 AND kind = 'message') AS unread "
                "FROM messages GROUP BY conversation) AS totals ON messages.rowid = totals.last"
            ) as cur,
        ):
            rows = list(await cur.fetchall())
        summaries = []
        for row in rows:
            last = _row(row[:-1])
            key = conversation_key(last.conversation, me)
            if key is not None:
                summaries.append(ConversationSummary(key, last.conversation, int(row[-1]), last))
        return summaries

    # --- groups as the relay last listed them (v6) -------------------------------------------

    async def save_groups(self, views: list[GroupView], at: datetime) -> None:
        """Keep the relay's list of groups: those in it are current, the others not."""
        async with self._lock:
            await self.db.execute("UPDATE groups SET current = 0")
            await self.db.executemany(
                "INSERT INTO groups (id, view, current, updated_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (id) DO UPDATE SET view = excluded.view, current = 1, "
                "updated_at = excluded.updated_at",
                [(v.id, msgspec.json.encode(v).decode(), _ts(at)) for v in views],
            )
            await self.db.commit()

    async def saved_groups(self) -> dict[str, CachedGroup]:
        """Every group the relay ever listed here, by id (a row that no longer decodes is
        skipped: it is only a cache)."""
        async with (
            self._lock,
            self.db.execute("SELECT view, current FROM groups") as cur,
        ):
            rows = list(await cur.fetchall())
        saved = {}
        for view, current in rows:
            try:
                decoded = msgspec.json.decode(view, type=GroupView)
            except msgspec.DecodeError:  # malformed or an older shape
                continue
            saved[decoded.id] = CachedGroup(decoded, bool(current))
        return saved

    async def last_messages(self, conversation: str, count: int) -> list[HistoryMessage]:
        """The last ``count`` messages (not events) of a conversation, oldest first."""
        if count <= 0:
            return []
        async with (
            self._lock,
            self.db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE conversation = ? AND kind = 'message' "
                "ORDER BY rowid DESC LIMIT ?",
                (conversation, count),
            ) as cur,
        ):
            rows = [_row(r) for r in await cur.fetchall()]
        rows.reverse()
        return rows

    async def mark_conversation_seen(self, conversation: str) -> None:
        """Everything received in ``conversation`` is read — except safety notices, which
        stay until the person dismisses them (mark_seen), however often the chat opens."""
        async with self._lock:
            await self.db.execute(
                "UPDATE messages SET seen = 1 WHERE conversation = ? AND direction = 'in' "
                "AND seen = 0 AND kind != 'notice'",
                (conversation,),
            )
            await self.db.commit()

    async def get(self, sender: str, msg_id: str) -> HistoryMessage | None:
        async with self._lock:
            async with self.db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE sender = ? AND msg_id = ?", (sender, msg_id)
            ) as cur:
                row = await cur.fetchone()
            return None if row is None else _row(row)

    async def conversation(
        self,
        conversation: str,
        *,
        limit: int = 100,
        before_rowid: int | None = None,
        after_rowid: int | None = None,
    ) -> list[HistoryMessage]:
        """A page of a conversation, oldest first: the latest ``limit`` before
        ``before_rowid``, or the first ``limit`` after ``after_rowid`` (paging both ways)."""
        if after_rowid is not None:
            async with (
                self._lock,
                self.db.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE conversation = ? AND rowid > ? "
                    "ORDER BY rowid LIMIT ?",
                    (conversation, after_rowid, limit),
                ) as cur,
            ):
                return [_row(r) for r in await cur.fetchall()]
        async with self._lock:
            async with self.db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE conversation = ? AND rowid < ? "
                "ORDER BY rowid DESC LIMIT ?",
                (conversation, before_rowid if before_rowid is not None else 2**62, limit),
            ) as cur:
                rows = [_row(r) for r in await cur.fetchall()]
            rows.reverse()
            return rows
