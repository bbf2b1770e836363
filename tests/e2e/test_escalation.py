"""Escalating a case drafts a CyberTipline report in the outbox, never sent, that follows the
schema's rules (issue 12, first piece), and only for something reportable: a hash match, or
a minor the relay itself knows was involved; a held attachment gets a file-details draft
beside it, without its bytes. Personas and messages are invented; pictures are generated."""

from __future__ import annotations

import hashlib
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest_asyncio

from client.relay.blobs import BlobTransfer
from protocol.attachments import AttachmentRef
from protocol.frames import Accepted, ContactRequest, ContactRespond, Send
from server.admin.roles import change_role
from server.app_keys import RELAY_ID, SAFETY
from server.safety.cybertip_schema import check
from server.safety.hashing import banks_dir, hash_file
from server.safety.service import Evidence, Finding
from tests.e2e.test_attachment_matching import picture
from tests.server.raw import Person, connect, new_id, request
from tests.support import (
    Relay,
    drain,
    make_profile,
    open_clients,
    refused,
    send_and_wait,
    years_ago,
)


@pytest_asyncio.fixture
async def relay(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    yield relay
    await relay.stop()


async def moderator(relay: Relay, tmp_path, role: str = "child_safety_moderator"):
    profile = await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await change_role(relay.config.data_dir, "cs_mod", role, grant=True)
    await relay.app[SAFETY].load()
    return profile


def drafts(relay: Relay) -> list[str]:
    folder = relay.config.data_dir / "outbox" / "cybertip"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def written(relay: Relay, case_id: int) -> ET.Element:
    outbox = relay.config.data_dir / "outbox"
    for folder in (outbox, outbox / "cybertip"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder  # owner-only
    path = outbox / "cybertip" / f"{case_id}.xml"
    assert path.stat().st_mode & 0o777 == 0o600
    return ET.fromstring(path.read_bytes())


def text(root: ET.Element, path: str) -> str:
    found = root.find(path)
    assert found is not None, path
    return found.text or ""


async def test_escalating_a_minors_visible_case_writes_a_valid_report(relay, tmp_path):
    teen = await make_profile(tmp_path, relay.url, "tia", years_ago(15))
    adult = await make_profile(tmp_path, relay.url, "vic", years_ago(40))
    mod = await moderator(relay, tmp_path)
    async with open_clients(teen, adult, mod) as (t, v, m):
        await t.contact_request("vic")
        await v.respond("tia", accept=True)
        await send_and_wait(v, "tia", "you can tell me anything\r\nreally")
        await send_and_wait(v, "tia", "send me a photo, just for me")
        await drain(t)
        await t.report("vic", "he wants photos", last=2)
        (case,) = await m.moderation.queue("child_safety")
        assert await m.moderation.decide(case.id, "escalate", "enticement") == "escalated"
        closed = await m.moderation.case(case.id)
        assert closed.summary.status == "closed"
    root = written(relay, case.id)
    assert check(root, datetime.now(UTC)) == []
    assert [c.tag for c in root] == [
        "incidentSummary",
        "internetDetails",
        "reporter",
        "personOrUserReported",
        "victim",
        "additionalInfo",
    ]
    assert text(root, "incidentSummary/incidentType") == (
        "Online Enticement of Children for Sexual Acts"
    )
    assert root.find("incidentSummary/reportAnnotations") is None  # the subject is an adult
    content = text(root, "internetDetails/chatImIncident/content")
    assert "send me a photo, just for me" in content and "visible" in content
    assert "you can tell me anything\r\nreally" in content  # the carriage return survives
    # The operator is named whole, as the reporting company, not split into a person's name.
    assert root.find("reporter/reportingPerson/firstName") is None
    assert root.find("reporter/reportingPerson/lastName") is None
    assert text(root, "reporter/reportingPerson/email") == relay.config.reporter_email
    assert relay.config.reporter_name in text(root, "reporter/companyTemplate")
    assert text(root, "personOrUserReported/espIdentifier") == "vic"
    assert text(root, "personOrUserReported/displayName") == "Vic"
    assert text(root, "personOrUserReported/ipCaptureEvent/ipAddress") == "127.0.0.1"
    assert text(root, "personOrUserReported/ipCaptureEvent/eventName") == "Login"
    assert text(root, "victim/espIdentifier") == "tia"
    assert "13 to 15" in text(root, "victim/additionalInfo")
    # A victim is named by handle and declared age group only: no display name, no age.
    assert root.find("victim/displayName") is None
    assert "Tia" not in ET.tostring(root.find("victim"), encoding="unicode")
    assert root.find("victim/victimPerson/age") is None
    assert "not submitted" in text(root, "additionalInfo")


async def test_a_franked_e2ee_report_is_escalated_with_its_verification(relay, tmp_path):
    a = await make_profile(tmp_path, relay.url, "ana", years_ago(33))
    b = await make_profile(tmp_path, relay.url, "ben", years_ago(35))
    teen = await make_profile(tmp_path, relay.url, "tia", years_ago(14))
    mod = await moderator(relay, tmp_path, "admin")
    async with open_clients(a, b, teen, mod) as (x, y, t, m):
        await y.contact_request("ana")
        await x.respond("ben", accept=True)
        await send_and_wait(y, "ana", "an encrypted threat, for the record")
        await drain(x)
        await x.report("ben", "threats", last=1)
        await t.contact_request("ben")
        await y.respond("tia", accept=True)
        await send_and_wait(y, "tia", "don't tell your parents we talk")
        await drain(t)
        await t.report("ben", "secret", last=1)
        (case,) = await m.moderation.queue("child_safety")  # one case, moved up
        assert await m.moderation.decide(case.id, "escalate") == "escalated"
    root = written(relay, case.id)
    assert check(root, datetime.now(UTC)) == []
    content = text(root, "internetDetails/chatImIncident/content")
    assert "an encrypted threat, for the record" in content
    assert "end-to-end encrypted, reported by its recipient; franking verified" in content
    assert "don't tell your parents we talk" in content
    # The minor is the victim; the adult who reported too is not one.
    assert [text(v, "espIdentifier") for v in root.findall("victim")] == ["tia"]


async def test_a_case_with_only_adults_is_not_reportable(relay, tmp_path):
    a = await make_profile(tmp_path, relay.url, "ana", years_ago(33))
    b = await make_profile(tmp_path, relay.url, "ben", years_ago(35))
    mod = await moderator(relay, tmp_path, "admin")
    async with open_clients(a, b, mod) as (x, y, m):
        await y.contact_request("ana")
        await x.respond("ben", accept=True)
        await send_and_wait(y, "ana", "an encrypted threat, for the record")
        await drain(x)
        await x.report("ben", "threats", last=1)
        (case,) = await m.moderation.queue("general")
        assert await refused(m.moderation.decide(case.id, "escalate")) == "not_reportable"
        still = await m.moderation.case(case.id)
        assert still.summary.status == "open"  # nothing decided
    assert drafts(relay) == []  # nothing written


async def test_victims_come_only_from_what_the_relay_can_vouch_for(relay, tmp_path):
    """An unverified encrypted message is only the reporter's claim: the minor it names is
    not a victim, and a case resting on that claim alone is not reportable."""
    await make_profile(tmp_path, relay.url, "ana", years_ago(33))
    await make_profile(tmp_path, relay.url, "ben", years_ago(35))
    await make_profile(tmp_path, relay.url, "kid", years_ago(13))
    await make_profile(tmp_path, relay.url, "tia", years_ago(15))
    mod = await moderator(relay, tmp_path)
    safety = relay.app[SAFETY]
    now = datetime.now(UTC)

    def finding(recipient: str, franking: str) -> Finding:
        return Finding(
            source="user_report",
            score=0.5,
            explanation="Reported by @ana (invented for the test).",
            involves_minor=True,
            reporter="ana",
            evidence=(Evidence("ben", recipient, "e2ee", now, franking, f"to {recipient}"),),
        )

    case_id = await safety.open_or_join_case("ben", finding("kid", "unverified"))
    async with open_clients(mod) as (m,):
        assert await refused(m.moderation.decide(case_id, "escalate")) == "not_reportable"
        assert drafts(relay) == []
        assert await safety.open_or_join_case("ben", finding("tia", "verified")) == case_id
        assert await m.moderation.decide(case_id, "escalate") == "escalated"
    root = written(relay, case_id)
    assert check(root, datetime.now(UTC)) == []
    assert [text(v, "espIdentifier") for v in root.findall("victim")] == ["tia"]


async def test_a_hash_match_is_reportable_without_a_known_minor(relay, tmp_path):
    await make_profile(tmp_path, relay.url, "ben", years_ago(35))
    mod = await moderator(relay, tmp_path)
    case_id = await relay.app[SAFETY].open_or_join_case(
        "ben",
        Finding(
            source="hash_match",
            score=1.0,
            explanation="An upload matched a known hash (invented for the test).",
            involves_minor=False,
            hash_match=True,
        ),
    )
    async with open_clients(mod) as (m,):
        assert await m.moderation.decide(case_id, "escalate") == "escalated"
    root = written(relay, case_id)
    assert check(root, datetime.now(UTC)) == []
    assert text(root, "incidentSummary/incidentType") == (
        "Child Pornography (possession, manufacture, and distribution)"
    )
    assert root.find("victim") is None


async def test_a_preview_is_the_draft_escalate_writes_written_nowhere_and_audited(relay, tmp_path):
    import sqlite3

    teen = await make_profile(tmp_path, relay.url, "tia", years_ago(15))
    adult = await make_profile(tmp_path, relay.url, "vic", years_ago(40))
    other = await make_profile(tmp_path, relay.url, "ada", years_ago(30))
    mod = await moderator(relay, tmp_path)
    async with open_clients(teen, adult, other, mod) as (t, v, a, m):
        await t.contact_request("vic")
        await v.respond("tia", accept=True)
        await send_and_wait(v, "tia", "our little secret")
        await drain(t)
        await t.report("vic", "secret", last=1)
        (case,) = await m.moderation.queue("child_safety")
        document = await m.moderation.preview_escalation(case.id, "enticement")
        assert drafts(relay) == []  # nothing written
        root = ET.fromstring(document.encode())
        assert check(root, datetime.now(UTC)) == []
        assert "our little secret" in text(root, "internetDetails/chatImIncident/content")
        assert "enticement" in text(root, "additionalInfo")
        with sqlite3.connect(relay.config.database_path) as db:
            audited = db.execute(
                "SELECT actor, action, subject FROM audit WHERE action = 'preview_escalation'"
            ).fetchall()
        assert audited == [("cs_mod", "preview_escalation", f"case:{case.id}")]
        # Escalating then writes the same document (the preview was what it would write).
        assert await m.moderation.decide(case.id, "escalate", "enticement") == "escalated"
        (name,) = drafts(relay)
        written_doc = (relay.config.data_dir / "outbox" / "cybertip" / name).read_text()
        assert written_doc == document
        # A closed case or an adults-only case has nothing to preview.
        assert await refused(m.moderation.preview_escalation(case.id)) == "case_closed"
        await a.report("vic", "spam", last=0)  # adults only: a general case
        (adult_case,) = await m.moderation.queue("general")
        assert adult_case.subject == "vic"
        assert await refused(m.moderation.preview_escalation(adult_case.id)) == "not_reportable"


# --- a held attachment (the bank and pictures as in test_attachment_matching.py) ----------


@pytest_asyncio.fixture
async def banked_relay(tmp_path):
    """A relay whose data directory has a bank holding one generated picture's PDQ."""
    data_dir = tmp_path / "relay"
    banked = tmp_path / "banked.png"
    picture(1).save(banked)
    bank = banks_dir(data_dir) / "test_bank"
    bank.mkdir(parents=True)
    (bank / "pdq.txt").write_text(f"{hash_file(banked)['pdq']} synthetic-test-picture\n")
    relay = await Relay(data_dir).start()
    yield relay
    await relay.stop()


async def test_escalating_a_held_attachment_writes_its_file_details(banked_relay, tmp_path):
    relay = banked_relay
    teen = await Person("tia", years_ago(15)).register(relay)
    adult = await Person("vic", years_ago(40)).register(relay)
    out = io.BytesIO()
    picture(1).resize((480, 360)).save(out, "JPEG", quality=70)  # a copy of the banked one
    data = out.getvalue()
    async with connect(relay, teen) as t, connect(relay, adult) as v:
        await request(t, ContactRequest(rid=new_id(), to="vic"))
        await request(v, ContactRespond(rid=new_id(), handle="tia", accept=True))
        upload = tmp_path / "upload.jpg"
        upload.write_bytes(data)
        blob = new_id()
        transfer = BlobTransfer(
            relay.url, "vic", adult.sign, lambda: relay.app[RELAY_ID], relay.config.clock
        )
        await transfer.upload(blob, upload, "visible")
        ref = AttachmentRef(id=blob, size=len(data), name="beach.jpg", type="image/jpeg")
        held = Send(id=new_id(), to="tia", mode="visible", body="", attachment=ref)
        assert isinstance(await request(v, held), Accepted)  # held: answered as stored
    kept = relay.config.data_dir / "blobs" / "vic" / blob

    mod = await moderator(relay, tmp_path)
    async with open_clients(mod) as (m,):
        (case,) = await m.moderation.queue("child_safety")
        assert await m.moderation.decide(case.id, "escalate", "known material") == "escalated"

    assert drafts(relay) == [f"{case.id}-file-1.xml", f"{case.id}.xml"]
    now = datetime.now(UTC)
    report = written(relay, case.id)
    assert check(report, now) == []
    assert text(report, "incidentSummary/incidentType") == (
        "Child Pornography (possession, manufacture, and distribution)"
    )
    assert f"the relay's file {blob}, uploaded by @vic" in text(report, "additionalInfo")

    path = relay.config.data_dir / "outbox" / "cybertip" / f"{case.id}-file-1.xml"
    assert path.stat().st_mode & 0o777 == 0o600
    details = ET.fromstring(path.read_bytes())
    assert check(details, now) == []
    assert text(details, "reportId") == str(case.id)  # the case number, said so in the file
    assert text(details, "fileId") == blob
    hashes = {h.get("hashType"): h.text for h in details.findall("originalFileHash")}
    assert hashes == {
        "SHA256": hashlib.sha256(data).hexdigest(),
        "MD5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
    }
    (pdq,) = details.findall("details/nameValuePair[name='PDQ']/value")
    assert pdq.text == hash_file(kept)["pdq"]
    info = text(details, "additionalInfo")
    assert "“beach.jpg”, image/jpeg" in info  # the original name, as the evidence records it
    assert "bank test_bank, pdq distance" in info  # the match details
    assert text(details, "fileViewedByEsp") == "false"
    # The file stays in the data directory; no byte of it was copied into the outbox.
    assert kept.read_bytes() == data
    outbox = relay.config.data_dir / "outbox"
    copied = [p for p in outbox.rglob("*") if p.is_file()]
    assert sorted(p.name for p in copied) == drafts(relay)
    assert not any(data[:4096] in p.read_bytes() for p in copied)
