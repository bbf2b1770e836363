"""Escalation drafts a CyberTipline report: an XML document in the shape of NCMEC's
CyberTipline Reporting API `report`, written to the relay's outbox and NEVER sent anywhere
(docs/MODERATION.md "Escalation"). Every document is checked against the schema's rules
(server/safety/cybertip_schema.py) before it is written.

What goes in is only what the platform knows: the subject's handle, display name and the
addresses it logged in from; the conversation content that reached the case (visible
messages, and e2ee messages a user reported, with whether franking verified them); each
minor involved, by handle and declared age group only — never a display name, an age or
anything else (no more than the report needs). The relay operator is the reporter: their
email in `reportingPerson` (the one thing the schema requires there) and their name, whole,
in `companyTemplate` — it is usually an organisation's, so it is never split into a
person's first and last name.

Each held attachment in the case's evidence (a file a hash match kept) also gets a
`fileDetails` document — the API's details of one file uploaded to a report — written beside
the report as `<report name>-file-<n>.xml`: the file's relay id, its SHA-256 and MD5 (and
PDQ, for an image) computed from the held file when the draft is written, that no one at
the platform viewed it and it was never delivered, and the match details as the finding
states them. Its `reportId` can't be NCMEC's (there is none until a report is submitted):
it holds the case number, and the document says so. The file itself is not copied: a real
submission uploads it; the prototype leaves it in the relay's data directory as evidence.

A draft is never overwritten: a second escalation of the same case writes `<case>-2.xml`
(and its files `<case>-2-file-<n>.xml`), and so on. The outbox folders and the files in
them are owner-only.
"""

from __future__ import annotations

import contextlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from protocol import policy as rules
from server.safety.cybertip_schema import check

PLATFORM = "agechat"
BAND_WORDS = {
    "under_13": "under 13",
    "teen_13_15": "13 to 15",
    "teen_16_17": "16 or 17",
    "adult": "18 or over",
}
ENTICEMENT = "Online Enticement of Children for Sexual Acts"
CHILD_SEXUAL_ABUSE_MATERIAL = "Child Pornography (possession, manufacture, and distribution)"
#: The bands that are a minor. Not `rules.is_minor` on any string: a party whose account
#: wasn't found has the band "unknown", and that is not a minor.
MINOR_BANDS = frozenset(b for b in rules.BANDS if rules.is_minor(b))


@dataclass(frozen=True, slots=True)
class Reporter:
    """The relay operator, as the report names them (RelayConfig)."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Party:
    handle: str
    display_name: str  # written for the subject only; a victim is named by handle
    band: str  # a `Band`, or "unknown" when the account wasn't found


@dataclass(frozen=True, slots=True)
class Login:
    address: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Message:
    sender: str
    recipient: str
    sent_at: datetime
    mode: str
    franking: str
    text: str


@dataclass(frozen=True, slots=True)
class HeldFile:
    """An attachment a hash match held, as its evidence row and finding record it."""

    blob: str  # the relay's id for it (its blob id)
    owner: str  # who uploaded it: the evidence's sender
    description: str  # the evidence's text: name, type, size and SHA-256 at upload
    match: str  # the finding's explanation: bank, signal, distance, label
    #: The name the sender gave the file, where the relay recorded it as a field of its own.
    #: (Today only the description holds it, and it is not parsed out of that text.)
    original_name: str | None = None


@dataclass(frozen=True, slots=True)
class FileHashes:
    """A held file's hashes, computed from its bytes when the draft is written."""

    sha256: str
    md5: str
    pdq: str | None = None  # images only
    pdq_quality: int | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    case_id: int
    subject: Party
    victims: Sequence[Party]
    logins: Sequence[Login]
    messages: Sequence[Message]
    findings: Sequence[str]  # each finding's explanation, as a reviewer read it
    opened_at: datetime
    note: str
    hash_match: bool = False
    files: Sequence[HeldFile] = ()


