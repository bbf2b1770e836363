"""The schema-derived check catches what a hand-built CyberTipline report gets wrong: order,
missing or repeated elements, values outside an enumeration, times without a zone or in the
future (issue 12). Built from a valid draft, broken one way at a time."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from server.safety.cybertip import Draft, Login, Message, Party, Reporter, build
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
