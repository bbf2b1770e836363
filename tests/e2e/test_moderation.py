"""Cases, queues, roles, reveal and decisions against a real relay, through the client
library (issue 11). Every persona and message is invented."""

from __future__ import annotations

import asyncio
import sqlite3

from client.errors import ClientError
from server.admin.roles import change_role
from server.app_keys import SIGNALS
from tests.e2e.test_e2ee import connect  # the first asks, the second accepts
from tests.support import (
    Relay,
    drain,
    grant,
    make_profile,
    open_client,
    open_clients,
    refused,
    send_and_wait,
    years_ago,
)

ADULT, TEEN = years_ago(41), years_ago(15)


def audit_rows(relay: Relay) -> list[tuple[str, str, str]]:
    with sqlite3.connect(relay.config.database_path) as db:
        return db.execute("SELECT actor, action, subject FROM audit ORDER BY id").fetchall()


async def test_a_minors_report_becomes_a_child_safety_case_a_moderator_acts_on(relay, tmp_path):
    teen = await make_profile(tmp_path, relay.url, "tia", TEEN)
    adult = await make_profile(tmp_path, relay.url, "vic", ADULT)
    mod = await make_profile(tmp_path, relay.url, "gen_mod", years_ago(35))
    csm = await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await grant(relay, "gen_mod", "moderator")
    await grant(relay, "cs_mod", "child_safety_moderator")
    async with open_clients(teen, adult, mod, csm) as (t, v, m, c):
        await connect(t, v)
        await send_and_wait(v, "tia", "you seem mature for your age")
        await send_and_wait(v, "tia", "don't tell your parents we talk")
        await drain(t)
        await t.report("vic", "he asks me to keep secrets", last=2)
        await t.report("vic", "still messaging", last=1)
        # Her report is also pushback the grooming signals count (docs/SIGNALS.md): with
        # the flattery and the secrecy, it crosses the finding threshold.
        await relay.app[SIGNALS].drain()

        # The child-safety moderator sees one case with both reports and their messages,
        # and the signals' finding beside them.
        queues = {q.name: q for q in await c.moderation.queues()}
        assert queues["child_safety"].pending == 1
        (summary,) = await c.moderation.queue("child_safety")
        assert (summary.subject, summary.findings) == ("vic", 3)
        assert sorted(summary.sources) == ["signals", "user_report"]
        case = await c.moderation.case(summary.id)
        assert case.subject.band == "adult" and case.subject.minor_contacts == 1
        reports = [f for f in case.findings if f.source == "user_report"]
        assert len(reports) == 2
        assert all(f.involves_minor and f.reporter == "tia" for f in reports)
        (signals,) = [f for f in case.findings if f.source == "signals"]
        assert "pushback_here" in signals.explanation and "secrecy" in signals.explanation
        assert [e.sender for e in case.evidence] == ["vic", "vic", "vic"]
        assert "keep secrets" in reports[0].explanation

        # A general moderator can't see the child-safety queue or its case.
        assert [q.name for q in await m.moderation.queues()] == ["general"]
        assert await refused(m.moderation.queue("child_safety")) == "forbidden"
        assert await refused(m.moderation.case(summary.id)) == "forbidden"
        # Nobody without a role gets anything.
        assert await refused(t.moderation.queues()) == "forbidden"

        # Content is hidden until revealed; the reveal is audited.
        assert all(not hasattr(e, "text") and e.chars > 0 for e in case.evidence)
        items = await c.moderation.reveal(summary.id)
        assert [i.text for i in items] == [
            "you seem mature for your age",
            "don't tell your parents we talk",
            "don't tell your parents we talk",
        ]
        assert ("cs_mod", "reveal", f"case:{summary.id}") in audit_rows(relay)

        # Restrict: vic's next message to tia fails and tia is told.
        assert await c.moderation.decide(summary.id, "restrict", "grooming signs") == "restricted"
        assert await refused(send_and_wait(v, "tia", "hello?")) == "sender_restricted"
        assert "contact_restricted" in [e.message.code for e in await drain(t)]
        assert ("cs_mod", "decide:restrict", "vic") in audit_rows(relay)
        closed = await c.moderation.case(summary.id)
        assert closed.summary.status == "closed"
        assert [(d.moderator, d.action) for d in closed.decisions] == [("cs_mod", "restrict")]


async def test_suspension_refuses_login_until_reinstated(relay, tmp_path):
    a = await make_profile(tmp_path, relay.url, "amy", ADULT)
    b = await make_profile(tmp_path, relay.url, "bob", years_ago(30))
    admin = await make_profile(tmp_path, relay.url, "root_mod", years_ago(50))
    await grant(relay, "root_mod", "admin")
    async with open_clients(a, b, admin) as (x, y, boss):
        await y.contact_request("amy")
        await x.respond("bob", accept=True)
        await send_and_wait(y, "amy", "buy my stuff")
        await drain(x), await drain(y)
        await x.report("bob", "spam", last=1)
        (case,) = await boss.moderation.queue("general")
        await boss.moderation.decide(case.id, "suspend", "spam")
        for i in range(3):
            await send_and_wait(x, "bob", f"are you there {i}")
        await asyncio.sleep(0.3)
        assert not y.is_connected
    async with open_client(b, reconnect=False) as y:
        assert await refused(y.wait_connected(3)) == "account_suspended"
    async with open_clients(admin) as (boss,):
        assert await boss.moderation.decide(case.id, "reinstate", "appeal ok") == "reinstated"
    async with open_clients(b) as (y,):
        texts = [e.message.body for e in await drain(y) if e.message.kind == "message"]
        assert texts == ["are you there 0", "are you there 1", "are you there 2"]


