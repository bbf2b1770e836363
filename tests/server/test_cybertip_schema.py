"""The schema-derived check catches what a hand-built CyberTipline report, or the file-details
document of a held attachment, gets wrong: order, missing or repeated elements, values
outside an enumeration, times without a zone or in the future (issue 12). Built from a valid
draft, broken one way at a time."""

from __future__ import annotations

import copy
import dataclasses
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from server.safety.cybertip import (
    Draft,
    FileHashes,
    HeldFile,
    Login,
    Message,
    Party,
    Reporter,
    build,
    build_file,
)
from server.safety.cybertip_schema import check

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=2)


def valid() -> ET.Element:
    draft = Draft(
        case_id=7,
        subject=Party("vic", "Vic", "adult"),
        victims=[Party("tia", "Tia", "teen_13_15")],
        logins=[Login("192.0.2.10", EARLIER)],
        messages=[Message("vic", "tia", EARLIER, "visible", "unverified", "hello")],
        findings=["Reported by @tia (under 18)."],
        opened_at=EARLIER,
        note="test",
    )
    return build(draft, Reporter("Relay Operator", "ops@agechat.invalid"))


def broken(change) -> list[str]:
    root = copy.deepcopy(valid())
    change(root)
    return check(root, NOW)


def test_a_built_report_passes():
    assert check(valid(), NOW) == []


def _swap(root, a, b):
    children = list(root)
    i, j = children.index(root.find(a)), children.index(root.find(b))
    children[i], children[j] = children[j], children[i]
    root[:] = children


def _set(path, value):
    return lambda root: setattr(root.find(path), "text", value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: _swap(r, "reporter", "internetDetails"), "out of order"),
        (lambda r: r.remove(r.find("reporter")), "/report/reporter is required"),
        (
            lambda r: r.find("incidentSummary").remove(r.find("incidentSummary/incidentDateTime")),
            "incidentDateTime is required",
        ),
        (lambda r: r.append(copy.deepcopy(r.find("incidentSummary"))), "appears 2 times"),
        (_set("incidentSummary/incidentType", "Grooming"), "not one of the incident types"),
        (_set("incidentSummary/incidentDateTime", "2026-11-28T10:00:00"), "time zone"),
        (_set("incidentSummary/incidentDateTime", "2027-01-01T00:00:00Z"), "in the future"),
        (_set("personOrUserReported/ipCaptureEvent/eventName", "Logon"), "IP capture types"),
        (_set("personOrUserReported/displayName", "x" * 256), "longer than 255"),
        (lambda r: ET.SubElement(r.find("victim"), "favouriteColour"), "not allowed here"),
        (
            lambda r: r.find("victim").remove(r.find("victim/victimPerson")),
            "victimPerson is required",
        ),
        (
            lambda r: ET.SubElement(r.find("internetDetails"), "emailIncident"),
            "exactly one incident",
        ),
        (lambda r: r.find("reporter/reportingPerson/email").set("type", "Personal"), "email type"),
    ],
)
def test_each_kind_of_mistake_is_named(change, expected):
    problems = broken(change)
    assert any(expected in p for p in problems), problems


def test_text_xml_cannot_carry_is_replaced_and_markup_is_escaped(tmp_path):
    from server.safety.cybertip import write

    draft = Draft(
        case_id=8,
        subject=Party("vic", "Vic <b>&", "adult"),
        victims=[],
        logins=[],
        messages=[
            Message("vic", "tia", EARLIER, "visible", "unverified", "a\x00b\x1bc </content>")
        ],
        findings=["x"],
        opened_at=EARLIER,
        note="",
    )
    path = write(draft, Reporter("Relay Operator", "ops@agechat.invalid"), tmp_path, NOW)
    root = ET.parse(path).getroot()  # parses: nothing XML can't carry was written
    content = root.find("internetDetails/chatImIncident/content").text
    assert "a\ufffdb\ufffdc </content>" in content
    assert root.find("personOrUserReported/displayName").text == "Vic <b>&"


def draft_with(**changes) -> Draft:
    base = {
        "case_id": 7,
        "subject": Party("vic", "Vic", "adult"),
        "victims": [Party("tia", "Tia Example", "teen_13_15")],
        "logins": [],
        "messages": [Message("vic", "tia", EARLIER, "visible", "unverified", "hello")],
        "findings": ["Reported by @tia (under 18)."],
        "opened_at": EARLIER,
        "note": "",
    }
    return Draft(**{**base, **changes})


