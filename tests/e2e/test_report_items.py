"""What a report's attached messages may claim, seen from a moderator's side against a real
relay: only the reporter's own conversation, no time outside the relay's past, each message
once (server/edge/report_items.py). Every persona and message is invented."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest_asyncio

from client.relay import RelayClient
from client.relay.outbox import new_message_id
from protocol.frames import Done, Report, ReportedMessage
from server.app_keys import SOCIAL
from server.edge.report_items import EARLIEST_SENT_AT
from server.safety.cybertip_schema import check
from tests.support import Relay, grant, make_profile, open_clients, refused, years_ago

ADULT, TEEN = years_ago(41), years_ago(15)
#: Stored times go through a float timestamp: allow its rounding.
ROUNDING = timedelta(milliseconds=1)


@pytest_asyncio.fixture
async def relay(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    yield relay
    await relay.stop()


def item(
    sender: str,
    to: str,
    text: str,
    *,
    msg_id: str | None = None,
    sent_at: datetime | None = None,
) -> ReportedMessage:
    """A message as a (possibly dishonest) reporter's client attaches it: unverified."""
    return ReportedMessage(
        id=msg_id or new_message_id(), sender=sender, to=to, text=text, sent_at=sent_at
    )


async def file_report(client: RelayClient, handle: str, *items: ReportedMessage) -> str:
    """Send a `report` frame with exactly these items; its outcome (a refusal raises)."""
    rid = new_message_id()
    frame = Report(rid=rid, handle=handle, reason="unkind messages", messages=list(items))
    answer = await client._connection.request(frame, rid)
    assert isinstance(answer, Done)
    return answer.outcome


async def test_a_message_naming_a_third_party_refuses_the_whole_report(relay, tmp_path):
    ada = await make_profile(tmp_path, relay.url, "ada", ADULT)
    await make_profile(tmp_path, relay.url, "ben", years_ago(33))
    await make_profile(tmp_path, relay.url, "cal", TEEN)
    mod = await make_profile(tmp_path, relay.url, "gen_mod", years_ago(35))
    csm = await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await grant(relay, "gen_mod", "moderator")
    await grant(relay, "cs_mod", "child_safety_moderator")
    honest = item("ben", "ada", "your garden gnome is ugly")
    fabricated = [
        item("ben", "cal", "a conversation ada was never part of"),  # reported -> third party
        item("cal", "ben", "a reply ada never saw"),  # third party -> reported
        item("cal", "ada", "ada and cal, nothing to do with ben"),  # third party -> reporter
        item("ada", "cal", "the other way round"),
        item("ben", "ben", "ben to himself"),
        item("ada", "ada", "ada to herself"),
    ]
    async with open_clients(ada, mod, csm) as (a, m, c):
        for bad in fabricated:
            for items in ((bad,), (honest, bad), (bad, honest)):
                assert await refused(file_report(a, "ben", *items)) == "report_item_foreign"
        # Nothing was filed: no case in any queue, no stored report, cal named nowhere.
        assert {q.name: q.pending for q in await c.moderation.queues()} == {
            "child_safety": 0,
            "general": 0,
        }
        assert await m.moderation.queue("general") == []
        assert await relay.app[SOCIAL].social.reports() == []
        # Both directions of the reporter's own conversation are fine.
        assert await file_report(a, "ben", honest, item("ada", "ben", "please stop")) == (
            "reported"
        )
        (case,) = await m.moderation.queue("general")
        view = await m.moderation.case(case.id)
        assert [(e.sender, e.recipient) for e in view.evidence] == [
            ("ben", "ada"),
            ("ada", "ben"),
        ]
        assert all(e.franking == "unverified" for e in view.evidence)


