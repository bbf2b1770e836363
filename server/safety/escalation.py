"""Escalating a case: gather what the platform knows about it into a CyberTipline draft and
write it to the outbox (server/safety/cybertip.py). Nothing is sent anywhere.

Only something reportable is escalated: a hash match (child sexual abuse material), or at
least one minor the relay knows was involved (online enticement). Anything else is refused
with `not_reportable` before a file is written.

Each attachment held as the case's evidence gets a file-details draft beside the report,
with the hashes of the held file read from the relay's data directory (the outbox's parent:
``<data-dir>/blobs/<owner>/<blob id>``) when the draft is written. The file is not copied."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from server.safety.cybertip import (
    MINOR_BANDS,
    Draft,
    FileHashes,
    HeldFile,
    Login,
    Message,
    Party,
    Reporter,
    render,
    write,
)
from server.safety.service import ModerationError, SafetyService
from server.safety.store import CaseRow, EvidenceRow, FindingRow


def _party(safety: SafetyService, handle: str) -> Party:
    social = safety.social
    if handle not in social.accounts:
        return Party(handle, "", "unknown")
    return Party(handle, social.accounts[handle].display_name, social.band_of(handle))


def _vouched_for(findings: Sequence[FindingRow], evidence: Sequence[EvidenceRow]) -> set[str]:
    """Who the relay itself knows took part, the only people a victim is drawn from:

    - the reporter of each finding (the relay authenticated them when they reported);
    - both parties of each piece of evidence whose franking verified it, or that is a
      visible message (the relay carried it and received it from its sender).

    An unverified encrypted message is only its reporter's claim, so it names no victim
    (the reporter, named by the first rule, is one only by their own age group)."""
    people = {f.reporter for f in findings if f.reporter}
    for e in evidence:
        if e.franking == "verified" or e.mode == "visible":
            people |= {e.sender, e.recipient}
    return people


def _held_files(
    findings: Sequence[FindingRow], evidence: Sequence[EvidenceRow], safety: SafetyService
) -> list[HeldFile]:
    """The attachments held as evidence, in the order they were filed, each once. The name
    the sender gave a file is only inside the evidence's text (with its type, size and
    SHA-256), which goes into the file's details whole: nothing is parsed out of it."""
    explained = {f.id: f.explanation for f in findings}
    files: dict[tuple[str, str], HeldFile] = {}
    for e in evidence:
        if e.blob is not None and (e.sender, e.blob) not in files:
            files[(e.sender, e.blob)] = HeldFile(
                blob=e.blob,
                owner=e.sender,
                description=safety.open_evidence(e),
                match=explained.get(e.finding_id, ""),
            )
    return list(files.values())


def _hashes(files: Sequence[HeldFile], blobs: Path) -> dict[HeldFile, FileHashes]:
    """Hash each held file now (SHA-256, MD5 and, for a picture, PDQ); a file that isn't
    there is left out. Blocking: reads whole files and decodes pictures."""
    if not files:
        return {}
    from server.safety.hashing import hash_file  # numpy, Pillow, pdqhash: loaded on use

    found: dict[HeldFile, FileHashes] = {}
    for f in files:
        path = blobs / f.owner / f.blob  # handles and blob ids are safe file names
        try:
            h = hash_file(path)
        except FileNotFoundError:
            continue
        pdq, quality = h["pdq"], h["pdq_quality"]
        found[f] = FileHashes(
            sha256=str(h["sha256"]),
            md5=str(h["md5"]),
            pdq=str(pdq) if pdq is not None else None,
            pdq_quality=int(quality) if quality is not None else None,
        )
    return found


async def draft_for(safety: SafetyService, case: CaseRow, note: str) -> Draft:
    findings = await safety.cases.findings([case.id])
    evidence = await safety.cases.evidence(case.id)
    messages = [
        Message(e.sender, e.recipient, e.sent_at, e.mode, e.franking, safety.open_evidence(e))
        for e in evidence
    ]
    involved = _vouched_for(findings, evidence) - {case.subject}
    # A victim is named by handle and declared age group only: the display name isn't read.
    victims = [
        Party(h, "", band)
        for h in sorted(involved)
        if h in safety.social.accounts and (band := safety.social.band_of(h)) in MINOR_BANDS
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
        files=_held_files(findings, evidence, safety),
    )


async def _reportable(safety: SafetyService, case: CaseRow, note: str) -> Draft:
    draft = await draft_for(safety, case, note)
    if not (draft.hash_match or draft.victims):
        raise ModerationError("not_reportable")
    return draft


async def preview(safety: SafetyService, case: CaseRow, note: str, reporter: Reporter) -> str:
    """The document `escalate` would write now, written nowhere (the console shows it before
    the moderator confirms). Refuses like `escalate`."""
    draft = await _reportable(safety, case, note)
    return render(draft, reporter, safety.clock()).decode("utf-8")


async def escalate(
    safety: SafetyService, case: CaseRow, note: str, outbox: Path, reporter: Reporter
) -> Path:
    """Write the case's CyberTipline draft, and the details of each file it holds; returns
    the report's path. Refuses (`not_reportable`, nothing written) a case with neither a
    hash match nor a minor victim."""
    draft = await _reportable(safety, case, note)
    hashes = await asyncio.to_thread(_hashes, draft.files, outbox.parent / "blobs")
    return write(draft, reporter, outbox, safety.clock(), hashes)
