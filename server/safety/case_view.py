"""A case as a reviewer sees it: the subject in context, findings with their explanations,
evidence without its content (revealed separately, and audited), decisions, prior cases,
and the guardian links around the subject (who supervises them or whom they supervise,
approvals waiting, the latest views, approvals and notices)."""

from __future__ import annotations

from protocol import policy as rules
from protocol.moderation import CaseView, DecisionView, EvidenceRef, FindingView, SubjectView
from server.delivery.store import SqliteStore
from server.safety.service import SafetyService, evidence_fields


async def case_view(
    safety: SafetyService, store: SqliteStore, moderator: str, case_id: int
) -> CaseView:
    case = await safety.require_case(moderator, case_id)
    social = safety.social
    (summary,) = await safety.summaries([case])
    # Prior cases only from queues this moderator may see (a child-safety case stays hidden).
    visible = set(safety.visible_queues(moderator))
    others = [
        c
        for c in await safety.cases.cases(subject=case.subject)
        if c.id != case.id and c.queue in visible
    ]
    account = await store.get_account(case.subject)
    now = safety.clock()
    contacts = social.contacts_of(case.subject, ("connected",))
    exists = case.subject in social.accounts
    subject = SubjectView(
        handle=case.subject,
        display_name=social.accounts[case.subject].display_name if exists else "",
        band=social.band_of(case.subject) if exists else "unknown",
        account_age_days=(now - account.created_at).days if account is not None else 0,
        contacts=len(contacts),
        minor_contacts=sum(1 for c in contacts if rules.is_minor(social.band_of(c))),
        restricted=social.is_restricted(case.subject),
        suspended=case.subject in safety.suspended,
    )
    findings = await safety.cases.findings([case.id])
    evidence = await safety.cases.evidence(case.id)
    by_finding: dict[int, list[int]] = {}
    for e in evidence:
        by_finding.setdefault(e.finding_id, []).append(e.id)
    return CaseView(
        summary=summary,
        subject=subject,
        findings=[
            FindingView(
                id=f.id,
                source=f.source,
                score=f.score,
                explanation=f.explanation,
                reporter=f.reporter,
                involves_minor=f.involves_minor,
                evidence=by_finding.get(f.id, []),
                created_at=f.created_at,
            )
            for f in findings
        ],
        evidence=[EvidenceRef(**evidence_fields(e), chars=e.chars) for e in evidence],
        decisions=[
            DecisionView(
                moderator=d.moderator,
                action=d.action,  # type: ignore[arg-type]
                note=d.note,
                decided_at=d.decided_at,
            )
            for d in await safety.cases.decisions(case.id)
        ],
        prior_cases=await safety.summaries(others),
        guardians=await social.guardians.context(case.subject),
    )
