"""The rules of NCMEC's CyberTipline Reporting API documents that agechat drafts — the
`report`, and the `fileDetails` that describes one file of a report — as data, and a check
of a document against them (docs/MODERATION.md).

Written from NCMEC's published schema and documentation: for every element agechat writes,
its children in the schema's sequence order with their minimum and maximum counts, and the
value rules (enumerations, date-times with a time zone and in the past, lengths, ranges).
Elements agechat never writes are listed where they fall in a sequence, so the order check
knows where they would go, but their insides are not modelled. The check is ours, not
NCMEC's validator: it catches what a hand-built document gets wrong (order, missing or
repeated elements, bad values), which is what the tests hold every written document to.
Comments (a draft explains its placeholders in one) are not elements and are skipped.
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
#: `fileDetails/fileRelevance`: "Reported" (the default) is content that is the motivation
#: for the report; "Supplemental Reported" is context.
FILE_RELEVANCES: Final = ("Reported", "Supplemental Reported")
#: `fileDetails/industryClassification`: the Industry Hash Sharing Platform's scale (only
#: for a company that signed its MOU).
INDUSTRY_CLASSIFICATIONS: Final = ("A1", "A2", "B1", "B2")
#: The tags of `fileAnnotations` (an xs:all of booleans fixed to true): any order, each at
#: most once, empty or "true".
FILE_ANNOTATIONS: Final = (
    "animeDrawingVirtualHentai",
    "potentialMeme",
    "viral",
    "possibleSelfProduction",
    "physicalHarm",
    "violenceGore",
    "bestiality",
    "liveStreaming",
    "infant",
    "generativeAi",
)
#: `details/@type`, the kind of a file's metadata.
METADATA_TYPES: Final = ("EXIF", "HASH")


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
    # The details of one file uploaded to a report (the API's /fileinfo request). In the
    # schema `potentialMeme` and `fileAnnotations` are a choice: at most one of the two
    # (checked apart, in `_check_file_details`).
    "fileDetails": (
        _c("reportId", 1, 1),
        _c("fileId", 1, 1),
        _c("fileName"),
        _c("originalFileName"),
        _c("uploadedToEspTimestamp"),
        _c("locationOfFile"),
        _c("fileViewedByEsp"),
        _c("exifViewedByEsp"),
        _c("publiclyAvailable"),
        _c("fileRelevance"),
        _c("potentialMeme"),
        _c("fileAnnotations"),
        _c("industryClassification"),
        _c("originalFileHash", 0, N),
        _c("ipCaptureEvent"),
        _c("deviceId", 0, N),
        _c("details", 0, N),
        _c("additionalInfo", 0, N),
    ),
    "details": (_c("nameValuePair", 1, N),),
    "nameValuePair": (_c("name", 1, 1), _c("value", 1, 1)),
}
#: The documents this module checks, by root element.
ROOTS: Final = ("report", "fileDetails")
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
    "originalFileName": 2056,
    "locationOfFile": 2083,
    "name": 64,  # a file metadata entry's name (`details/nameValuePair/name`)
}
DATE_TIMES: Final = frozenset({"incidentDateTime", "dateTime", "uploadedToEspTimestamp"})
BOOLEANS: Final = frozenset(
    {
        "compromisedAccount",
        "thirdPartyUserReported",
        "allEmailsReported",
        "possibleProxy",
        "fileViewedByEsp",
        "exifViewedByEsp",
        "publiclyAvailable",
        "potentialMeme",
    }
)
#: xs:long, the type of `reportId`.
LONG_MAX: Final = 2**63 - 1
#: `originalFileHash/@hashType`: at most this many characters (NCMEC's documentation, C.2).
HASH_TYPE_MAX_LENGTH: Final = 64
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_LONG = re.compile(r"^\s*\+?\d{1,19}\s*$")


def check(document: ET.Element, now: datetime) -> list[str]:
    """Every way ``document`` (a `report` or a `fileDetails`) breaks the rules above, as
    sentences naming the element's path; empty when it follows them. ``now`` is when the
    document is checked (times must be past)."""
    problems: list[str] = []
    if document.tag not in ROOTS:
        return [f"the root element is <{document.tag}>, not <report> or <fileDetails>"]
    _check(document, document.tag, f"/{document.tag}", now, problems)
    if document.tag == "fileDetails":
        _check_file_details(document, problems)
    return problems


def _elements(element: ET.Element) -> list[ET.Element]:
    """The child elements of ``element``: not its comments or processing instructions."""
    return [c for c in element if isinstance(c.tag, str)]


def _check(element: ET.Element, kind: str, path: str, now: datetime, out: list[str]) -> None:
    if kind == "internetDetails":
        children = _elements(element)
        if len(children) != 1 or children[0].tag not in INTERNET_INCIDENTS:
            out.append(f"{path} must hold exactly one incident element")
            return
        incident = children[0]
        if incident.tag == "chatImIncident":
            _check(incident, "chatImIncident", f"{path}/chatImIncident", now, out)
        return
    if kind in ("reportAnnotations", "fileAnnotations"):
        flags = REPORT_ANNOTATIONS if kind == "reportAnnotations" else FILE_ANNOTATIONS
        seen: set[str] = set()
        for flag in _elements(element):
            if flag.tag not in flags or flag.tag in seen:
                out.append(f"{path}/{flag.tag} is not an annotation, or is repeated")
            elif (flag.text or "true").strip() != "true":
                out.append(f"{path}/{flag.tag} must be empty (present means true)")
            seen.add(flag.tag)
        return
    sequence = SEQUENCES.get("person" if kind in PERSON_ELEMENTS else kind)
    if sequence is None:
        _check_leaf(element, kind, path, now, out)
        return
    if kind == "details":
        metadata = element.get("type")
        if metadata is not None and metadata not in METADATA_TYPES:
            out.append(f"{path}/@type {metadata!r} is not a metadata type")
    _check_sequence(element, sequence, path, out)
    for child in _elements(element):
        _check(child, child.tag, f"{path}/{child.tag}", now, out)


def _check_file_details(document: ET.Element, out: list[str]) -> None:
    """The rules of `fileDetails` that tie one element to another (the schema's choice, and
    NCMEC's documentation, Appendix C)."""
    if document.find("potentialMeme") is not None and document.find("fileAnnotations") is not None:
        out.append("/fileDetails holds both potentialMeme and fileAnnotations (one or the other)")
    if _true(document.find("exifViewedByEsp")) and not _true(document.find("fileViewedByEsp")):
        out.append("/fileDetails/fileViewedByEsp must be true when exifViewedByEsp is true")
    relevance = document.find("fileRelevance")
    if relevance is not None and relevance.text == "Supplemental Reported":
        meme = _true(document.find("potentialMeme")) or (
            document.find("fileAnnotations/potentialMeme") is not None
        )
        if meme or document.find("industryClassification") is not None:
            out.append(
                "/fileDetails/fileRelevance may not be 'Supplemental Reported' for a potential "
                "meme or a file with an industryClassification"
            )


def _true(element: ET.Element | None) -> bool:
    return element is not None and (element.text or "").strip() in ("true", "1")


def _check_sequence(
    element: ET.Element, sequence: tuple[Child, ...], path: str, out: list[str]
) -> None:
    position = {c.name: i for i, c in enumerate(sequence)}
    counts: dict[str, int] = {}
    last = -1
    for child in _elements(element):
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
    if _elements(element):
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
    if kind == "reportId" and not (_LONG.match(text) and 0 < int(text) <= LONG_MAX):
        out.append(f"{path} {text!r} is not a report ID (a positive xs:long)")
    if kind == "fileId" and not text.strip():
        out.append(f"{path} is blank")
    if kind == "fileRelevance" and text not in FILE_RELEVANCES:
        out.append(f"{path} {text!r} is not one of the file relevances")
    if kind == "industryClassification" and text not in INDUSTRY_CLASSIFICATIONS:
        out.append(f"{path} {text!r} is not one of the industry classifications")
    if kind == "originalFileHash":
        hash_type = element.get("hashType")
        if not hash_type:
            out.append(f"{path}/@hashType is required")
        elif len(hash_type) > HASH_TYPE_MAX_LENGTH:
            out.append(f"{path}/@hashType is longer than {HASH_TYPE_MAX_LENGTH} characters")
        if not text.strip():
            out.append(f"{path} is empty")
