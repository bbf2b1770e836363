"""Storage for the social graph: contacts, blocks, the contact-event log, reports, audit.

It shares the relay's SQLite store (its write lock and its two connections), so a single
file holds everything and every write is one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from server.delivery.store import SqliteStore
from server.social.event_log import ContactEventLog

#: contact_events.event values (docs/POLICY.md "Restriction")
NEW_CONTACT = "new_contact"  # the actor started a contact request or a message request
REFUSED_TO_MINOR = "refused_to_minor"  # policy refused the actor's attempt on a minor
DECLINED_BY_MINOR = "declined_by_minor"  # a minor declined the actor's request
BLOCKED_BY_MINOR = "blocked_by_minor"  # a minor blocked the actor
REPORTED_BY_MINOR = "reported_by_minor"  # a minor reported the actor
LOOKUP = "lookup"  # the actor looked up a stranger's key bundle (or a handle that isn't one)


@dataclass(frozen=True, slots=True)
class ContactRow:
    low: str
    high: str
    state: str  # requested | connected | declined
    requester: str
    #: When the row last changed state (for `connected`: since when), a POSIX time.
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class AccountInfo:
    display_name: str
    birthdate: date


def pair_key(a: str, b: str) -> tuple[str, str]:
    """The key of a pair in the contacts table: the two handles in order."""
    return (a, b) if a < b else (b, a)


def verified_flags(evidence: bytes) -> list[bool]:
    """The per-message ``verified`` flags of a report's stored evidence (a JSON array of the
    reported messages, each with ``verified``; reports filed before franking have none)."""
    return [bool(m.get("verified", False)) for m in json.loads(evidence)]


def _ts(moment: datetime) -> float:
    return moment.timestamp()


class WriteBehind(Protocol):
    """Where write-behind statements go (the group committer)."""

    def submit_write(self, sql: str, params: tuple[object, ...]) -> None: ...


class SocialStore:
    def __init__(self, store: SqliteStore, committer: WriteBehind) -> None:
        self._store = store
        self._committer = committer
        #: The contact-event log, answered from memory (server/social/event_log.py).
        self.events = ContactEventLog()

    async def _write(self, sql: str, params: tuple = ()) -> None:
        async with self._store.write_lock:
            await self._store.db.execute(sql, params)

    async def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        async with self._store.reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # --- accounts --------------------------------------------------------------------------

    async def accounts(self) -> list[tuple[str, str, date]]:
        rows = await self._read("SELECT handle, display_name, birthdate FROM accounts")
        return [(h, n, date.fromisoformat(b)) for h, n, b in rows]

    async def set_birthdate(self, handle: str, birthdate: date, declaration: bytes | None) -> None:
        if declaration is None:
            await self._write(
                "UPDATE accounts SET birthdate = ? WHERE handle = ?",
                (birthdate.isoformat(), handle),
            )
        else:
            await self._write(
                "UPDATE accounts SET birthdate = ?, declaration = ? WHERE handle = ?",
                (birthdate.isoformat(), declaration, handle),
            )

    async def set_declaration(self, handle: str, declaration: bytes) -> None:
        await self._write(
            "UPDATE accounts SET declaration = ? WHERE handle = ?", (declaration, handle)
        )

    async def announced_bands(self) -> dict[str, str]:
        return dict(await self._read("SELECT handle, band FROM announced_bands"))

    async def set_announced_band(self, handle: str, band: str) -> None:
        await self._write(
            "INSERT INTO announced_bands (handle, band) VALUES (?, ?) "
            "ON CONFLICT (handle) DO UPDATE SET band = excluded.band",
            (handle, band),
        )

    # --- contacts and blocks ---------------------------------------------------------------

    async def contacts(self) -> list[ContactRow]:
        rows = await self._read("SELECT low, high, state, requester, updated_at FROM contacts")
        return [ContactRow(*r) for r in rows]

    async def set_contact(self, row: ContactRow, now: datetime) -> None:
        await self._write(
            "INSERT INTO contacts (low, high, state, requester, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (low, high) DO UPDATE SET "
            "state = excluded.state, requester = excluded.requester, "
            "updated_at = excluded.updated_at",
            (row.low, row.high, row.state, row.requester, _ts(now), _ts(now)),
        )

    async def delete_contact(self, low: str, high: str) -> None:
        await self._write("DELETE FROM contacts WHERE low = ? AND high = ?", (low, high))

    async def prune_events(self, before: datetime) -> int:
        """Contact events older than ``before`` (the restriction window), and guardian-link
        events too (views and notices; links, unlinks and approvals stay in the audit log)."""
        async with self._store.write_lock:
            await self._store.db.execute(
                "DELETE FROM guardian_events WHERE created_at < ?", (_ts(before),)
            )
            cur = await self._store.db.execute(
                "DELETE FROM contact_events WHERE created_at < ?", (_ts(before),)
            )
        self.events.prune(_ts(before))
        return cur.rowcount

    async def blocks(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in await self._read("SELECT blocker, blocked FROM blocks")]

    async def add_block(self, blocker: str, blocked: str, now: datetime) -> None:
        await self._write(
            "INSERT OR IGNORE INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?)",
            (blocker, blocked, _ts(now)),
        )

    async def remove_block(self, blocker: str, blocked: str) -> None:
        await self._write(
            "DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked)
        )

    # --- the contact-event log (rate limits and restriction) -------------------------------

    async def load_events(self) -> None:
        """Read the log into memory (at start; server/social/event_log.py)."""
        rows = await self._read(
            "SELECT actor, target, event, target_minor, created_at FROM contact_events"
        )
        self.events.load((a, t, e, bool(m), float(at)) for a, t, e, m, at in rows)

    async def log_event(
        self, actor: str, target: str, event: str, target_minor: bool, now: datetime
    ) -> None:
        """Counted at once; on disk with the next group commit (write-behind)."""
        self.events.add(actor, target, event, target_minor, _ts(now))
        self._committer.submit_write(
            "INSERT INTO contact_events (actor, target, event, target_minor, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (actor, target, event, int(target_minor), _ts(now)),
        )

    async def has_event(self, actor: str, target: str, event: str, since: datetime) -> bool:
        return self.events.has(actor, target, event, _ts(since))

    async def count_events(
        self,
        actor: str,
        events: tuple[str, ...],
        since: datetime,
        *,
        to_minors: bool = False,
        distinct_targets: bool = False,
    ) -> int:
        return self.events.count(
            actor, events, _ts(since), to_minors=to_minors, distinct_targets=distinct_targets
        )

    # --- reports and audit -----------------------------------------------------------------

    async def add_report(
        self,
        reporter: str,
        reported: str,
        reason: str,
        conversation: str,
        evidence: bytes,
        now: datetime,
    ) -> None:
        await self._write(
            "INSERT INTO reports (reporter, reported, reason, conversation, evidence, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (reporter, reported, reason, conversation, evidence, _ts(now)),
        )

    async def reports(self) -> list[dict[str, object]]:
        """Every report, oldest first; ``verified`` has one flag per attached message (True
        when the relay verified an e2ee message's franking evidence, PROTOCOL.md §6.4)."""
        rows = await self._read(
            "SELECT reporter, reported, reason, conversation, evidence, status, created_at "
            "FROM reports ORDER BY id"
        )
        keys = (
            "reporter",
            "reported",
            "reason",
            "conversation",
            "evidence",
            "status",
            "created_at",
        )
        return [{**dict(zip(keys, r, strict=True)), "verified": verified_flags(r[4])} for r in rows]

    async def audit(self) -> list[tuple[str, str, str, str, datetime]]:
        rows = await self._read(
            "SELECT actor, action, subject, detail, created_at FROM audit ORDER BY id"
        )
        return [(a, b, c, d, datetime.fromtimestamp(t, UTC)) for a, b, c, d, t in rows]