async def test_reports_join_one_open_case_and_a_minor_lifts_it_into_child_safety(relay, tmp_path):
    adult1 = await make_profile(tmp_path, relay.url, "ada", ADULT)
    adult2 = await make_profile(tmp_path, relay.url, "ben", years_ago(33))
    teen = await make_profile(tmp_path, relay.url, "tom", TEEN)
    csm = await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await grant(relay, "cs_mod", "child_safety_moderator")
    async with open_clients(adult1, adult2, teen, csm) as (a, _b, t, c):
        await a.report("ben", "rude", last=0)
        assert [q.pending for q in await c.moderation.queues()] == [0, 1]  # general
        await t.report("ben", "rude to me too", last=0)
        queues = {q.name: q.pending for q in await c.moderation.queues()}
        assert queues == {"child_safety": 1, "general": 0}
        (case,) = await c.moderation.queue("child_safety")
        assert case.findings == 2
        # One case per moderator at a time: next gives the same case until decided.
        first = await c.moderation.next_case("child_safety")
        assert first.summary.id == case.id and first.summary.assignee == "cs_mod"
        again = await c.moderation.next_case("child_safety")
        assert again.summary.id == case.id
        await c.moderation.decide(case.id, "dismiss", "no evidence")
        assert await refused(c.moderation.next_case("child_safety")) == "queue_empty"
        overview = await c.moderation.overview()
        assert [(d.moderator, d.action, d.count) for d in overview.decisions] == [
            ("cs_mod", "dismiss", 1)
        ]
        assert overview.median_seconds_to_decision is not None


async def test_a_role_granted_on_the_relay_host_works_without_a_restart(relay, tmp_path):
    mod = await make_profile(tmp_path, relay.url, "newmod", ADULT)
    async with open_clients(mod) as (m,):
        assert await refused(m.moderation.queues()) == "forbidden"
        await change_role(relay.config.data_dir, "newmod", "moderator", grant=True)
        for _ in range(40):  # the relay polls meta.generation once a second
            try:
                queues = await m.moderation.queues()
                break
            except ClientError:
                await asyncio.sleep(0.1)
        assert [q.name for q in queues] == ["general"]
    assert ("admin", "grant_role", "newmod") in audit_rows(relay)


async def test_a_forged_or_replayed_moderation_request_is_refused(relay, tmp_path):
    from protocol.moderation import PLACEHOLDER_SIGNATURE, ModQueues

    mod = await make_profile(tmp_path, relay.url, "newmod", ADULT)
    await grant(relay, "newmod", "moderator")
    async with open_clients(mod) as (m,):
        connection = m._connection
        unsigned = ModQueues(rid="forged-rid-1", signature=PLACEHOLDER_SIGNATURE)
        assert await refused(connection.request(unsigned, unsigned.rid)) == "bad_signature"
        frame = ModQueues(rid="replay-rid-1", signature=PLACEHOLDER_SIGNATURE)
        await connection.signed_request(frame)
        assert await refused(connection.signed_request(frame)) == "replayed_request"


async def test_nobody_reviews_their_own_case_and_hidden_queues_stay_hidden(relay, tmp_path):
    mod = await make_profile(tmp_path, relay.url, "gen_mod", ADULT)
    other = await make_profile(tmp_path, relay.url, "other_mod", years_ago(36))
    teen = await make_profile(tmp_path, relay.url, "tom", TEEN)
    adult = await make_profile(tmp_path, relay.url, "ada", years_ago(30))
    await grant(relay, "gen_mod", "moderator")
    await grant(relay, "other_mod", "child_safety_moderator")
    async with open_clients(mod, other, teen, adult) as (m, o, t, a):
        # A child-safety case about gen_mod, decided, then a general one.
        await t.report("gen_mod", "weird", last=0)
        (first,) = await o.moderation.queue("child_safety")
        await o.moderation.decide(first.id, "dismiss", "nothing there")
        await a.report("gen_mod", "rude", last=0)
        (case,) = await o.moderation.queue("general")
        # gen_mod can't open, take or decide the case about themselves.
        assert await refused(m.moderation.case(case.id)) == "forbidden"
        assert await refused(m.moderation.decide(case.id, "dismiss")) == "forbidden"
        assert await refused(m.moderation.next_case("general")) == "queue_empty"
        # The other moderator sees the earlier child-safety case as prior; a general-only
        # moderator's overview doesn't count decisions on child-safety cases.
        view = await o.moderation.case(case.id)
        assert [p.id for p in view.prior_cases] == [first.id]
        assert (await m.moderation.overview()).decisions == []


async def test_refusals_towards_minors_and_restriction_open_one_case(relay, tmp_path):
    stranger = await make_profile(tmp_path, relay.url, "stan", ADULT)
    kids = [await make_profile(tmp_path, relay.url, f"kid{i}", TEEN) for i in range(5)]
    csm = await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await grant(relay, "cs_mod", "child_safety_moderator")
    async with open_clients(stranger, csm) as (s, c):
        for kid in kids[:3]:  # default.toml: moderation.refusals_to_minors_finding = 3
            assert await refused(s.contact_request(kid.handle)) == "contact_not_allowed"
        (case,) = await c.moderation.queue("child_safety")
        assert (case.subject, case.sources) == ("stan", ["refusals_to_minors"])
        for kid in kids[3:]:  # five refusals: restricted, and the case gets that finding
            assert await refused(s.contact_request(kid.handle)) == "contact_not_allowed"
        (case,) = await c.moderation.queue("child_safety")
        assert case.sources == ["refusals_to_minors", "restriction"]
        view = await c.moderation.case(case.id)
        assert view.subject.restricted