class ReportInvalid(Exception):
    """A drafted report broke the schema's rules (a bug: nothing is written)."""


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


#: Characters XML 1.0 can't carry at all (a message may contain them): replaced, so the
#: document still parses.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = _NOT_XML.sub("\ufffd", text)
    return element


def _transcript(messages: Sequence[Message]) -> str:
    lines = []
    for m in sorted(messages, key=lambda m: m.sent_at):
        how = "end-to-end encrypted, reported by its recipient" if m.mode == "e2ee" else "visible"
        check_words = "franking verified" if m.franking == "verified" else "not verifiable"
        lines.append(
            f"[{_when(m.sent_at)}] @{m.sender} -> @{m.recipient} ({how}; {check_words}): {m.text}"
        )
    return "\n".join(lines)


def build(draft: Draft, reporter: Reporter) -> ET.Element:
    """The `report` element for ``draft``, children in the schema's order."""
    report = ET.Element("report")
    summary = _add(report, "incidentSummary")
    _add(summary, "incidentType", CHILD_SEXUAL_ABUSE_MATERIAL if draft.hash_match else ENTICEMENT)
    _add(summary, "platform", PLATFORM)
    if draft.subject.band in MINOR_BANDS and draft.victims:
        annotations = _add(summary, "reportAnnotations")
        _add(annotations, "minorToMinorInteraction")
    first = min((m.sent_at for m in draft.messages), default=draft.opened_at)
    _add(summary, "incidentDateTime", _when(first))
    _add(
        summary,
        "incidentDateTimeDescription",
        "The earliest message in the case" if draft.messages else "When the case was opened",
    )

    details = _add(report, "internetDetails")
    chat = _add(details, "chatImIncident")
    _add(chat, "chatClient", PLATFORM)
    if draft.messages:
        _add(chat, "content", _transcript(draft.messages))
    _add(
        chat,
        "additionalInfo",
        "Content is what reached the case: visible conversations as the relay held them, and "
        "end-to-end encrypted messages only where a participant reported them (franking says "
        "whether the relay could verify the reported text came from the sender).",
    )

    who = _add(report, "reporter")
    # `reportingPerson` is a person record whose names are optional and whose email is
    # required. The operator's name is usually an organisation's ("Example Relay
    # Operations"), so it goes whole into `companyTemplate` (the schema's place for basic
    # company information), never split into an invented first and last name.
    person = _add(who, "reportingPerson")
    email = _add(person, "email", reporter.email)
    email.set("type", "Business")
    _add(who, "companyTemplate", f"Reporting company: {reporter.name} ({PLATFORM} relay operator).")

    reported = _add(report, "personOrUserReported")
    _add(reported, "espIdentifier", draft.subject.handle)
    _add(reported, "espService", PLATFORM)
    _add(reported, "screenName", draft.subject.handle)
    _add(reported, "displayName", draft.subject.display_name[:255])
    for login in draft.logins:
        event = _add(reported, "ipCaptureEvent")
        _add(event, "ipAddress", login.address)
        _add(event, "eventName", "Login")
        _add(event, "dateTime", _when(login.at))
    _add(
        reported,
        "additionalInfo",
        f"Declared age group: {BAND_WORDS.get(draft.subject.band, draft.subject.band)}.",
    )

    for victim in draft.victims:
        v = _add(report, "victim")
        _add(v, "victimPerson")  # the platform knows no name, address or exact age
        _add(v, "espIdentifier", victim.handle)
        _add(v, "espService", PLATFORM)
        _add(v, "screenName", victim.handle)  # and no displayName: handle and age group only
        _add(
            v,
            "additionalInfo",
            f"Declared age group: {BAND_WORDS.get(victim.band, victim.band)} (self-declared "
            "birth date; no age assurance).",
        )

    findings = "\n".join(f"- {f}" for f in draft.findings)
    _add(
        report,
        "additionalInfo",
        f"agechat case #{draft.case_id}. Findings:\n{findings}\n{_files_note(draft.files)}"
        f"Moderator's note: {draft.note or '(none)'}\n"
        "Drafted by the agechat prototype; not submitted.",
    )
    return report


