"""The safety services: findings become cases in queues, moderators review and act.

Sources call ``open_or_join_case(subject, finding)``: user reports (with the franking
result of e2ee evidence), automatic restriction, repeated refusals towards minors. One open
case per subject: a new finding joins it, and moves it to a higher-priority queue when the
finding routes there (a report involving a minor lifts a `general` case into
`child_safety`). Routing rules and queues come from the policy's `[moderation]` table.
Every reveal, decision and role change is written to the hash-chained audit log.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocol import policy as rules
from protocol.attachments import AttachmentRef
from protocol.frames import ReportedMessage
from protocol.moderation import (
    ROLES,
    CaseSummary,
    DecisionCount,
    EvidenceItem,
    QueueSummary,
)
from server.delivery.store import SqliteStore
from server.safety.audit import AuditLog
from server.safety.evidence import EvidenceSealer
from server.safety.hashing import Match
from server.safety.store import (
    AccountFlags,
    CaseRow,
    EvidenceRow,
    FindingRow,
    NewEvidence,
    SafetyStore,
)
from server.social.service import SocialService

log = logging.getLogger("agechat.relay.safety")

#: What each source's finding weighs (0–1); a reviewer reads the explanation, not only this.
SCORES = {
    "user_report": 0.5,
    "user_report_by_minor": 0.7,
    "restriction": 0.8,
    "refusals_to_minors": 0.4,
    "hash_match": 1.0,
    "unscannable_attachment": 0.3,
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


def rank(roles: set[str]) -> int:
    """A role holder's standing: moderator < child_safety_moderator < admin (0: no role)."""
    return max((ROLES.index(r) + 1 for r in roles if r in ROLES), default=0)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a moderator signed (PROTOCOL.md §6.5), kept in the audit entry so anyone with the
    moderator's identity key can check the entry against the request: the relay id, the
    connection's challenge nonce, the request id and the signature. The frame's own fields
    (case, action, note) are in the entry already."""

    relay_id: str
    nonce: bytes
    rid: str
    signature: bytes

    def detail(self) -> dict[str, str]:
        return {
            "relay_id": self.relay_id,
            "nonce": self.nonce.hex(),
            "rid": self.rid,
            "signature": self.signature.hex(),
        }


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
    #: A held attachment this evidence describes: its blob id (the owner is the sender).
    blob: str | None = None


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
        self.flags: dict[str, AccountFlags] = {}
        # Held across a decision's write and its in-memory effects, and across load(), so a
        # reload never replaces a fresh flag with what it read just before the write.
        self.flags_lock = asyncio.Lock()

    @property
    def policy(self) -> rules.Policy:
        return self.social.policy

    async def load(self) -> None:
        """Roles and account flags from the database (at start, and after an admin command
        changed them: the relay polls `meta.generation`). Cases assigned to someone who may
        no longer see their queue are released."""
        async with self.flags_lock:
            self.roles = await self.cases.roles()
            self.apply_flags(await self.cases.flags())
        await self.cases.unassign_unseen(lambda who, queue: queue in self.visible_queues(who))

    def apply_flags(self, flags: dict[str, AccountFlags]) -> None:
        self.flags = {h: f for h, f in flags.items() if f.any}
        self.suspended = {h for h, f in self.flags.items() if f.suspended}
        self.social.moderator_restricted = {
            h: f.restricted_reason or "" for h, f in self.flags.items() if f.restricted_by
        }

    def open_evidence(self, row: EvidenceRow) -> str:
        return self._sealer.open(row.sealed)

    def seal(self, text: str) -> bytes:
        return self._sealer.seal(text)

    # --- routing ---------------------------------------------------------------------------

    def route(self, finding: Finding) -> str:
        routes = self.policy.moderation.routes
        if finding.hash_match:
            return routes.hash_match
        if finding.involves_minor:
            return routes.involves_minor
        return routes.otherwise

    def priorities(self) -> dict[str, int]:
        return {name: q.priority for name, q in self.policy.moderation.queues.items()}

    async def open_or_join_case(self, subject: str, finding: Finding) -> int:
        """The findings API: file ``finding`` about ``subject`` in its open case (or a new
        one), routed by the policy. Returns the case id."""
        queue = self.route(finding)
        sealed = [
            NewEvidence(
                e.sender,
                e.recipient,
                e.mode,
                e.sent_at,
                e.franking,
                len(e.text),
                self._sealer.seal(e.text),
                e.blob,
            )
            for e in finding.evidence
        ]
        case_id, opened = await self.cases.add_finding(
            subject,
            queue,
            self.priorities(),  # an open case only moves up, decided inside the write
            finding.source,
            finding.score,
            finding.explanation,
            finding.reporter,
            finding.involves_minor,
            sealed,
            self.clock(),
        )
        log.info(
            "finding source=%s case=%d %s",
            finding.source,
            case_id,
            "opened" if opened else "joined",
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
                mode=await self._reported_mode(m, reporter, reported),
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

    async def _reported_mode(self, m: ReportedMessage, reporter: str, reported: str) -> str:
        """The mode a reported message travelled in. Franking evidence means e2ee; else the
        relay's own record of it while it has one; else the conversation's mode now. (The
        reporter's own sent e2ee messages carry no franking evidence: without this they
        would be filed as visible.)"""
        if m.commitment is not None:
            return "e2ee"
        stored = await self._store.find_message(m.sender, m.id)
        if stored is not None and {stored.sender, stored.recipient} == {reporter, reported}:
            return stored.mode
        return self.social.mode(reporter, reported)

    async def on_hash_match(
        self, sender: str, recipient: str, ref: AttachmentRef, matches: Sequence[Match]
    ) -> int:
        """A `visible` attachment matched a hash bank: the message was held (never
        delivered) and its blob kept. Files a `hash_match` finding with the match details;
        restricts the sender pending review when the policy says so — silently, so nothing
        tells them why their message didn't arrive."""
        best = matches[0]
        details = "; ".join(
            f"bank {m.bank}, {m.signal}"
            + (f" distance {m.distance}" if m.signal == "pdq" else " exact")
            + (f" (quality {m.quality})" if m.quality is not None else "")
            + (f", label “{m.label}”" if m.label else "")
            for m in matches
        )
        case_id = await self.open_or_join_case(
            sender,
            Finding(
                source="hash_match",
                score=SCORES["hash_match"],
                explanation=f"An attachment to @{recipient} matched known material: {details}. "
                "The message was held.",
                involves_minor=self._is_minor(sender) or self._is_minor(recipient),
                hash_match=True,
                evidence=[self._held_file(sender, recipient, ref)],
            ),
        )
        log.info("hash match case=%d signal=%s", case_id, best.signal)
        if self.policy.hash_matching.restrict_on_match:
            case = await self.cases.case(case_id)
            async with self.flags_lock:
                current = self.flags.get(sender, AccountFlags())
                if current.restricted_by is None:
                    flags = AccountFlags(
                        suspended=current.suspended,
                        restricted_by="relay",
                        restricted_reason="hash match, pending review",
                        queue=case.queue if case is not None else None,
                        case_id=case_id,
                    )
                    await self.cases.restrict_pending_review(
                        sender, flags, {"case": case_id, "reason": "hash_match"}, self.clock()
                    )
                    self.apply_flags({**self.flags, sender: flags})
        return case_id

    def _held_file(self, sender: str, recipient: str, ref: AttachmentRef) -> Evidence:
        """Evidence describing a held attachment (the file is kept, never shown)."""
        return Evidence(
            sender=sender,
            recipient=recipient,
            mode="visible",
            sent_at=self.clock(),
            franking="verified",  # the relay received it from the sender itself
            text=f"[attachment “{ref.name}”, {ref.type}, {ref.size} bytes, sha256 "
            f"{ref.sha256}; held, never delivered; the file is kept as evidence and never shown]",
            blob=ref.id,
        )

    async def on_unscannable(self, sender: str, recipient: str, ref: AttachmentRef) -> int:
        """A `visible` image too large to decode for matching was held: a person looks at
        the case (the file itself is never shown, only its description)."""
        return await self.open_or_join_case(
            sender,
            Finding(
                source="unscannable_attachment",
                score=SCORES["unscannable_attachment"],
                explanation=f"An image to @{recipient} was too large to check against the "
                "known-material banks, so it was held for review rather than delivered.",
                involves_minor=self._is_minor(sender) or self._is_minor(recipient),
                evidence=[self._held_file(sender, recipient, ref)],
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
            open_cases = [c for c in await self.cases.cases(queue=name) if c.subject != moderator]
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
        # A moderator never sees cases about themselves, not even as a count.
        mine = [c for c in await self.cases.cases(queue=queue) if c.subject != moderator]
        summaries = await self.summaries(mine)
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
            if (
                s.assignee is None
                and await self.may_decide(moderator, s.id) is None
                and await self.cases.assign(s.id, moderator)
            ):
                return s.id
        return None

    async def may_decide(self, moderator: str, case_id: int) -> str | None:
        """Why ``moderator`` may not decide the case (a code), or None. Nobody decides a case
        about someone of equal or higher standing (a moderator's case goes to someone above
        them), or a case they reported themselves."""
        case = await self.cases.case(case_id)
        if case is None:
            return "unknown_case"
        if rank(self.roles.get(case.subject, set())) >= rank(self.roles.get(moderator, set())):
            return "forbidden"
        findings = await self.cases.findings([case_id])
        if any(f.reporter == moderator for f in findings):
            return "forbidden"
        return None

    async def reveal(
        self, moderator: str, case_id: int, signed: SignedRequest
    ) -> list[EvidenceItem]:
        """A case's evidence content, audited (who, which case, when, the signed request)."""
        await self.require_case(moderator, case_id)
        rows = await self.cases.evidence(case_id)
        await self.audit.append(
            moderator,
            "reveal",
            f"case:{case_id}",
            {"case": case_id, "evidence": [r.id for r in rows], **signed.detail()},
            self.clock(),
        )
        return [EvidenceItem(**evidence_fields(r), text=self.open_evidence(r)) for r in rows]

    async def overview(
        self, moderator: str
    ) -> tuple[list[QueueSummary], list[DecisionCount], float | None]:
        queues = await self.queue_summaries(moderator)
        visible = set(self.visible_queues(moderator))
        cases = {
            c.id: c
            for c in await self.cases.cases()
            if c.queue in visible and c.subject != moderator
        }
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
