"""Storage for guardian links: invitations and links, approvals, and what happened in each
link (schema v7, server/delivery/store.py).

Every change that a person may later have to account for — a link made or ended, an
approval answered or cancelled — is written with its audit entry in one transaction
(server/safety/audit.py), so the hash-chained log and the tables never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from server.delivery.store import SqliteStore
from server.safety.audit import append_in

#: guardian_events.event values (docs/MODERATION.md "Guardian links")
LINKED = "linked"
UNLINKED = "unlinked"
VIEWED_CONTACTS = "viewed_contacts"
APPROVAL_REQUESTED = "approval_requested"
APPROVED = "approved"
DECLINED = "declined"
APPROVAL_CANCELLED = "approval_cancelled"
TOLD_BLOCK = "told_block"
TOLD_REPORT = "told_report"


@dataclass(frozen=True, slots=True)
class LinkRow:
    guardian: str
    ward: str
    state: str  # invited | linked
    inviter: str
    created_at: datetime
    linked_at: datetime | None = None

    @property
    def since(self) -> datetime:
        return self.linked_at or self.created_at


@dataclass(frozen=True, slots=True)
class EventRow:
    guardian: str
    ward: str
    event: str
    about: str
    created_at: datetime


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def _event(
    db: aiosqlite.Connection, guardian: str, ward: str, event: str, about: str, now: datetime
) -> None:
    await db.execute(
        "INSERT INTO guardian_events (guardian, ward, event, about, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (guardian, ward, event, about, _ts(now)),
    )


class GuardianStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._store.reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # --- links -----------------------------------------------------------------------------

    async def links(self) -> list[LinkRow]:
        rows = await self._read(
            "SELECT guardian, ward, state, inviter, created_at, linked_at FROM guardian_links"
        )
        return [
            LinkRow(g, w, s, i, _dt(c), None if linked is None else _dt(linked))
            for g, w, s, i, c, linked in rows
        ]

    async def invite(self, row: LinkRow) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO guardian_links (guardian, ward, state, inviter, created_at) "
                "VALUES (?, ?, 'invited', ?, ?)",
                (row.guardian, row.ward, row.inviter, _ts(row.created_at)),
            )

    async def withdraw(self, guardian: str, ward: str) -> None:
        """An invitation withdrawn or turned down: it leaves no trace (nothing was linked)."""
        async with self._store.transaction() as db:
            await db.execute(
                "DELETE FROM guardian_links WHERE guardian = ? AND ward = ? AND state = 'invited'",
                (guardian, ward),
            )

    async def link(self, row: LinkRow, actor: str, now: datetime) -> LinkRow:
        linked = LinkRow(row.guardian, row.ward, "linked", row.inviter, row.created_at, now)
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE guardian_links SET state = 'linked', linked_at = ? "
                "WHERE guardian = ? AND ward = ?",
                (_ts(now), row.guardian, row.ward),
            )
            await _event(db, row.guardian, row.ward, LINKED, "", now)
            detail = {"guardian": row.guardian, "ward": row.ward, "invited_by": row.inviter}
            await append_in(db, actor, "guardian_link", row.ward, detail, now)
        return linked

    async def unlink(self, row: LinkRow, actor: str, reason: str, now: datetime) -> None:
        """End a link at once; ``reason`` is who ended it (``guardian``, ``ward``) or why
        the relay did (``band_changed``)."""
        async with self._store.transaction() as db:
            await db.execute(
                "DELETE FROM guardian_links WHERE guardian = ? AND ward = ?",
                (row.guardian, row.ward),
            )
            await _event(db, row.guardian, row.ward, UNLINKED, reason, now)
            detail = {"guardian": row.guardian, "ward": row.ward, "ended_by": reason}
            await append_in(db, actor, "guardian_unlink", row.ward, detail, now)

    # --- approvals -------------------------------------------------------------------------

    async def pending(self) -> list[tuple[str, str, datetime]]:
        rows = await self._read(
            "SELECT ward, contact, requested_at FROM guardian_approvals WHERE state = 'pending'"
        )
        return [(w, c, _dt(t)) for w, c, t in rows]

    async def request_approval(
        self, ward: str, contact: str, guardians: list[str], now: datetime
    ) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO guardian_approvals (ward, contact, requested_at) VALUES (?, ?, ?)",
                (ward, contact, _ts(now)),
            )
            for guardian in guardians:
                await _event(db, guardian, ward, APPROVAL_REQUESTED, contact, now)

    async def answer_approval(
        self, ward: str, contact: str, guardian: str, outcome: str, now: datetime
    ) -> None:
        """``outcome``: ``approved``, ``declined``, or ``cancelled`` (by the relay: no guardian
        left, or the ward blocked the contact; ``guardian`` is then the actor who caused it)."""
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE guardian_approvals SET state = ?, decided_by = ?, decided_at = ? "
                "WHERE ward = ? AND contact = ? AND state = 'pending'",
                (outcome, guardian, _ts(now), ward, contact),
            )
            event = {"approved": APPROVED, "declined": DECLINED}.get(outcome, APPROVAL_CANCELLED)
            await _event(db, guardian, ward, event, contact, now)
            detail = {"ward": ward, "contact": contact, "outcome": outcome}
            await append_in(db, guardian, "guardian_approval", ward, detail, now)

    # --- what happened ---------------------------------------------------------------------

    async def log(self, guardian: str, ward: str, event: str, about: str, now: datetime) -> None:
        async with self._store.transaction() as db:
            await _event(db, guardian, ward, event, about, now)

    async def activity(self, handle: str, limit: int) -> list[EventRow]:
        """The latest events of links ``handle`` was in (as guardian or ward), newest first."""
        rows = await self._read(
            "SELECT guardian, ward, event, about, created_at FROM guardian_events "
            "WHERE guardian = ? OR ward = ? ORDER BY id DESC LIMIT ?",
            (handle, handle, limit),
        )
        return [EventRow(g, w, e, a, _dt(t)) for g, w, e, a, t in rows]

    async def connected_since(self, handle: str) -> dict[str, datetime]:
        """When each of ``handle``'s connections started (the contact row's last change,
        which for a connection is when it was made)."""
        rows = await self._read(
            "SELECT low, high, updated_at FROM contacts WHERE state = 'connected' "
            "AND (low = ? OR high = ?)",
            (handle, handle),
        )
        return {(high if low == handle else low): _dt(t) for low, high, t in rows}
