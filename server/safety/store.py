"""Storage for the safety services: roles, cases, findings, sealed evidence, decisions and
the account flags moderators set. It shares the relay's SQLite store (its write lock and
connections), so a case and the audit entry for it live in one file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiosqlite

from server.delivery.store import SqliteStore
from server.safety.audit import append_in


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class CaseRow:
    id: int
    subject: str
    queue: str
    status: str
    assignee: str | None
    opened_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class FindingRow:
    id: int
    case_id: int
    source: str
    score: float
    explanation: str
    reporter: str | None
    involves_minor: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    id: int
    case_id: int
    finding_id: int
    sender: str
    recipient: str
    mode: str
    sent_at: datetime
    franking: str
    chars: int
    sealed: bytes
    blob: str | None = None  # a held attachment's blob id (owner: the sender)


@dataclass(frozen=True, slots=True)
class DecisionRow:
    id: int
    case_id: int
    moderator: str
    action: str
    note: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class AccountFlags:
    """What moderators set on an account, and the queue and case of the decision that set
    it (only a moderator who may see that queue may lift it)."""

    suspended: bool = False
    restricted_by: str | None = None
    restricted_reason: str | None = None
    queue: str | None = None
    case_id: int | None = None

    @property
    def any(self) -> bool:
        return self.suspended or self.restricted_by is not None


@dataclass(frozen=True, slots=True)
class Hold:
    """Undelivered messages a decision withdraws from the subject's recipients' queues:
    those to recipients for whom ``to(recipient)`` holds. Visible ones are sealed into the
    case as evidence under a `held_messages` finding; e2ee ones can't be read and are
    withdrawn unread."""

    to: Callable[[str], bool]
    is_minor: Callable[[str], bool]
    seal: Callable[[str], bytes]
    explain: Callable[[int, int], str]  # (visible held, e2ee withdrawn) -> explanation


class CaseClosed(Exception):
    """A decision other than reinstate on a case already closed."""


@dataclass(frozen=True, slots=True)
class NewEvidence:
    sender: str
    recipient: str
    mode: str
    sent_at: datetime
    franking: str
    chars: int
    sealed: bytes
    blob: str | None = None


#: A queue the policy no longer declares ranks below every declared one.
UNKNOWN_PRIORITY = 1_000

_CASE = "id, subject, queue, status, assignee, opened_at, closed_at"
_FINDING = "id, case_id, source, score, explanation, reporter, involves_minor, created_at"
_EVIDENCE = (
    "id, case_id, finding_id, sender, recipient, mode, sent_at, franking, chars, sealed, blob"
)
_DECISION = "id, case_id, moderator, action, note, decided_at"


def _case(r: tuple) -> CaseRow:
    return CaseRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5]) or datetime.min, _dt(r[6]))


def _finding(r: tuple) -> FindingRow:
    return FindingRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), _dt(r[7]) or datetime.min)


def _evidence(r: tuple) -> EvidenceRow:
    return EvidenceRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        _dt(r[6]) or datetime.min,
        r[7],
        r[8],
        bytes(r[9]),
        r[10],
    )


def _decision(r: tuple) -> DecisionRow:
    return DecisionRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5]) or datetime.min)


async def _insert_finding(
    db: aiosqlite.Connection,
    case_id: int,
    source: str,
    score: float,
    explanation: str,
    reporter: str | None,
    involves_minor: bool,
    evidence: list[NewEvidence],
    now: datetime,
) -> None:
    cur = await db.execute(
        "INSERT INTO findings (case_id, source, score, explanation, reporter, "
        "involves_minor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (case_id, source, score, explanation, reporter, int(involves_minor), _ts(now)),
    )
    finding_id = int(cur.lastrowid or 0)
    await db.executemany(
        "INSERT INTO evidence (case_id, finding_id, sender, recipient, mode, sent_at, "
        "franking, chars, sealed, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                case_id,
                finding_id,
                e.sender,
                e.recipient,
                e.mode,
                _ts(e.sent_at),
                e.franking,
                e.chars,
                e.sealed,
                e.blob,
            )
            for e in evidence
        ],
    )


async def _hold(
    db: aiosqlite.Connection, case_id: int, subject: str, hold: Hold, now: datetime
) -> int:
    """Withdraw the subject's undelivered messages (see `Hold`); returns how many."""
    # Through the undelivered messages' index: no index starts with the sender any more
    # (store.py, schema v9), and only undelivered messages are wanted.
    async with db.execute(
        "SELECT seq, recipient, mode, body, sent_at FROM messages INDEXED BY messages_pending "
        "WHERE sender = ? AND acked_at IS NULL AND kind = 'message' ORDER BY seq",
        (subject,),
    ) as cur:
        rows = [r for r in await cur.fetchall() if hold.to(r[1])]
    if not rows:
        return 0
    visible = [
        NewEvidence(
            subject,
            r[1],
            "visible",
            _dt(r[4]) or now,
            "verified",  # the relay received it from the subject itself: nothing to check
            len(r[3] or ""),
            hold.seal(r[3] or ""),
        )
        for r in rows
        if r[2] != "e2ee"
    ]
    # Withdrawn like an acknowledged message: the body goes, the (sender, id) row stays so
    # a resend of the same message is ignored, and the recipient never gets it.
    await db.executemany(
        "UPDATE messages SET body = NULL, commitment = NULL, acked_at = ? WHERE seq = ?",
        [(_ts(now), r[0]) for r in rows],
    )
    await _insert_finding(
        db,
        case_id,
        "held_messages",
        0.0,
        hold.explain(len(visible), len(rows) - len(visible)),
        None,
        any(hold.is_minor(r[1]) for r in rows),
        visible,
        now,
    )
    return len(rows)


class SafetyStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        async with self._store.reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # --- roles and flags -------------------------------------------------------------------

    async def roles(self) -> dict[str, set[str]]:
        held: dict[str, set[str]] = {}
        for handle, role in await self._read("SELECT handle, role FROM roles"):
            held.setdefault(handle, set()).add(role)
        return held

    async def grant(self, handle: str, role: str, by: str, now: datetime) -> bool:
        """True when the role is new."""
        async with self._store.transaction() as db:
            cur = await db.execute(
                "INSERT OR IGNORE INTO roles (handle, role, granted_by, granted_at) "
                "VALUES (?, ?, ?, ?)",
                (handle, role, by, _ts(now)),
            )
            return cur.rowcount == 1

    async def revoke(self, handle: str, role: str) -> bool:
        async with self._store.transaction() as db:
            cur = await db.execute(
                "DELETE FROM roles WHERE handle = ? AND role = ?", (handle, role)
            )
            return cur.rowcount == 1

    async def flags(self) -> dict[str, AccountFlags]:
        rows = await self._read(
            "SELECT handle, suspended, restricted_by, restricted_reason, queue, case_id "
            "FROM account_flags"
        )
        return {h: AccountFlags(bool(s), by, why, q, c) for h, s, by, why, q, c in rows}

    async def record_login(self, handle: str, address: str, now: datetime) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO logins (handle, address, logged_in_at) VALUES (?, ?, ?)",
                (handle, address, _ts(now)),
            )

    async def logins(self, handle: str, limit: int = 20) -> list[tuple[str, datetime]]:
        """The newest logins of ``handle`` (address, time), newest first."""
        rows = await self._read(
            "SELECT address, logged_in_at FROM logins WHERE handle = ? "
            "ORDER BY logged_in_at DESC LIMIT ?",
            (handle, limit),
        )
        return [(a, _dt(t) or datetime.min) for a, t in rows]

    # --- cases and findings ----------------------------------------------------------------

    async def add_finding(
        self,
        subject: str,
        queue: str,
        priorities: Mapping[str, int],
        source: str,
        score: float,
        explanation: str,
        reporter: str | None,
        involves_minor: bool,
        evidence: list[NewEvidence],
        now: datetime,
    ) -> tuple[int, bool]:
        """File a finding in the subject's open case, opening one (in ``queue``) if there is
        none: (case id, whether it was opened now). An open case only ever moves up to a
        higher-priority queue (lower number in ``priorities``), never down; the current queue
        is read inside the transaction, so concurrent findings can't race it down. A case
        that moves leaves its assignee's hands (they may not see the new queue)."""
        async with self._store.transaction() as db:
            async with db.execute(
                "SELECT id, queue FROM cases WHERE subject = ? AND status = 'open'", (subject,)
            ) as cur:
                row = await cur.fetchone()
            opened = row is None
            if row is None:
                cur = await db.execute(
                    "INSERT INTO cases (subject, queue, opened_at) VALUES (?, ?, ?)",
                    (subject, queue, _ts(now)),
                )
                case_id = int(cur.lastrowid or 0)
            else:
                case_id = int(row[0])
                if priorities.get(queue, UNKNOWN_PRIORITY) < priorities.get(
                    row[1], UNKNOWN_PRIORITY
                ):
                    await db.execute(
                        "UPDATE cases SET queue = ?, assignee = NULL WHERE id = ?",
                        (queue, case_id),
                    )
            await _insert_finding(
                db, case_id, source, score, explanation, reporter, involves_minor, evidence, now
            )
        return case_id, opened

    async def case(self, case_id: int) -> CaseRow | None:
        rows = await self._read(f"SELECT {_CASE} FROM cases WHERE id = ?", (case_id,))
        return _case(rows[0]) if rows else None

    async def cases(self, *, queue: str | None = None, subject: str | None = None) -> list[CaseRow]:
        where, params = [], []
        if queue is not None:
            where.append("queue = ? AND status = 'open'")
            params.append(queue)
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._read(f"SELECT {_CASE} FROM cases{clause} ORDER BY id", tuple(params))
        return [_case(r) for r in rows]

    async def findings(self, case_ids: list[int]) -> list[FindingRow]:
        if not case_ids:
            return []
        marks = ", ".join("?" for _ in case_ids)
        rows = await self._read(
            f"SELECT {_FINDING} FROM findings WHERE case_id IN ({marks}) ORDER BY id",
            tuple(case_ids),
        )
        return [_finding(r) for r in rows]

    async def evidence(self, case_id: int) -> list[EvidenceRow]:
        rows = await self._read(
            f"SELECT {_EVIDENCE} FROM evidence WHERE case_id = ? ORDER BY id", (case_id,)
        )
        return [_evidence(r) for r in rows]

    async def decisions(self, case_id: int | None = None) -> list[DecisionRow]:
        clause, params = ("WHERE case_id = ?", (case_id,)) if case_id is not None else ("", ())
        rows = await self._read(f"SELECT {_DECISION} FROM decisions {clause} ORDER BY id", params)
        return [_decision(r) for r in rows]

    async def assign(self, case_id: int, moderator: str) -> bool:
        """Assign an open, unassigned case; False when someone else got it first."""
        async with self._store.transaction() as db:
            cur = await db.execute(
                "UPDATE cases SET assignee = ? "
                "WHERE id = ? AND assignee IS NULL AND status = 'open'",
                (moderator, case_id),
            )
            return cur.rowcount == 1

    async def decide(
        self,
        case_id: int,
        moderator: str,
        action: str,
        note: str,
        close: bool,
        now: datetime,
        audit: tuple[str, dict[str, object]],
        flags: AccountFlags | None = None,
        hold: Hold | None = None,
    ) -> int:
        """Record a decision with everything it changes in one transaction: its audit entry
        (subject, detail), the case's closing, the subject's new ``flags`` and the ``hold``
        of their undelivered messages. Raises `CaseClosed` (nothing written) when the case
        is closed and the action isn't reinstate. Returns how many messages were held."""
        subject, detail = audit
        async with self._store.transaction() as db:
            async with db.execute("SELECT status FROM cases WHERE id = ?", (case_id,)) as cur:
                row = await cur.fetchone()
            if row is None or (row[0] != "open" and action != "reinstate"):
                raise CaseClosed(case_id)
            await append_in(db, moderator, f"decide:{action}", subject, detail, now)
            await db.execute(
                "INSERT INTO decisions (case_id, moderator, action, note, decided_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (case_id, moderator, action, note, _ts(now)),
            )
            if close:
                await db.execute(
                    "UPDATE cases SET status = 'closed', closed_at = ?, assignee = NULL "
                    "WHERE id = ? AND status = 'open'",
                    (_ts(now), case_id),
                )
            if flags is not None:
                await db.execute(
                    "INSERT INTO account_flags (handle, suspended, restricted_by, "
                    "restricted_reason, queue, case_id) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (handle) DO UPDATE SET suspended = excluded.suspended, "
                    "restricted_by = excluded.restricted_by, "
                    "restricted_reason = excluded.restricted_reason, "
                    "queue = excluded.queue, case_id = excluded.case_id",
                    (
                        subject,
                        int(flags.suspended),
                        flags.restricted_by,
                        flags.restricted_reason,
                        flags.queue,
                        flags.case_id,
                    ),
                )
            return 0 if hold is None else await _hold(db, case_id, subject, hold, now)

    async def restrict_pending_review(
        self, handle: str, flags: AccountFlags, detail: dict[str, object], now: datetime
    ) -> None:
        """Set ``flags`` on ``handle`` without a moderator (the relay's own decision,
        pending review), audited in the same transaction."""
        async with self._store.transaction() as db:
            await append_in(db, "relay", "restrict_pending_review", handle, detail, now)
            await db.execute(
                "INSERT INTO account_flags (handle, suspended, restricted_by, "
                "restricted_reason, queue, case_id) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (handle) DO UPDATE SET restricted_by = excluded.restricted_by, "
                "restricted_reason = excluded.restricted_reason, "
                "queue = excluded.queue, case_id = excluded.case_id",
                (
                    handle,
                    int(flags.suspended),
                    flags.restricted_by,
                    flags.restricted_reason,
                    flags.queue,
                    flags.case_id,
                ),
            )

    async def unassign_unseen(self, may_see: Callable[[str, str], bool]) -> int:
        """Release open cases whose assignee may no longer see their queue (a role was
        revoked, or the case moved up); returns how many."""
        rows = await self._read(
            "SELECT id, assignee, queue FROM cases WHERE status = 'open' AND assignee IS NOT NULL"
        )
        stale = [(case_id,) for case_id, who, queue in rows if not may_see(who, queue)]
        if stale:
            async with self._store.transaction() as db:
                await db.executemany("UPDATE cases SET assignee = NULL WHERE id = ?", stale)
        return len(stale)
