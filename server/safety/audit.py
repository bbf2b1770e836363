"""The audit log: every moderator action, reveal, role grant, age correction and export,
appended to a hash chain so an edit, a deletion or a reordering is found (docs/MODERATION.md).

Each entry holds ``prev`` (the previous entry's hash; 32 zero bytes for the first) and its
own ``hash`` = SHA-256 of its canonical bytes, which include ``prev`` and its sequence
number. Sequence numbers are contiguous from 1, and the newest entry's number and hash are
kept as the log's head in ``meta``, which catches entries removed from the end by someone
who didn't also rewrite the head.

What this does not do: someone who can write the database can rewrite the chain and its
head (hashes need no secret). What anchors the log is a head copied elsewhere: ``verify``
with ``expect=(seq, hash)`` fails unless the chain still passes through it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from server.delivery.store import SqliteStore

GENESIS = bytes(32)
HEAD_KEY = "audit_head"  # meta: "<seq>:<hash hex>"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    actor: str
    action: str
    subject: str
    detail: str
    created_at: datetime
    prev: bytes
    hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "detail": self.detail,
            "created_at": self.created_at.isoformat(),
            "hash": self.hash.hex(),
        }


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first entry that does not verify, and what is wrong with it."""

    seq: int
    what: str

    def sentence(self) -> str:
        return f"audit entry {self.seq}: {self.what}"


def canonical(
    seq: int, actor: str, action: str, subject: str, detail: str, created_at: float, prev: bytes
) -> bytes:
    """The bytes an entry's hash covers: sorted-key compact JSON, times in whole microseconds
    (no float formatting in what is hashed)."""
    return json.dumps(
        {
            "seq": seq,
            "actor": actor,
            "action": action,
            "subject": subject,
            "detail": detail,
            "created_at_us": round(created_at * 1_000_000),
            "prev": prev.hex(),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _hash(row: tuple, prev: bytes) -> bytes:
    seq, actor, action, subject, detail, created_at = row[:6]
    return hashlib.sha256(canonical(seq, actor, action, subject, detail, created_at, prev)).digest()


_COLUMNS = "id, actor, action, subject, detail, created_at, prev_hash, entry_hash"


class AuditLog:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def append(
        self, actor: str, action: str, subject: str, detail: str | dict[str, Any], now: datetime
    ) -> AuditEntry:
        """Add an entry at the end of the chain in its own write transaction."""
        async with self._store.transaction() as db:
            return await append_in(db, actor, action, subject, detail, now)

    async def entries(self) -> list[AuditEntry]:
        async with self._store.reader.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY id") as cur:
            rows = await cur.fetchall()
        return [
            AuditEntry(r[0], r[1], r[2], r[3], r[4], _dt(r[5]), r[6] or b"", r[7] or b"")
            for r in rows
        ]

    async def verify(
        self, expect: tuple[int, bytes] | None = None
    ) -> tuple[int, bytes, AuditProblem | None]:
        """Walk the chain without writing: (entries, head hash, the first problem or None).
        ``expect``: a (seq, hash) head kept elsewhere that the chain must still pass through."""
        async with self._store.reader.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY id") as cur:
            rows = list(await cur.fetchall())
        async with self._store.reader.execute(
            "SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)
        ) as cur:
            head_row = await cur.fetchone()
        prev = GENESIS
        hashes: dict[int, bytes] = {}
        for expected, row in enumerate(rows, start=1):
            seq, stored_prev, stored_hash = row[0], row[6], row[7]
            if seq != expected:
                return len(rows), prev, AuditProblem(expected, "removed (the sequence skips it)")
            if stored_prev is None or not hmac.compare_digest(stored_prev, prev):
                # This entry's link to the one before is wrong: the one before was altered
                # (with its hash recomputed), removed, or entries were reordered.
                problem = "altered or moved (its link to the entry before does not match)"
                return len(rows), prev, AuditProblem(seq, problem)
            recomputed = _hash(row, prev)
            if stored_hash is None or not hmac.compare_digest(stored_hash, recomputed):
                return len(rows), prev, AuditProblem(seq, "altered (its hash does not match)")
            prev = hashes[seq] = stored_hash
        head_seq, head_hash = _parse_head(head_row[0] if head_row else None)
        if head_seq != len(rows) or not hmac.compare_digest(head_hash, prev):
            if head_seq > len(rows):
                return len(rows), prev, AuditProblem(len(rows) + 1, "removed (after the end)")
            return len(rows), prev, AuditProblem(len(rows), "the log's head does not match")
        if expect is not None:
            seq, digest = expect
            if seq > len(rows):
                later = "removed (the kept head is later)"
                return len(rows), prev, AuditProblem(len(rows) + 1, later)
            if seq >= 1 and not hmac.compare_digest(hashes[seq], digest):
                return len(rows), prev, AuditProblem(seq, "rewritten (it is not the kept head)")
        return len(rows), prev, None


async def append_in(
    db: aiosqlite.Connection,
    actor: str,
    action: str,
    subject: str,
    detail: str | dict[str, Any],
    now: datetime,
) -> AuditEntry:
    """Append inside the caller's write transaction, so an action and its audit entry are
    stored together or not at all (another process appending at the same time waits for
    SQLite's lock: the chain can't fork)."""
    text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
    seq, prev = await _head(db)
    seq += 1
    created = now.timestamp()
    entry_hash = _hash((seq, actor, action, subject, text, created), prev)
    await db.execute(
        f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, actor, action, subject, text, created, prev, entry_hash),
    )
    await _set_head(db, seq, entry_hash)
    return AuditEntry(seq, actor, action, subject, text, _dt(created), prev, entry_hash)


async def chain_existing(db: aiosqlite.Connection) -> None:
    """The schema v5 migration step: chain the entries written before the log was a chain,
    in the same transaction that adds the columns. Never run again: after it, a missing
    hash is a broken chain."""
    async with db.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY id") as cur:
        rows = list(await cur.fetchall())
    prev = GENESIS
    for new_seq, row in enumerate(rows, start=1):
        renumbered = (new_seq, *row[1:6])
        entry_hash = _hash(renumbered, prev)
        await db.execute(
            "UPDATE audit SET id = ?, prev_hash = ?, entry_hash = ? WHERE id = ?",
            (new_seq, prev, entry_hash, row[0]),
        )
        prev = entry_hash
    await _set_head(db, len(rows), prev)


async def _head(db: aiosqlite.Connection) -> tuple[int, bytes]:
    async with db.execute("SELECT id, entry_hash FROM audit ORDER BY id DESC LIMIT 1") as cur:
        row = await cur.fetchone()
    if row is None:
        return 0, GENESIS
    return int(row[0]), bytes(row[1])


async def _set_head(db: aiosqlite.Connection, seq: int, entry_hash: bytes) -> None:
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (HEAD_KEY, f"{seq}:{entry_hash.hex()}"),
    )


def _parse_head(value: str | None) -> tuple[int, bytes]:
    if not value:
        return 0, GENESIS
    seq, _, digest = value.partition(":")
    try:
        return int(seq), bytes.fromhex(digest)
    except ValueError:
        return -1, b""


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
