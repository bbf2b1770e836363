"""Retention: the sweep that deletes what the policy's `[retention]` table no longer allows
the relay to keep, and the preservation requests that hold an account's data past it
(docs/POLICY.md "Retention", docs/MODERATION.md "What each mode yields").

The sweep, in one transaction, with an audit entry when it deleted anything:

- the text of delivered `visible` messages older than `visible_days` (with 0 it was already
  deleted on acknowledgement);
- the rows of delivered messages — their metadata: sender, recipient, time, size — older
  than `metadata_days` (never sooner than the resend window, PROTOCOL.md §5);
- the evidence of cases closed more than `evidence_days` ago, the attachments held as that
  evidence (a hash match), and their CyberTipline drafts
  (the case, its findings and decisions stay: they are the record of what was decided);
- login addresses older than `metadata_days`.

Anything whose sender, recipient or subject a preservation covers is kept until the
preservation ends; then the next sweep takes it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import msgspec

from protocol.limits import DEDUPE_WINDOW_SECONDS
from protocol.policy import Retention
from server.delivery.store import SqliteStore
from server.safety.audit import append_in

log = logging.getLogger("agechat.relay.retention")

#: The relay's actor name in the audit log for what it does on its own.
RELAY_ACTOR = "relay"
#: meta key: the retention dials of the policy the relay runs (the admin sweep uses them).
RETENTION_META = "retention"
#: A handle covered by a preservation in force at ``now`` (one bound parameter: now).
_PRESERVED = "SELECT handle FROM preservations WHERE until > ?"


@dataclass(frozen=True, slots=True)
class SweepResult:
    visible_texts: int = 0
    message_records: int = 0
    evidence_items: int = 0
    report_drafts: int = 0
    logins: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


@dataclass(frozen=True, slots=True)
class Preservation:
    id: int
    handle: str
    reference: str
    until: datetime
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "handle": self.handle,
            "reference": self.reference,
            "until": self.until.isoformat(),
            "created_at": self.created_at.isoformat(),
        }


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _drafts(outbox: Path, case_id: int) -> list[Path]:
    folder = outbox / "cybertip"
    if not folder.is_dir():
        return []
    name = re.compile(rf"^{case_id}(-\d+)?(-file-\d+)?\.xml$")  # reports and file details
    return [p for p in folder.iterdir() if name.match(p.name)]


async def _count(db: aiosqlite.Connection, sql: str, params: tuple) -> int:
    cur = await db.execute(sql, params)
    return max(cur.rowcount, 0)


async def sweep(
    store: SqliteStore, retention: Retention, now: datetime, outbox: Path
) -> SweepResult:
    """Delete what ``retention`` no longer allows at ``now``; audited when anything went."""
    t_now = _ts(now)
    visible_before = _ts(now - timedelta(days=retention.visible_days))
    metadata_before = _ts(
        now - max(timedelta(days=retention.metadata_days), timedelta(seconds=DEDUPE_WINDOW_SECONDS))
    )
    closed_before = _ts(now - timedelta(days=retention.evidence_days))
    unpreserved = f"sender NOT IN ({_PRESERVED}) AND recipient NOT IN ({_PRESERVED})"
    async with store.transaction() as db:
        visible = await _count(
            db,
            "UPDATE messages SET body = NULL WHERE acked_at IS NOT NULL AND body IS NOT NULL "
            f"AND acked_at < ? AND {unpreserved}",
            (visible_before, t_now, t_now),
        )
        records = await _count(
            db,
            "DELETE FROM messages WHERE acked_at IS NOT NULL AND body IS NULL "
            f"AND acked_at < ? AND {unpreserved}",
            (metadata_before, t_now, t_now),
        )
        async with db.execute(
            "SELECT id FROM cases WHERE status = 'closed' AND closed_at < ? "
            f"AND subject NOT IN ({_PRESERVED})",
            (closed_before, t_now),
        ) as cur:
            expired = [int(r[0]) for r in await cur.fetchall()]
        evidence = 0
        drafts: list[Path] = []
        held: list[tuple[str, str]] = []  # attachments kept as evidence: (owner, blob id)
        for case_id in expired:
            async with db.execute(
                "SELECT sender, blob FROM evidence WHERE case_id = ? AND blob IS NOT NULL "
                f"AND {unpreserved}",
                (case_id, t_now, t_now),
            ) as cur:
                held += [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
            evidence += await _count(
                db,
                f"DELETE FROM evidence WHERE case_id = ? AND {unpreserved}",
                (case_id, t_now, t_now),
            )
            drafts += _drafts(outbox, case_id)
        await db.executemany(
            "DELETE FROM blobs WHERE owner = ? AND id = ? AND state = 'held'", held
        )
        logins = await _count(
            db,
            f"DELETE FROM logins WHERE logged_in_at < ? AND handle NOT IN ({_PRESERVED})",
            (metadata_before, t_now),
        )
        result = SweepResult(visible, records, evidence, len(drafts), logins)
        if result.total:
            detail = {**asdict(result), "policy": msgspec.to_builtins(retention)}
            await append_in(db, RELAY_ACTOR, "retention_sweep", "relay", detail, now)
    # Files after the commit, so a failed transaction leaves them. A crash here leaves
    # drafts the audit entry counts as deleted; the next sweep lists the same expired case
    # and deletes them then.
    for path in drafts:
        path.unlink(missing_ok=True)
    for owner, blob_id in held:  # the data directory is the outbox's parent
        (outbox.parent / "blobs" / owner / blob_id).unlink(missing_ok=True)
    if result.total:
        log.info("retention sweep: %s", asdict(result))
        await store.scrub_wal()  # deleted text leaves the WAL too, not only the database
    return result


async def preserve(
    store: SqliteStore, handle: str, days: int, reference: str, actor: str, now: datetime
) -> Preservation:
    """Hold ``handle``'s data past normal retention for ``days`` (a preservation request,
    named by ``reference``); audited with the change in one transaction."""
    until = now + timedelta(days=days)
    async with store.transaction() as db:
        cur = await db.execute(
            "INSERT INTO preservations (handle, reference, until, created_at) VALUES (?, ?, ?, ?)",
            (handle, reference, _ts(until), _ts(now)),
        )
        pid = int(cur.lastrowid or 0)
        await append_in(
            db,
            actor,
            "preserve",
            handle,
            {"id": pid, "reference": reference, "days": days, "until": until.isoformat()},
            now,
        )
    return Preservation(pid, handle, reference, until, now)


async def preservations(store: SqliteStore, now: datetime) -> list[Preservation]:
    """Preservations in force at ``now``, soonest to end first."""
    async with store.reader.execute(
        "SELECT id, handle, reference, until, created_at FROM preservations WHERE until > ? "
        "ORDER BY until, id",
        (_ts(now),),
    ) as cur:
        rows = await cur.fetchall()
    return [
        Preservation(
            r[0], r[1], r[2], datetime.fromtimestamp(r[3], UTC), datetime.fromtimestamp(r[4], UTC)
        )
        for r in rows
    ]