def _files_note(files: Sequence[HeldFile]) -> str:
    """The report's word on its files. The `report` element has nowhere to list them (a
    submission uploads each file to the report, then its details), so it says so here."""
    if not files:
        return ""
    listed = "\n".join(
        f"- file {n}: the relay's file {f.blob}, uploaded by @{f.owner}"
        for n, f in enumerate(files, 1)
    )
    return (
        f"Files: {len(files)} held attachment(s), kept as evidence and never delivered; each "
        "is described in a file-details draft written beside this report (its name, then "
        f"-file-1, -file-2, …):\n{listed}\n"
    )


def _placeholders(case_id: int) -> str:
    return (
        f"reportId is agechat case #{case_id}, not an NCMEC report ID: NCMEC assigns one "
        "when a report is submitted, and this draft never was. Likewise fileId is the "
        "relay's id for the file, not the file ID NCMEC assigns when the file is uploaded. "
        "Replace both before submitting."
    )


def build_file(
    case_id: int, file: HeldFile, hashes: FileHashes | None, now: datetime
) -> ET.Element:
    """The `fileDetails` element for one held file of case ``case_id``, children in the
    schema's order; ``hashes`` None when the held file wasn't found."""
    details = ET.Element("fileDetails")
    # reportId is required and an xs:long. With no NCMEC report ID to give, it holds the
    # case number, and a comment (and additionalInfo, for a reader that drops comments)
    # says so.
    details.append(ET.Comment(f" {_placeholders(case_id)} "))
    _add(details, "reportId", str(case_id))
    _add(details, "fileId", file.blob)
    if file.original_name is not None:
        _add(details, "originalFileName", file.original_name[:2056])
    # What the platform knows of its own handling: the relay shows a held file to no one,
    # moderators included (it was identified by hashes alone), and never delivered it.
    _add(details, "fileViewedByEsp", "false")
    _add(details, "publiclyAvailable", "false")
    _add(details, "fileRelevance", "Reported")  # the file the report is about
    # No fileAnnotations: its tags describe what a file depicts (anime, meme, viral, …),
    # which a hash match doesn't tell. No industryClassification: the schema keeps it for
    # companies in NCMEC's Industry Hash Sharing Platform, using its A1–B2 scale.
    if hashes is not None:
        # Binary hashes of the bytes as uploaded (a held file is kept unmodified).
        _add(details, "originalFileHash", hashes.sha256).set("hashType", "SHA256")
        _add(details, "originalFileHash", hashes.md5).set("hashType", "MD5")
        if hashes.pdq is not None:
            # PDQ is a perceptual hash of the decoded picture, not of the bytes: metadata
            # of the HASH type, not an originalFileHash.
            metadata = _add(details, "details")
            metadata.set("type", "HASH")
            pair = _add(metadata, "nameValuePair")
            _add(pair, "name", "PDQ")
            _add(pair, "value", hashes.pdq)
            if hashes.pdq_quality is not None:
                pair = _add(metadata, "nameValuePair")
                _add(pair, "name", "PDQ quality")
                _add(pair, "value", str(hashes.pdq_quality))
        hashed = (
            f"Hashes: computed from the held file at {_when(now)} (SHA-256, MD5"
            + (", and PDQ of the picture" if hashes.pdq is not None else "")
            + ")."
        )
    else:
        hashed = (
            "Hashes: none given here: the held file was not in the relay's data directory "
            "when this draft was written; its SHA-256 at upload is in the description above."
        )
    _add(
        details,
        "additionalInfo",
        f"{_placeholders(case_id)}\n"
        f"The file as the relay recorded it: {file.description}\n"
        f"Why it was held: {file.match}\n"
        f"{hashed}\n"
        "The file itself is not in this outbox: a submission uploads it to the report "
        "before these details. The agechat prototype leaves it in the relay's data "
        f"directory (blobs/{file.owner}/{file.blob}), kept as case evidence and shown to "
        "no one.\nDrafted by the agechat prototype; not submitted.",
    )
    return details


