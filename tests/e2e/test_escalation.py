"""Escalating a case drafts a CyberTipline report in the outbox, never sent, that follows the
schema's rules (issue 12, first piece). Personas and messages are invented."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest_asyncio

from server.admin.roles import change_role
from server.app_keys import SAFETY
from server.safety.cybertip_schema import check
from tests.support import Relay, drain, make_profile, open_clients, send_and_wait, years_ago


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


def written(relay: Relay, case_id: int) -> ET.Element:
    path = relay.config.data_dir / "outbox" / "cybertip" / f"{case_id}.xml"
    assert path.stat().st_mode & 0o077 == 0  # owner-only
    return ET.parse(path).getroot()


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
        await send_and_wait(v, "tia", "you can tell me anything")
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
    content = text(root, "internetDetails/chatImIncident/content")
    assert "send me a photo, just for me" in content and "visible" in content
    assert text(root, "personOrUserReported/espIdentifier") == "vic"
    assert text(root, "personOrUserReported/ipCaptureEvent/ipAddress") == "127.0.0.1"
    assert text(root, "personOrUserReported/ipCaptureEvent/eventName") == "Login"
    assert text(root, "victim/espIdentifier") == "tia"
    assert "13 to 15" in text(root, "victim/additionalInfo")
    assert root.find("victim/victimPerson/age") is None  # never more than the platform knows
    assert "not submitted" in text(root, "additionalInfo")


async def test_a_franked_e2ee_report_is_escalated_with_its_verification(relay, tmp_path):
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
        await m.moderation.decide(case.id, "escalate")
    root = written(relay, case.id)
    assert check(root, datetime.now(UTC)) == []
    content = text(root, "internetDetails/chatImIncident/content")
    assert "an encrypted threat, for the record" in content
    assert "end-to-end encrypted, reported by its recipient; franking verified" in content
    assert root.find("victim") is None  # no minor involved