REPORTER = Reporter("Relay Operator", "ops@agechat.invalid")


def test_a_victim_is_named_only_by_handle_and_declared_age_group():
    root = build(draft_with(), REPORTER)
    victim = root.find("victim")
    assert [c.tag for c in victim] == [
        "victimPerson",
        "espIdentifier",
        "espService",
        "screenName",
        "additionalInfo",
    ]
    assert "Tia Example" not in ET.tostring(victim, encoding="unicode")
    assert "13 to 15" in victim.find("additionalInfo").text
    assert root.find("personOrUserReported/displayName").text == "Vic"  # the subject keeps it


@pytest.mark.parametrize(
    ("subject_band", "annotated"),
    [("unknown", False), ("adult", False), ("teen_16_17", True), ("under_13", True)],
)
def test_only_a_minor_subject_makes_it_a_minor_to_minor_interaction(subject_band, annotated):
    root = build(draft_with(subject=Party("vic", "", subject_band)), REPORTER)
    found = root.find("incidentSummary/reportAnnotations/minorToMinorInteraction")
    assert (found is not None) == annotated
    assert check(root, NOW) == []


def test_an_organisation_reporter_is_not_split_into_a_persons_name():
    root = build(draft_with(), Reporter("Example Relay Operations", "ops@example.invalid"))
    person = root.find("reporter/reportingPerson")
    assert person.find("firstName") is None and person.find("lastName") is None
    assert person.find("email").text == "ops@example.invalid"
    assert "Example Relay Operations" in root.find("reporter/companyTemplate").text
    assert check(root, NOW) == []


def test_a_reporting_person_needs_an_email():
    problems = broken(lambda r: r.find("reporter/reportingPerson").clear())
    assert any("reportingPerson/email is required" in p for p in problems), problems


