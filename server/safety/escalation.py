"""Escalating a case: gather what the platform knows about it into a CyberTipline draft and
write it to the outbox (server/safety/cybertip.py). Nothing is sent anywhere."""

from __future__ import annotations

from pathlib import Path

from protocol import policy as rules
from server.safety.cybertip import Draft, Login, Message, Party, Reporter, write
from server.safety.service import SafetyService
from server.safety.store import CaseRow


def _party(safety: SafetyService, handle: str) -> Party:
    social = safety.social
    if handle not in social.accounts:
        return Party(handle, "", "unknown")
    return Party(handle, social.accounts[handle].display_name, social.band_of(handle))


async def draft_for(safety: SafetyService, case: CaseRow, note: str) -> Draft:
    findings = await safety.cases.findings([case.id])
    evidence = await safety.cases.evidence(case.id)
    messages = [
        Message(e.sender, e.recipient, e.sent_at, e.mode, e.franking, safety.open_evidence(e))
        for e in evidence
    ]
    involved = {f.reporter for f in findings if f.reporter} | {
        h for e in evidence for h in (e.sender, e.recipient)
    }
    involved.discard(case.subject)
    victims = [
        _party(safety, h)
        for h in sorted(involved)
        if h in safety.social.accounts and rules.is_minor(safety.social.band_of(h))
    ]
    logins = [Login(a, t) for a, t in await safety.cases.logins(case.subject)]
    return Draft(
        case_id=case.id,
        subject=_party(safety, case.subject),
        victims=victims,
        logins=logins,
        messages=messages,
        findings=[f.explanation for f in findings],
        opened_at=case.opened_at,
        note=note,
        hash_match=any(f.source == "hash_match" for f in findings),
    )


async def escalate(
    safety: SafetyService, case: CaseRow, note: str, outbox: Path, reporter: Reporter
) -> Path:
    """Write the case's CyberTipline draft; returns its path."""
    return write(await draft_for(safety, case, note), reporter, outbox, safety.clock())
