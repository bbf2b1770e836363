"""Storage for the safety services: roles, cases, findings, sealed evidence, decisions and
the account flags moderators set. It shares the relay's SQLite store (its write lock and
connections), so a case and the audit entry for it live in one file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

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


@dataclass(frozen=True, slots=True)
class DecisionRow:
    id: int
    case_id: int
    moderator: str
    action: str
    note: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class NewEvidence:
    sender: str
    recipient: str
    mode: str
    sent_at: datetime
    franking: str
    chars: int
    sealed: bytes


_CASE = "id, subject, queue, status, assignee, opened_at, closed_at"
_FINDING = "id, case_id, source, score, explanation, reporter, involves_minor, created_at"
_EVIDENCE = "id, case_id, finding_id, sender, recipient, mode, sent_at, franking, chars, sealed"
_DECISION = "id, case_id, moderator, action, note, decided_at"


def _case(r: tuple) -> CaseRow:
    return CaseRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5]) or datetime.min, _dt(r[6]))


def _finding(r: tuple) -> FindingRow:
    return FindingRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), _dt(r[7]) or datetime.min)


def _evidence(r: tuple) -> EvidenceRow:
    return EvidenceRow(
        r[0], r[1], r[2], r[3], r[4], r[5], _dt(r[6]) or datetime.min, r[7], r[8], bytes(r[9])
    )


def _decision(r: tuple) -> DecisionRow:
    return DecisionRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5]) or datetime.min)


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

    async def flags(self) -> dict[str, tuple[bool, str | None, str | None]]:
        """handle → (suspended, restricted_by, restricted_reason)."""
        rows = await self._read(
            "SELECT handle, suspended, restricted_by, restricted_reason FROM account_flags"
        )
        return {h: (bool(s), by, why) for h, s, by, why in rows}

    async def set_flags(
        self, handle: str, suspended: bool, restricted_by: str | None, reason: str | None
    ) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO account_flags (handle, suspended, restricted_by, restricted_reason) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (handle) DO UPDATE SET "
                "suspended = excluded.suspended, restricted_by = excluded.restricted_by, "
                "restricted_reason = excluded.restricted_reason",
                (handle, int(suspended), restricted_by, reason),
            )

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
        source: str,
        score: float,
        explanation: str,
        reporter: str | None,
        involves_minor: bool,
        evidence: list[NewEvidence],
        now: datetime,
    ) -> tuple[int, bool]:
        """File a finding in the subject's open case, opening one (in ``queue``) if there is
        none: (case id, whether it was opened now). A case opened elsewhere keeps its queue
        unless this finding needs a higher-priority one (the caller passes that queue)."""
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
                if row[1] != queue:
                    await db.execute("UPDATE cases SET queue = ? WHERE id = ?", (queue, case_id))
            cur = await db.execute(
                "INSERT INTO findings (case_id, source, score, explanation, reporter, "
                "involves_minor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (case_id, source, score, explanation, reporter, int(involves_minor), _ts(now)),
            )
            finding_id = int(cur.lastrowid or 0)
            await db.executemany(
                "INSERT INTO evidence (case_id, finding_id, sender, recipient, mode, sent_at, "
                "franking, chars, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    )
                    for e in evidence
                ],
            )
        return case_id, opened

    async def open_case_queue(self, subject: str) -> str | None:
        rows = await self._read(
            "SELECT queue FROM cases WHERE subject = ? AND status = 'open'", (subject,)
        )
        return rows[0][0] if rows else None

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
    ) -> None:
        """Record a decision and its audit entry (subject, detail) in one transaction."""
        async with self._store.transaction() as db:
            subject, detail = audit
            await append_in(db, moderator, f"decide:{action}", subject, detail, now)
            await db.execute(
                "INSERT INTO decisions (case_id, moderator, action, note, decided_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (case_id, moderator, action, note, _ts(now)),
            )
            if close:
                await db.execute(
                    "UPDATE cases SET status = 'closed', closed_at = ? "
                    "WHERE id = ? AND status = 'open'",
                    (_ts(now), case_id),
                )