async def test_a_future_sent_at_is_filed_as_the_relays_now(relay, tmp_path):
    ada = await make_profile(tmp_path, relay.url, "ada", ADULT)
    await make_profile(tmp_path, relay.url, "ben", years_ago(33))
    mod = await make_profile(tmp_path, relay.url, "gen_mod", years_ago(35))
    await grant(relay, "gen_mod", "moderator")
    past = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    async with open_clients(ada, mod) as (a, m):
        before = datetime.now(UTC)
        await file_report(
            a,
            "ben",
            item("ben", "ada", "see you at the picnic", sent_at=before + timedelta(days=400)),
            item("ben", "ada", "bring the lemonade", sent_at=before + timedelta(seconds=30)),
            item("ben", "ada", "an old message", sent_at=past),
            item("ada", "ben", "no time given"),
        )
        after = datetime.now(UTC)
        (case,) = await m.moderation.queue("general")
        view = await m.moderation.case(case.id)
        revealed = await m.moderation.reveal(case.id)
    seen_times = [e.sent_at for e in view.evidence]
    assert seen_times == [r.sent_at for r in revealed]
    assert [r.text for r in revealed] == [
        "see you at the picnic",
        "bring the lemonade",
        "an old message",
        "no time given",
    ]
    for when in seen_times[:2] + seen_times[3:]:  # clamped, clamped, left out (filed "now")
        assert before - ROUNDING <= when <= after + ROUNDING
    assert abs(seen_times[2] - past) < ROUNDING  # a past time is kept as claimed
    assert all(when <= datetime.now(UTC) for when in seen_times)


async def test_a_time_before_the_epoch_is_raised_and_the_case_stays_readable(relay, tmp_path):
    ada = await make_profile(tmp_path, relay.url, "ada", ADULT)
    await make_profile(tmp_path, relay.url, "ben", years_ago(33))
    mod = await make_profile(tmp_path, relay.url, "gen_mod", years_ago(35))
    await grant(relay, "gen_mod", "moderator")
    # Year 1 at +23:00 is still year 0 in UTC: stored as is, no read of the case would work.
    ancient = datetime.fromisoformat("0001-01-01T00:00:00+23:00")
    async with open_clients(ada, mod) as (a, m):
        await file_report(a, "ben", item("ben", "ada", "a very old note", sent_at=ancient))
        (case,) = await m.moderation.queue("general")
        view = await m.moderation.case(case.id)
        (revealed,) = await m.moderation.reveal(case.id)
    assert [e.sent_at for e in view.evidence] == [EARLIEST_SENT_AT]
    assert revealed.sent_at == EARLIEST_SENT_AT and revealed.text == "a very old note"


async def test_a_message_attached_twice_is_one_piece_of_evidence(relay, tmp_path):
    ada = await make_profile(tmp_path, relay.url, "ada", ADULT)
    await make_profile(tmp_path, relay.url, "ben", years_ago(33))
    mod = await make_profile(tmp_path, relay.url, "gen_mod", years_ago(35))
    await grant(relay, "gen_mod", "moderator")
    async with open_clients(ada, mod) as (a, m):
        await file_report(
            a,
            "ben",
            item("ben", "ada", "first copy", msg_id="msg-dup-0001"),
            item("ben", "ada", "second copy, altered", msg_id="msg-dup-0001"),
            item("ben", "ada", "another message", msg_id="msg-other-0002"),
            item("ben", "ada", "first copy", msg_id="msg-dup-0001"),
            # The same id from the other sender is another message (ids are per sender).
            item("ada", "ben", "my own message", msg_id="msg-dup-0001"),
        )
        (case,) = await m.moderation.queue("general")
        view = await m.moderation.case(case.id)
        revealed = await m.moderation.reveal(case.id)
    assert len(view.evidence) == 3
    assert [(r.sender, r.text) for r in revealed] == [
        ("ben", "first copy"),
        ("ben", "another message"),
        ("ada", "my own message"),
    ]
    assert "3 messages attached" in view.findings[0].explanation


async def test_a_minors_report_with_a_future_time_can_still_be_escalated(relay, tmp_path):
    tia = await make_profile(tmp_path, relay.url, "tia", TEEN)
    await make_profile(tmp_path, relay.url, "vic", years_ago(40))
    csm = await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await grant(relay, "cs_mod", "child_safety_moderator")
    async with open_clients(tia, csm) as (t, c):
        future = datetime.now(UTC) + timedelta(days=30)
        await file_report(t, "vic", item("vic", "tia", "let's keep this a secret", sent_at=future))
        (case,) = await c.moderation.queue("child_safety")
        document = await c.moderation.preview_escalation(case.id, "asked for secrecy")
    root = ET.fromstring(document)
    assert check(root, datetime.now(UTC)) == []
    incident = root.findtext("incidentSummary/incidentDateTime")
    assert incident is not None
    assert datetime.fromisoformat(incident.replace("Z", "+00:00")) <= datetime.now(UTC)
