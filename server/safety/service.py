"""The safety services: findings become cases in queues, moderators review and act.

Sources call ``open_or_join_case(subject, finding)``: user reports (with the franking
result of e2ee evidence), automatic restriction, repeated refusals towards minors. One open
case per subject: a new finding joins it, and moves it to a higher-priority queue when the
finding routes there (a report involving a minor lifts a `general` case into
`child_safety`). Routing rules and queues come from the policy's `[moderation]` table.
Every reveal, decision and role change is written to the hash-chained audit log.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocol import policy as rules
from protocol.frames import ReportedMessage
from protocol.moderation import (
    CaseSummary,
    DecisionCount,
    EvidenceItem,
    QueueSummary,
)
from server.delivery.store import SqliteStore
from server.safety.audit import AuditLog
from server.safety.evidence import EvidenceSealer
from server.safety.store import CaseRow, EvidenceRow, FindingRow, NewEvidence, SafetyStore
from server.social.service import SocialService

log = logging.getLogger("agechat.relay.safety")

#: What each source's finding weighs (0–1); a reviewer reads the explanation, not only this.
SCORES = {
    "user_report": 0.5,
    "user_report_by_minor": 0.7,
    "restriction": 0.8,
    "refusals_to_minors": 0.4,
}
#: Actions after which the case is closed (reinstate acts on the account, not the case).
CLOSING = frozenset({"dismiss", "warn", "restrict", "suspend", "escalate"})


def evidence_fields(row: EvidenceRow) -> dict[str, Any]:
    """What a piece of evidence is, without its content (shared by the case view and the
    reveal)."""
    return {
        "id": row.id,
        "sender": row.sender,
        "recipient": row.recipient,
        "mode": "e2ee" if row.mode == "e2ee" else "visible",
        "sent_at": row.sent_at,
        "franking": "verified" if row.franking == "verified" else "unverified",
    }


def _count(n: int, noun: str) -> str:
    return f"no {noun}s" if n == 0 else f"1 {noun}" if n == 1 else f"{n} {noun}s"


class ModerationError(Exception):
    """A refused moderation request, with its wire code."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


@dataclass(frozen=True, slots=True)
class Evidence:
    sender: str
    recipient: str
    mode: str
    sent_at: datetime
    franking: str  # verified | unverified
    text: str


@dataclass(frozen=True, slots=True)
class Finding:
    source: str
    score: float
    explanation: str
    involves_minor: bool
    reporter: str | None = None
    hash_match: bool = False
    evidence: Sequence[Evidence] = field(default_factory=tuple)


