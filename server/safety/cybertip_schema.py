"""The rules of NCMEC's CyberTipline Reporting API `report` document that agechat's reports
must follow, as data, and a check of a document against them (docs/MODERATION.md).

Written from NCMEC's published schema and documentation: for every element agechat writes,
its children in the schema's sequence order with their minimum and maximum counts, and the
value rules (enumerations, date-times with a time zone and in the past, lengths, ranges).
Elements agechat never writes are listed where they fall in a sequence, so the order check
knows where they would go, but their insides are not modelled. The check is ours, not
NCMEC's validator: it catches what a hand-built document gets wrong (order, missing or
repeated elements, bad values), which is what the tests hold every written report to.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Final

UNBOUNDED: Final = 10**9

INCIDENT_TYPES: Final = (
    "Child Pornography (possession, manufacture, and distribution)",
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
)
IP_CAPTURE_TYPES: Final = ("Login", "Registration", "Purchase", "Upload", "Other", "Unknown")
EMAIL_TYPES: Final = ("Home", "Work", "Business", "Recovery")
#: The presence flags of `reportAnnotations`: any order, each at most once, empty or "true".
REPORT_ANNOTATIONS: Final = (
    "sextortion",
    "csamSolicitation",
    "minorToMinorInteraction",
    "spam",
    "sadisticOnlineExploitation",
)


@dataclass(frozen=True, slots=True)
class Child:
    name: str
    min: int = 0
    max: int = 1


def _c(name: str, lo: int = 0, hi: int = 1) -> Child:
    return Child(name, lo, hi)


N = UNBOUNDED


def _person(emails: int) -> tuple[Child, ...]:
    """The `person` type; ``emails`` is the least number of `email` children."""
    return (
        _c("firstName"),
        _c("lastName"),
        _c("phone", 0, N),
        _c("email", emails, N),
        _c("address", 0, N),
        _c("age"),
        _c("dateOfBirth"),
    )


_PERSON_LIKE_TAIL = (
    _c("ipCaptureEvent", 0, N),
    _c("deviceId", 0, N),
)

#: Element → its children in sequence order. (`internetDetails` is a choice of one.)
SEQUENCES: Final[dict[str, tuple[Child, ...]]] = {
    "report": (
        _c("batchedReport"),
        _c("incidentSummary", 1, 1),
        _c("internetDetails", 0, N),
        _c("lawEnforcement"),
        _c("reporter", 1, 1),
        _c("personOrUserReported", 0, N),
        _c("intendedRecipient", 0, N),
        _c("victim", 0, N),
        _c("additionalInfo"),
    ),
    "incidentSummary": (
        _c("incidentType", 1, 1),
        _c("platform"),
        _c("escalateToHighPriority"),
        _c("reportAnnotations"),
        _c("incidentDateTime", 1, 1),
        _c("incidentDateTimeDescription"),
    ),
    "chatImIncident": (
        _c("chatClient"),
        _c("chatRoomName"),
        _c("content"),
        _c("additionalInfo"),
    ),
    "reporter": (
        _c("reportingPerson", 1, 1),
        _c("contactPerson"),
        _c("companyTemplate"),
        _c("termsOfService"),
        _c("legalURL"),
    ),
    "person": _person(emails=0),
    # The reporter's person record: every name optional, at least one email required
    # (NCMEC's documentation, B.4 Reporter). An organisation goes in `companyTemplate`.
    "reportingPerson": _person(emails=1),
    "personOrUserReported": (
        _c("personOrUserReportedPerson"),
        _c("vehicleDescription"),
        _c("espIdentifier"),
        _c("espService"),
        _c("compromisedAccount"),
        _c("screenName"),
        _c("displayName", 0, N),
        _c("profileUrl", 0, N),
        _c("profileBio"),
        *_PERSON_LIKE_TAIL,
        _c("thirdPartyUserReported"),
        _c("priorCTReports", 0, N),
        _c("groupIdentifier"),
        _c("accountTemporarilyDisabled"),
        _c("accountPermanentlyDisabled"),
        _c("estimatedLocation"),
        _c("allEmailsReported"),
        _c("associatedAccount", 0, N),
        _c("additionalInfo"),
    ),
    "victim": (
        _c("victimPerson", 1, 1),
        _c("espIdentifier"),
        _c("espService"),
        _c("compromisedAccount"),
        _c("screenName"),
        _c("displayName", 0, N),
        _c("profileUrl", 0, N),
        _c("profileBio"),
        *_PERSON_LIKE_TAIL,
        _c("schoolName"),
        _c("priorCTReports", 0, N),
        _c("accountTemporarilyDisabled"),
        _c("accountPermanentlyDisabled"),
        _c("estimatedLocation"),
        _c("allEmailsReported"),
        _c("associatedAccount", 0, N),
        _c("additionalInfo"),
    ),
    "ipCaptureEvent": (
        _c("ipAddress", 1, 1),
        _c("eventName"),
        _c("dateTime"),
        _c("possibleProxy"),
        _c("port"),
    ),
}
#: Elements whose content has the `person` type (`reportingPerson` has its own rule above).
PERSON_ELEMENTS: Final = frozenset({"personOrUserReportedPerson", "victimPerson"})
#: The incidents `internetDetails` chooses among (exactly one).
INTERNET_INCIDENTS: Final = (
    "webPageIncident",
    "emailIncident",
    "newsgroupIncident",
    "chatImIncident",
    "onlineGamingIncident",
    "cellPhoneIncident",
    "nonInternetIncident",
    "peer2peerIncident",
)
#: Leaf value rules: maximum lengths of strings.
MAX_LENGTH: Final = {
    "platform": 256,
    "escalateToHighPriority": 3000,
    "incidentDateTimeDescription": 3000,
    "chatClient": 255,
    "chatRoomName": 255,
    "firstName": 100,
    "lastName": 100,
    "espIdentifier": 255,
    "espService": 100,
    "screenName": 256,
    "displayName": 255,
    "legalURL": 2083,
}
DATE_TIMES: Final = frozenset({"incidentDateTime", "dateTime"})
BOOLEANS: Final = frozenset(
    {"compromisedAccount", "thirdPartyUserReported", "allEmailsReported", "possibleProxy"}
)
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def check(document: ET.Element, now: datetime) -> list[str]:
    """Every way ``document`` breaks the rules above, as sentences naming the element's path;
    empty when it follows them. ``now`` is when the report is checked (times must be past)."""
    problems: list[str] = []
    if document.tag != "report":
        return [f"the root element is <{document.tag}>, not <report>"]
    _check(document, "report", "/report", now, problems)
    return problems


def _check(element: ET.Element, kind: str, path: str, now: datetime, out: list[str]) -> None:
    if kind == "internetDetails":
        children = list(element)
        if len(children) != 1 or children[0].tag not in INTERNET_INCIDENTS:
            out.append(f"{path} must hold exactly one incident element")
            return
        incident = children[0]
        if incident.tag == "chatImIncident":
            _check(incident, "chatImIncident", f"{path}/chatImIncident", now, out)
        return
    if kind == "reportAnnotations":
        seen: set[str] = set()
        for flag in element:
            if flag.tag not in REPORT_ANNOTATIONS or flag.tag in seen:
                out.append(f"{path}/{flag.tag} is not an annotation, or is repeated")
            elif (flag.text or "true").strip() != "true":
                out.append(f"{path}/{flag.tag} must be empty (present means true)")
            seen.add(flag.tag)
        return
    sequence = SEQUENCES.get("person" if kind in PERSON_ELEMENTS else kind)
    if sequence is None:
        _check_leaf(element, kind, path, now, out)
        return
    _check_sequence(element, sequence, path, out)
    for child in element:
        _check(child, child.tag, f"{path}/{child.tag}", now, out)


def _check_sequence(
    element: ET.Element, sequence: tuple[Child, ...], path: str, out: list[str]
) -> None:
    position = {c.name: i for i, c in enumerate(sequence)}
    counts: dict[str, int] = {}
    last = -1
    for child in element:
        if child.tag not in position:
            out.append(f"{path}/{child.tag} is not allowed here")
            continue
        if position[child.tag] < last:
            out.append(f"{path}/{child.tag} is out of order")
        last = max(last, position[child.tag])
        counts[child.tag] = counts.get(child.tag, 0) + 1
    for rule in sequence:
        n = counts.get(rule.name, 0)
        if n < rule.min:
            out.append(f"{path}/{rule.name} is required")
        if n > rule.max:
            out.append(f"{path}/{rule.name} appears {n} times (at most {rule.max})")


def _check_leaf(element: ET.Element, kind: str, path: str, now: datetime, out: list[str]) -> None:
    text = element.text or ""
    if len(element):
        out.append(f"{path} must not have child elements")
    if kind == "incidentType" and text not in INCIDENT_TYPES:
        out.append(f"{path} {text!r} is not one of the incident types")
    if kind == "eventName" and text not in IP_CAPTURE_TYPES:
        out.append(f"{path} {text!r} is not one of the IP capture types")
    if kind == "email":
        kind_attr = element.get("type")
        if kind_attr is not None and kind_attr not in EMAIL_TYPES:
            out.append(f"{path}/@type {kind_attr!r} is not an email type")
        if not text.strip():
            out.append(f"{path} is empty")
    if kind in DATE_TIMES:
        if not _DATE_TIME.match(text):
            out.append(f"{path} {text!r} is not a date-time with a time zone")
        elif datetime.fromisoformat(text.replace("Z", "+00:00")) > now:
            out.append(f"{path} is in the future")
    if kind in BOOLEANS and text not in ("true", "false", "1", "0"):
        out.append(f"{path} {text!r} is not a boolean")
    if kind == "age" and not (text.isdigit() and 0 <= int(text) <= 150):
        out.append(f"{path} {text!r} is not an age from 0 to 150")
    if kind in MAX_LENGTH and len(text) > MAX_LENGTH[kind]:
        out.append(f"{path} is longer than {MAX_LENGTH[kind]} characters")
