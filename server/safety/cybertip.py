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

A draft is never overwritten: a second escalation of the same case writes `<case>-2.xml`,
and so on. The outbox folders and the files in them are owner-only.
"""

from __future__ import annotations

import contextlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
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
        f"agechat case #{draft.case_id}. Findings:\n{findings}\nModerator's note: "
        f"{draft.note or '(none)'}\nDrafted by the agechat prototype; not submitted.",
    )
    return report


def serialise(report: ET.Element) -> bytes:
    """The document's bytes. A carriage return in text (a message may hold one) is written
    as the character reference ``&#13;``: a raw one would reach a parser as a line feed (XML
    normalises line ends). ElementTree escapes it in attribute values already, and tag names,
    the declaration and the indentation never hold one, so every raw CR byte in its output
    is inside text content (in UTF-8, byte 0x0D is only ever that character)."""
    data = ET.tostring(report, encoding="utf-8", xml_declaration=True)
    return data.replace(b"\r", b"&#13;")


def render(draft: Draft, reporter: Reporter, now: datetime) -> bytes:
    """The checked, indented document for ``draft`` (what `write` writes, and what a
    moderator previews before escalating); `ReportInvalid` if it breaks the schema's rules."""
    report = build(draft, reporter)
    problems = check(report, now)
    if problems:
        raise ReportInvalid("; ".join(problems))
    ET.indent(report)
    return serialise(report)


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


def write(draft: Draft, reporter: Reporter, outbox: Path, now: datetime) -> Path:
    """Check and write ``<outbox>/cybertip/<case>.xml`` (owner-only; never sent). An earlier
    draft is never overwritten: this one is then ``<case>-2.xml``, ``<case>-3.xml``, …"""
    data = render(draft, reporter, now)
    _private_folder(outbox)
    folder = outbox / "cybertip"
    _private_folder(folder)
    n = 1
    while True:
        path = folder / (f"{draft.case_id}.xml" if n == 1 else f"{draft.case_id}-{n}.xml")
        try:
            # O_EXCL: never an existing file (nor through a symlink planted in its place).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            n += 1
            continue
        break
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # exact, whatever the umask
        f.write(data)
    return path