def serialise(report: ET.Element) -> bytes:
    """The document's bytes. A carriage return in text (a message may hold one) is written
    as the character reference ``&#13;``: a raw one would reach a parser as a line feed (XML
    normalises line ends). ElementTree escapes it in attribute values already, and tag names,
    the declaration and the indentation never hold one, so every raw CR byte in its output
    is inside text content (in UTF-8, byte 0x0D is only ever that character)."""
    data = ET.tostring(report, encoding="utf-8", xml_declaration=True)
    return data.replace(b"\r", b"&#13;")


def _checked(document: ET.Element, now: datetime) -> bytes:
    problems = check(document, now)
    if problems:
        raise ReportInvalid("; ".join(problems))
    ET.indent(document)
    return serialise(document)


def render(draft: Draft, reporter: Reporter, now: datetime) -> bytes:
    """The checked, indented document for ``draft`` (what `write` writes, and what a
    moderator previews before escalating); `ReportInvalid` if it breaks the schema's rules."""
    return _checked(build(draft, reporter), now)


def render_file(case_id: int, file: HeldFile, hashes: FileHashes | None, now: datetime) -> bytes:
    """The checked, indented `fileDetails` document for one held file."""
    return _checked(build_file(case_id, file, hashes, now), now)


def _private_folder(folder: Path) -> None:
    """Make ``folder`` and any missing parents owner-only (0700); a folder that existed is
    narrowed to 0700 too. (``mkdir(parents=True)`` would give the parents default modes.)"""
    missing = []
    level = folder
    while not level.exists():
        missing.append(level)
        level = level.parent
    for level in reversed(missing):
        with contextlib.suppress(FileExistsError):
            level.mkdir(mode=0o700)
    folder.chmod(0o700)  # exact, whatever the umask or an earlier mode


def _create(path: Path, data: bytes) -> None:
    """Write a new owner-only file; `FileExistsError` if anything is at ``path`` (O_EXCL:
    never an existing file, nor through a symlink planted in its place)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # exact, whatever the umask
        f.write(data)


def write(
    draft: Draft,
    reporter: Reporter,
    outbox: Path,
    now: datetime,
    hashes: Mapping[HeldFile, FileHashes] | None = None,
) -> Path:
    """Check and write ``<outbox>/cybertip/<case>.xml`` and, for each of the draft's held
    files, ``<case>-file-<n>.xml`` (owner-only; never sent); returns the report's path.
    ``hashes`` are the held files' (a file missing from it wasn't found). Every
    document is checked before any is written. An earlier draft is never overwritten: this
    one is then ``<case>-2.xml`` with ``<case>-2-file-<n>.xml``, ``<case>-3.xml``, …"""
    hashes = hashes or {}
    report = render(draft, reporter, now)
    files = [render_file(draft.case_id, f, hashes.get(f), now) for f in draft.files]
    _private_folder(outbox)
    folder = outbox / "cybertip"
    _private_folder(folder)
    n = 1
    while True:
        stem = f"{draft.case_id}" if n == 1 else f"{draft.case_id}-{n}"
        taken = [folder / f"{stem}-file-{i}.xml" for i in range(1, len(files) + 1)]
        if not any(p.exists() or p.is_symlink() for p in taken):
            try:
                _create(folder / f"{stem}.xml", report)  # claims the stem
            except FileExistsError:
                pass
            else:
                break
        n += 1
    for path, data in zip(taken, files, strict=True):
        _create(path, data)
    return folder / f"{stem}.xml"