def test_a_second_draft_of_a_case_never_overwrites_the_first(tmp_path):
    from server.safety.cybertip import write

    outbox = tmp_path / "data" / "outbox"  # neither data/ nor outbox/ exists yet
    paths = [write(draft_with(note=f"draft {n}"), REPORTER, outbox, NOW) for n in (1, 2, 3)]
    assert [p.name for p in paths] == ["7.xml", "7-2.xml", "7-3.xml"]
    for n, path in enumerate(paths, 1):
        assert f"draft {n}" in ET.parse(path).getroot().find("additionalInfo").text
        assert path.stat().st_mode & 0o777 == 0o600
    for folder in (outbox, outbox / "cybertip"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_outbox_folders_made_earlier_with_wider_modes_become_owner_only(tmp_path):
    from server.safety.cybertip import write

    folder = tmp_path / "outbox" / "cybertip"
    folder.mkdir(parents=True)
    for f in (folder, folder.parent):
        f.chmod(0o755)
    write(draft_with(), REPORTER, tmp_path / "outbox", NOW)
    for f in (folder, folder.parent):
        assert f.stat().st_mode & 0o777 == 0o700, f


def test_a_carriage_return_in_a_message_survives_parsing(tmp_path):
    from server.safety.cybertip import write

    draft = draft_with(
        messages=[Message("vic", "tia", EARLIER, "visible", "unverified", "a\r\nb")],
        note="first\rsecond",
    )
    path = write(draft, REPORTER, tmp_path, NOW)
    root = ET.fromstring(path.read_bytes())
    assert "a\r\nb" in root.find("internetDetails/chatImIncident/content").text
    assert "first\rsecond" in root.find("additionalInfo").text


# --- file details (a held attachment's `fileDetails` document) ---------------------------

HELD = HeldFile(
    blob="b1",
    owner="vic",
    description="[attachment “pic.jpg”, image/jpeg, 3 bytes, sha256 ab12; held]",
    match="An attachment to @tia matched known material: bank test_bank, pdq distance 4.",
)
HASHES = FileHashes(sha256="a" * 64, md5="b" * 32, pdq="c" * 64, pdq_quality=100)


def valid_file(**changes) -> ET.Element:
    return build_file(7, dataclasses.replace(HELD, **changes), HASHES, NOW)


def test_built_file_details_pass_in_the_schemas_order():
    root = valid_file()
    assert check(root, NOW) == []
    assert [c.tag for c in root if isinstance(c.tag, str)] == [
        "reportId",
        "fileId",
        "fileViewedByEsp",
        "publiclyAvailable",
        "fileRelevance",
        "originalFileHash",
        "originalFileHash",
        "details",
        "additionalInfo",
    ]
    assert root.find("reportId").text == "7"  # the case number stands in, and says so
    assert "not an NCMEC report ID" in root.find("additionalInfo").text
    hashes = {h.get("hashType"): h.text for h in root.findall("originalFileHash")}
    assert hashes == {"SHA256": "a" * 64, "MD5": "b" * 32}
    assert root.find("details").get("type") == "HASH"
    assert root.find("details/nameValuePair/value").text == "c" * 64
    info = root.find("additionalInfo").text
    assert HELD.description in info and HELD.match in info  # whole, as recorded
    assert "blobs/vic/b1" in info and "not in this outbox" in info
    assert root.find("originalFileName") is None  # not known as a field of its own
    assert root.find("fileAnnotations") is None and root.find("industryClassification") is None


def test_an_original_file_name_is_written_when_known():
    root = valid_file(original_name="pic.jpg")
    assert root.find("originalFileName").text == "pic.jpg"
    assert check(root, NOW) == []


def test_a_file_not_found_has_no_hashes_and_still_passes():
    root = build_file(7, HELD, None, NOW)
    assert root.find("originalFileHash") is None and root.find("details") is None
    assert "not in the relay's data directory" in root.find("additionalInfo").text
    assert check(root, NOW) == []


def broken_file(change) -> list[str]:
    root = valid_file()
    change(root)
    return check(root, NOW)


def _child(tag, text=None, **attributes):
    def change(root):
        element = ET.SubElement(root, tag, attributes)
        element.text = text

    return change


def _before(tag, before, text=None):
    def change(root):
        element = ET.Element(tag)
        element.text = text
        root.insert(list(root).index(root.find(before)), element)
        return element

    return change


def _both(first, second):
    return lambda root: (first(root), second(root))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.remove(r.find("reportId")), "/fileDetails/reportId is required"),
        (_set("reportId", "case-7"), "not a report ID"),
        (_set("reportId", "0"), "not a report ID"),
        (_set("reportId", str(2**63)), "not a report ID"),
        (_set("fileId", "  "), "fileId is blank"),
        (lambda r: r.remove(r.find("fileId")), "/fileDetails/fileId is required"),
        (lambda r: _swap(r, "reportId", "fileId"), "out of order"),
        (_set("fileRelevance", "Relevant"), "not one of the file relevances"),
        (_set("fileViewedByEsp", "no"), "not a boolean"),
        (lambda r: r.find("originalFileHash").attrib.clear(), "hashType is required"),
        (lambda r: r.find("originalFileHash").set("hashType", "x" * 65), "longer than 64"),
        (_set("originalFileHash", ""), "originalFileHash is empty"),
        (lambda r: r.find("details").set("type", "XMP"), "not a metadata type"),
        (
            lambda r: r.find("details/nameValuePair").remove(r.find("details/nameValuePair/value")),
            "nameValuePair/value is required",
        ),
        (lambda r: r.find("details").clear(), "details/nameValuePair is required"),
        (_before("industryClassification", "originalFileHash", "C1"), "industry classification"),
        (_before("originalFileName", "fileId", "pic.jpg"), "out of order"),
        (_before("originalFileName", "fileViewedByEsp", "x" * 2057), "longer than 2056"),
        (
            _before("uploadedToEspTimestamp", "fileViewedByEsp", "2027-01-01T00:00:00Z"),
            "in the future",
        ),
        (_child("ipCaptureEvent"), "out of order"),  # after additionalInfo
        (
            _both(
                _before("potentialMeme", "originalFileHash", "true"),
                _before("fileAnnotations", "originalFileHash"),
            ),
            "both potentialMeme and fileAnnotations",
        ),
        (
            lambda r: ET.SubElement(_before("fileAnnotations", "originalFileHash")(r), "known"),
            "not an annotation",
        ),
        (
            _both(
                _set("fileViewedByEsp", "false"),
                _before("exifViewedByEsp", "publiclyAvailable", "true"),
            ),
            "fileViewedByEsp must be true when exifViewedByEsp is true",
        ),
        (
            _both(
                _set("fileRelevance", "Supplemental Reported"),
                _before("industryClassification", "originalFileHash", "A1"),
            ),
            "may not be 'Supplemental Reported'",
        ),
        (lambda r: r.append(copy.deepcopy(r.find("fileId"))), "fileId appears 2 times"),
    ],
)
def test_each_kind_of_file_details_mistake_is_named(change, expected):
    problems = broken_file(change)
    assert any(expected in p for p in problems), problems