class SafetyService:
    def __init__(
        self,
        store: SqliteStore,
        social: SocialService,
        sealer: EvidenceSealer,
        clock: Callable[[], datetime],
    ) -> None:
        self.cases = SafetyStore(store)
        self.audit = AuditLog(store)
        self._store = store
        self.social = social
        self._sealer = sealer
        self.clock = clock
        self.roles: dict[str, set[str]] = {}
        self.suspended: set[str] = set()

    @property
    def policy(self) -> rules.Policy:
        return self.social.policy

    async def load(self) -> None:
        """Roles and account flags from the database (at start, and after an admin command
        changed them: the relay polls `meta.generation`)."""
        self.roles = await self.cases.roles()
        flags = await self.cases.flags()
        self.suspended = {h for h, (suspended, _, _) in flags.items() if suspended}
        self.social.moderator_restricted = {
            h: reason or "" for h, (_, by, reason) in flags.items() if by is not None
        }

    def open_evidence(self, row: EvidenceRow) -> str:
        return self._sealer.open(row.sealed)

    async def save_flags(self, handle: str, *, by: str) -> None:
        reason = self.social.moderator_restricted.get(handle)
        await self.cases.set_flags(
            handle, handle in self.suspended, by if reason is not None else None, reason
        )

    # --- routing ---------------------------------------------------------------------------

    def route(self, finding: Finding) -> str:
        routes = self.policy.moderation.routes
        if finding.hash_match:
            return routes.hash_match
        if finding.involves_minor:
            return routes.involves_minor
        return routes.otherwise

    def _priority(self, queue: str) -> int:
        rule = self.policy.moderation.queues.get(queue)
        return rule.priority if rule is not None else 1_000

    async def open_or_join_case(self, subject: str, finding: Finding) -> int:
        """The findings API: file ``finding`` about ``subject`` in its open case (or a new
        one), routed by the policy. Returns the case id."""
        queue = self.route(finding)
        current = await self.cases.open_case_queue(subject)
        if current is not None and self._priority(current) <= self._priority(queue):
            queue = current  # never moved to a lower-priority queue
        sealed = [
            NewEvidence(
                e.sender,
                e.recipient,
                e.mode,
                e.sent_at,
                e.franking,
                len(e.text),
                self._sealer.seal(e.text),
            )
            for e in finding.evidence
        ]
        case_id, opened = await self.cases.add_finding(
            subject,
            queue,
            finding.source,
            finding.score,
            finding.explanation,
            finding.reporter,
            finding.involves_minor,
            sealed,
            self.clock(),
        )
        log.info(
            "finding source=%s case=%d %s queue=%s",
            finding.source,
            case_id,
            "opened" if opened else "joined",
            queue,
        )
        return case_id

    # --- sources ---------------------------------------------------------------------------

    def _is_minor(self, handle: str) -> bool:
        return handle in self.social.accounts and rules.is_minor(self.social.band_of(handle))

    async def on_report(
        self,
        reporter: str,
        reported: str,
        reason: str,
        messages: Sequence[ReportedMessage],
        verified: Sequence[bool],
    ) -> int:
        now = self.clock()
        by_minor = self._is_minor(reporter)
        involves_minor = by_minor or self._is_minor(reported)
        checked = sum(verified)
        explanation = (
            f"Reported by @{reporter}"
            + (" (under 18)" if by_minor else "")
            + f": “{reason}”. {_count(len(messages), 'message')} attached"
            + (f", {checked} verified by franking." if checked else ".")
        )
        evidence = [
            Evidence(
                sender=m.sender,
                recipient=m.to,
                mode="e2ee" if m.commitment is not None else "visible",
                sent_at=m.sent_at or now,
                franking="verified" if ok else "unverified",
                text=m.text,
            )
            for m, ok in zip(messages, verified, strict=True)
        ]
        weight = "user_report_by_minor" if by_minor else "user_report"
        return await self.open_or_join_case(
            reported,
            Finding(
                source="user_report",
                score=SCORES[weight],
                explanation=explanation,
                involves_minor=involves_minor,
                reporter=reporter,
                evidence=evidence,
            ),
        )

    async def on_restricted(self, handle: str) -> None:
        await self.open_or_join_case(
            handle,
            Finding(
                source="restriction",
                score=SCORES["restriction"],
                explanation="Automatically restricted from contacting minors: blocks, reports "
                "or refused attempts by or towards minors crossed the policy's thresholds.",
                involves_minor=True,
            ),
        )

    async def on_refusals_to_minors(self, handle: str, count: int) -> None:
        await self.open_or_join_case(
            handle,
            Finding(
                source="refusals_to_minors",
                score=SCORES["refusals_to_minors"],
                explanation=f"{count} attempts to contact minors were refused by the policy "
                f"within {self.policy.restriction.window_days} days.",
                involves_minor=True,
            ),
        )

    # --- what a moderator may see ----------------------------------------------------------

    def visible_queues(self, moderator: str) -> list[str]:
        held = self.roles.get(moderator, set())
        queues = self.policy.moderation.queues
        allowed = [name for name, q in queues.items() if held.intersection(q.roles)]
        return sorted(allowed, key=lambda name: (queues[name].priority, name))

    def require_role(self, moderator: str) -> None:
        if not self.roles.get(moderator):
            raise ModerationError("forbidden")

    def require_queue(self, moderator: str, queue: str) -> None:
        self.require_role(moderator)
        if queue not in self.policy.moderation.queues:
            raise ModerationError("unknown_queue")
        if queue not in self.visible_queues(moderator):
            raise ModerationError("forbidden")

    async def require_case(self, moderator: str, case_id: int) -> CaseRow:
        self.require_role(moderator)
        case = await self.cases.case(case_id)
        if case is None:
            raise ModerationError("unknown_case")
        if case.queue not in self.visible_queues(moderator):
            raise ModerationError("forbidden")  # a child-safety case is not even listed
        if case.subject == moderator:
            raise ModerationError("forbidden")  # nobody reviews a case about themselves
        return case

    async def summaries(self, cases: list[CaseRow]) -> list[CaseSummary]:
        findings = await self.cases.findings([c.id for c in cases])
        by_case: dict[int, list[FindingRow]] = {}
        for f in findings:
            by_case.setdefault(f.case_id, []).append(f)
        return [
            CaseSummary(
                id=c.id,
                subject=c.subject,
                queue=c.queue,
                status="open" if c.status == "open" else "closed",
                assignee=c.assignee,
                opened_at=c.opened_at,
                score=max((f.score for f in by_case.get(c.id, [])), default=0.0),
                findings=len(by_case.get(c.id, [])),
                sources=sorted({f.source for f in by_case.get(c.id, [])}),
            )
            for c in cases
        ]

    async def queue_summaries(self, moderator: str) -> list[QueueSummary]:
        self.require_role(moderator)
        out = []
        for name in self.visible_queues(moderator):
            open_cases = await self.cases.cases(queue=name)
            out.append(
                QueueSummary(
                    name=name,
                    priority=self.policy.moderation.queues[name].priority,
                    pending=len(open_cases),
                    unassigned=sum(1 for c in open_cases if c.assignee is None),
                )
            )
        return out

    async def queue(self, moderator: str, queue: str) -> list[CaseSummary]:
        self.require_queue(moderator, queue)
        summaries = await self.summaries(await self.cases.cases(queue=queue))
        return sorted(summaries, key=lambda s: (-s.score, s.opened_at, s.id))

    async def next_case(self, moderator: str, queue: str) -> int | None:
        """One case per moderator at a time: their open assigned case, else the queue's
        highest-priority unassigned case, now assigned to them."""
        self.require_queue(moderator, queue)
        summaries = await self.queue(moderator, queue)
        for s in summaries:
            if s.assignee == moderator:
                return s.id
        for s in summaries:
            # Taken only if still unassigned: two moderators never get the same case.
            if s.assignee is None and s.subject != moderator and await self.cases.assign(
                s.id, moderator
            ):
                return s.id
        return None

    async def reveal(self, moderator: str, case_id: int, signature: bytes) -> list[EvidenceItem]:
        """A case's evidence content, audited (who, which case, when, their signature)."""
        await self.require_case(moderator, case_id)
        rows = await self.cases.evidence(case_id)
        await self.audit.append(
            moderator,
            "reveal",
            f"case:{case_id}",
            {"evidence": [r.id for r in rows], "signature": signature.hex()},
            self.clock(),
        )
        return [
            EvidenceItem(**evidence_fields(r), text=self.open_evidence(r))
            for r in rows
        ]

    async def overview(
        self, moderator: str
    ) -> tuple[list[QueueSummary], list[DecisionCount], float | None]:
        queues = await self.queue_summaries(moderator)
        visible = set(self.visible_queues(moderator))
        cases = {c.id: c for c in await self.cases.cases() if c.queue in visible}
        counts: dict[tuple[str, str], int] = {}
        first: dict[int, datetime] = {}
        for d in await self.cases.decisions():
            if d.case_id not in cases:  # decisions on cases this moderator can't see
                continue
            counts[(d.moderator, d.action)] = counts.get((d.moderator, d.action), 0) + 1
            first.setdefault(d.case_id, d.decided_at)
        waits = [(decided - cases[cid].opened_at).total_seconds() for cid, decided in first.items()]
        return (
            queues,
            [
                DecisionCount(moderator=m, action=a, count=n)  # type: ignore[arg-type]
                for (m, a), n in sorted(counts.items())
            ],
            statistics.median(waits) if waits else None,
        )