def test_a_well_formed_file_details_document_from_the_documentation_passes():
    """NCMEC's own example (technical documentation, 6.3), which the check must accept."""
    example = ET.fromstring(
        "<fileDetails><reportId>4564654</reportId>"
        "<fileId>b0754af766b426f2928a02c651ed4b99</fileId>"
        "<originalFileName>mypic.jpg</originalFileName>"
        "<ipCaptureEvent><ipAddress>63.116.246.17</ipAddress><eventName>Upload</eventName>"
        "<dateTime>2011-10-31T12:00:00Z</dateTime></ipCaptureEvent>"
        "<additionalInfo>File was originally posted with 6 others</additionalInfo>"
        "</fileDetails>"
    )
    assert check(example, NOW) == []


def test_another_root_element_is_refused():
    assert check(ET.Element("fileInfo"), NOW) == [
        "the root element is <fileInfo>, not <report> or <fileDetails>"
    ]


def test_a_report_with_files_names_them_and_its_files_are_written_beside_it(tmp_path):
    from server.safety.cybertip import write

    second = HeldFile("b2", "vic", "[attachment “b.gif”]", "matched")
    draft = draft_with(hash_match=True, files=[HELD, second])
    hashes = {HELD: HASHES}  # b2's file wasn't found
    first = write(draft, REPORTER, tmp_path, NOW, hashes)
    again = write(draft, REPORTER, tmp_path, NOW, hashes)
    folder = tmp_path / "cybertip"
    assert (first.name, again.name) == ("7.xml", "7-2.xml")
    assert sorted(p.name for p in folder.iterdir()) == [
        "7-2-file-1.xml",
        "7-2-file-2.xml",
        "7-2.xml",
        "7-file-1.xml",
        "7-file-2.xml",
        "7.xml",
    ]
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
        assert check(ET.fromstring(path.read_bytes()), NOW) == [], path.name
    info = ET.parse(first).getroot().find("additionalInfo").text
    assert "Files: 2 held attachment(s)" in info and "- file 2: the relay's file b2" in info
    one, two = (ET.parse(folder / f"7-file-{n}.xml").getroot() for n in (1, 2))
    assert one.find("fileId").text == "b1" and two.find("fileId").text == "b2"
    assert one.find("originalFileHash") is not None and two.find("originalFileHash") is None
    assert b"reportId is agechat case #7" in (folder / "7-file-1.xml").read_bytes()  # comment


def test_a_planted_file_name_is_never_overwritten(tmp_path):
    from server.safety.cybertip import write

    folder = tmp_path / "cybertip"
    folder.mkdir(parents=True)
    (folder / "7-file-1.xml").write_bytes(b"not ours")
    path = write(draft_with(files=[HELD]), REPORTER, tmp_path, NOW, {HELD: HASHES})
    assert path.name == "7-2.xml" and (folder / "7-2-file-1.xml").exists()
    assert (folder / "7-file-1.xml").read_bytes() == b"not ours"
    assert not (folder / "7.xml").exists()


def test_nothing_is_written_when_a_file_document_breaks_the_rules(tmp_path):
    from server.safety.cybertip import ReportInvalid, write

    bad = FileHashes(sha256="", md5="b" * 32)  # an empty hash: a bug, caught before writing
    with pytest.raises(ReportInvalid, match="originalFileHash is empty"):
        write(draft_with(files=[HELD]), REPORTER, tmp_path, NOW, {HELD: bad})
    assert not (tmp_path / "cybertip").exists()  # checked before anything was made
