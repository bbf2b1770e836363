"""What the review of issue 11 found, each pinned against a real relay through the client
library: who may lift a decision, routing that only moves up, messages held when an account
is restricted or suspended, notes that stay internal, cases a moderator must not decide,
decisions on closed cases, audit entries anyone can check against the signed request, and
failures answered instead of timing out. Personas and messages are invented."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
import pytest_asyncio

from protocol import identity
from protocol.moderation import ModDecide, ModReveal, request_message
from server.admin.roles import change_role
from server.app_keys import SAFETY
from tests.support import (
    Relay,
    connect,
    drain,
    make_profile,
    open_client,
    open_clients,
    refused,
    send_and_wait,
    years_ago,
)

ADULT, TEEN = years_ago(41), years_ago(15)
on_module_loop = pytest.mark.asyncio(loop_scope="module")
pytestmark = on_module_loop


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory):
    """One relay for the module; each test uses its own personas. Moderators: gmod (plain),
    gmod2 (plain), csmod (child safety), boss (admin)."""
    base = tmp_path_factory.mktemp("review")
    relay = await Relay(base / "relay").start()
    mods = {}
    for handle, role in (
        ("gmod", "moderator"),
        ("gmod2", "moderator"),
        ("csmod", "child_safety_moderator"),
        ("boss", "admin"),
    ):
        mods[handle] = await make_profile(base, relay.url, handle, years_ago(36))
        await change_role(relay.config.data_dir, handle, role, grant=True)
    await relay.app[SAFETY].load()
    yield relay, base, mods
    await relay.stop()


async def people(world, *spec: tuple[str, object]):
    relay, base, _ = world
    return [await make_profile(base, relay.url, h, born) for h, born in spec]


def rows(relay: Relay, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(relay.config.database_path) as db:
        return db.execute(sql, params).fetchall()


def case_of(relay: Relay, subject: str) -> tuple[int, str, str | None]:
    """The subject's open case: (id, queue, assignee)."""
    ((case_id, queue, assignee),) = rows(
        relay,
        "SELECT id, queue, assignee FROM cases WHERE subject = ? AND status = 'open'",
        (subject,),
    )
    return case_id, queue, assignee


async def test_a_general_moderator_cannot_lift_a_child_safety_restriction(world):
    relay, _, mods = world
    teen, vic, ada = await people(world, ("rt_tia", TEEN), ("rt_vic", ADULT), ("rt_ada", ADULT))
    async with open_clients(teen, vic, ada, mods["gmod"], mods["csmod"]) as (t, _v, a, gm, csm):
        await t.report("rt_vic", "asks where I live", last=0)
        child_case, queue, _ = case_of(relay, "rt_vic")
        assert queue == "child_safety"
        await csm.moderation.decide(child_case, "restrict", "grooming signs")
        # A later report by an adult opens a general case the plain moderator can see...
        await a.report("rt_vic", "rude", last=0)
        general_case, queue, _ = case_of(relay, "rt_vic")
        assert queue == "general"
        # ...but reinstating from it would undo the child-safety decision: refused.
        assert await refused(gm.moderation.decide(general_case, "reinstate")) == "forbidden"
        # Restricting again from the general case doesn't hand the flag to general either.
        await gm.moderation.decide(general_case, "restrict", "rude again")
        assert await refused(gm.moderation.decide(general_case, "reinstate")) == "forbidden"
        assert relay.app[SAFETY].social.is_restricted("rt_vic")
        # The child-safety moderator may, once; then there is nothing left to lift.
        assert await csm.moderation.decide(child_case, "reinstate") == "reinstated"
        assert not relay.app[SAFETY].social.is_restricted("rt_vic")
        assert await refused(csm.moderation.decide(child_case, "reinstate")) == "nothing_to_lift"


async def test_concurrent_findings_never_move_a_case_down_and_a_move_up_releases_it(world):
    relay, _, mods = world
    subject, teen, *adults = await people(
        world, ("rc_sam", ADULT), ("rc_tia", TEEN), *((f"rc_ad{i}", ADULT) for i in range(6))
    )
    async with open_clients(subject, teen, *adults, mods["gmod"]) as (_s, t, *a, gm):
        await a[0].report("rc_sam", "spam", last=0)
        taken = await gm.moderation.next_case("general")
        assert taken.summary.subject == "rc_sam" and taken.summary.assignee == "gmod"
        # Adults' reports (general) race a minor's (child safety): the case ends up in
        # child safety whatever the order, and out of the plain moderator's hands.
        await asyncio.gather(
            *(x.report("rc_sam", f"spam {i}", last=0) for i, x in enumerate(a[1:])),
            t.report("rc_sam", "he keeps writing to me", last=0),
        )
        case_id, queue, assignee = case_of(relay, "rc_sam")
        assert (case_id, queue, assignee) == (taken.summary.id, "child_safety", None)
        assert await refused(gm.moderation.case(case_id)) == "forbidden"
        assert all(c.subject != "rc_sam" for c in await gm.moderation.queue("general"))


async def test_a_restriction_holds_queued_messages_to_minors_as_evidence(world):
    relay, _, mods = world
    teen, other_teen, vic = await people(
        world, ("rh_tia", TEEN), ("rh_tom", TEEN), ("rh_vic", ADULT)
    )
    async with open_clients(teen, vic) as (t, v):
        await connect(t, v)
    async with open_clients(vic, other_teen, mods["csmod"]) as (v, o, csm):
        await connect(o, v)
        # tia is offline: both messages wait in the relay for her.
        await send_and_wait(v, "rh_tia", "are you home alone")
        await send_and_wait(v, "rh_tia", "don't tell anyone")
        await o.report("rh_vic", "creepy questions", last=0)
        case_id, _, _ = case_of(relay, "rh_vic")
        await csm.moderation.decide(case_id, "restrict", "held messages test")
        view = await csm.moderation.case(case_id)
        (held,) = [f for f in view.findings if f.source == "held_messages"]
        assert held.involves_minor and "2 undelivered visible messages held" in held.explanation
        items = await csm.moderation.reveal(case_id)
        assert [i.text for i in items] == ["are you home alone", "don't tell anyone"]
        assert {(i.sender, i.recipient, i.franking) for i in items} == {
            ("rh_vic", "rh_tia", "verified")
        }
    async with open_clients(teen) as (t,):
        got = await drain(t)
        # Told of the restriction (and, since signals read the held lines when they were
        # stored, perhaps warned about them), never shown the messages themselves.
        assert "contact_restricted" in [e.message.code for e in got]
        assert all(e.message.kind != "message" for e in got)


async def test_a_suspension_withdraws_everything_the_account_had_queued(world):
    relay, _, mods = world
    amy, bob, cat = await people(world, ("rs_amy", ADULT), ("rs_bob", ADULT), ("rs_cat", ADULT))
    async with open_clients(amy, bob) as (a, b):
        await connect(a, b)
    async with open_clients(bob, cat, mods["boss"]) as (b, c, boss):
        await send_and_wait(b, "rs_amy", "buy my coins")  # e2ee between adults
        await c.report("rs_bob", "spam", last=0)
        case_id, _, _ = case_of(relay, "rs_bob")
        await boss.moderation.decide(case_id, "suspend", "spam ring")
        view = await boss.moderation.case(case_id)
        (held,) = [f for f in view.findings if f.source == "held_messages"]
        assert "1 end-to-end encrypted message withdrawn unread" in held.explanation
        assert not held.involves_minor
    async with open_clients(amy) as (a,):
        assert [e for e in await drain(a) if e.message.sender == "rs_bob"] == []


async def test_the_moderators_note_stays_internal(world):
    relay, _, mods = world
    teen, vic, zed = await people(world, ("rn_tia", TEEN), ("rn_vic", ADULT), ("rn_zed", ADULT))
    async with open_clients(teen, vic, zed, mods["csmod"], mods["gmod"]) as (t, v, z, csm, gm):
        await z.report("rn_vic", "odd", last=0)
        case_id, _, _ = case_of(relay, "rn_vic")
        await gm.moderation.decide(case_id, "warn", "INTERNAL suspect alt of rn_old")
        await t.report("rn_vic", "odd to me too", last=0)
        case_id, _, _ = case_of(relay, "rn_vic")
        await csm.moderation.decide(case_id, "restrict", "INTERNAL matches pattern 7")
        told = [e.message for e in await drain(v) if e.message.sender == "agechat"]
        assert [m.code for m in told] == ["moderator_warning", "moderator_restricted"]
        assert all("INTERNAL" not in m.body for m in told)
        view = await csm.moderation.case(case_id)
        assert [d.note for d in view.decisions] == ["INTERNAL matches pattern 7"]


async def test_nobody_sees_or_decides_cases_about_themselves_their_peers_or_their_reports(world):
    relay, _, mods = world
    (xan,) = await people(world, ("rp_xan", ADULT))
    moderators = (mods[h] for h in ("gmod", "gmod2", "boss"))
    async with open_clients(xan, *moderators) as (x, gm, gm2, boss):
        await x.report("gmod", "rude moderator", last=0)
        about_gm, _, _ = case_of(relay, "gmod")
        # gm doesn't see the case about them, not even as a count.
        assert all(c.id != about_gm for c in await gm.moderation.queue("general"))
        pending = {q.name: q.pending for q in await gm.moderation.queues()}
        assert pending["general"] == len(await gm.moderation.queue("general"))
        # A peer can read it but not decide it; an admin can.
        await gm2.moderation.case(about_gm)
        assert await refused(gm2.moderation.decide(about_gm, "warn")) == "forbidden"
        # A moderator's own report is decided by someone else.
        await gm.report("rp_xan", "spam", last=0)
        about_xan, _, _ = case_of(relay, "rp_xan")
        assert await refused(gm.moderation.decide(about_xan, "dismiss")) == "forbidden"
        assert await gm2.moderation.decide(about_xan, "dismiss") == "dismissed"
        assert await boss.moderation.decide(about_gm, "dismiss") == "dismissed"


async def test_a_closed_case_takes_no_decision_but_reinstate(world):
    relay, _, mods = world
    yan, zoe = await people(world, ("rk_yan", ADULT), ("rk_zoe", ADULT))
    async with open_clients(yan, zoe, mods["gmod"]) as (y, _z, gm):
        await y.report("rk_zoe", "spam", last=0)
        case_id, _, _ = case_of(relay, "rk_zoe")
        await gm.moderation.decide(case_id, "suspend", "spam")
        for action in ("dismiss", "warn", "suspend", "restrict"):
            assert await refused(gm.moderation.decide(case_id, action)) == "case_closed"
        assert await gm.moderation.decide(case_id, "reinstate") == "reinstated"
        decisions = rows(relay, "SELECT action FROM decisions WHERE case_id = ?", (case_id,))
        assert [a for (a,) in decisions] == ["suspend", "reinstate"]


async def test_every_audited_decision_and_reveal_verifies_against_the_moderators_key(world):
    relay, _, mods = world
    yan, zoe = await people(world, ("ra_yan", ADULT), ("ra_zoe", ADULT))
    async with open_clients(yan, zoe, mods["gmod"]) as (y, _z, gm):
        await y.report("ra_zoe", "spam", last=0)
        case_id, _, _ = case_of(relay, "ra_zoe")
        await gm.moderation.reveal(case_id)
        await gm.moderation.decide(case_id, "warn", "first warning ✓")
    (key,) = rows(relay, "SELECT identity_key FROM accounts WHERE handle = 'gmod'")[0]
    entries = rows(
        relay,
        "SELECT action, detail FROM audit WHERE actor = 'gmod' AND action IN "
        "('reveal', 'decide:warn') ORDER BY id",
    )
    checked = []
    for action, text in entries:
        detail = json.loads(text)
        if detail.get("case") != case_id:
            continue
        signature = bytes.fromhex(detail["signature"])
        if action == "reveal":
            frame = ModReveal(rid=detail["rid"], case_id=case_id, signature=signature)
        else:
            frame = ModDecide(
                rid=detail["rid"],
                case_id=case_id,
                action=detail["action"],
                note=detail["note"],
                signature=signature,
            )
        message = request_message(detail["relay_id"], bytes.fromhex(detail["nonce"]), "gmod", frame)
        assert identity.verify(key, message, signature)
        # The same entry with another note no longer verifies.
        if action != "reveal":
            forged = ModDecide(
                rid=detail["rid"], case_id=case_id, action="warn", note="x", signature=signature
            )
            assert not identity.verify(
                key,
                request_message(detail["relay_id"], bytes.fromhex(detail["nonce"]), "gmod", forged),
                signature,
            )
        checked.append(action)
    assert checked == ["reveal", "decide:warn"]


async def test_a_failed_decision_is_answered_and_leaves_the_case_as_it_was(world):
    relay, _, mods = world
    teen, vic = await people(world, ("rf_tia", TEEN), ("rf_vic", ADULT))
    outbox = relay.config.data_dir / "outbox"
    async with open_clients(teen, vic, mods["csmod"]) as (t, v, csm):
        await connect(t, v)
        await send_and_wait(v, "rf_tia", "our secret")
        await drain(t)
        await t.report("rf_vic", "secret", last=1)
        case_id, _, _ = case_of(relay, "rf_vic")
        existed = outbox.exists()
        if existed:
            outbox.rename(outbox.with_name("outbox.moved"))
        outbox.write_text("not a directory")  # the draft can't be written
        try:
            code = await asyncio.wait_for(
                refused(csm.moderation.decide(case_id, "escalate", "report it")), 5
            )
        finally:
            outbox.unlink()
            if existed:
                outbox.with_name("outbox.moved").rename(outbox)
        assert code == "internal_error"
        assert case_of(relay, "rf_vic")[0] == case_id  # still open
        assert rows(relay, "SELECT * FROM decisions WHERE case_id = ?", (case_id,)) == []
        assert await csm.moderation.decide(case_id, "dismiss") == "dismissed"


async def test_a_revoked_role_releases_the_moderators_case(world):
    relay, _, _ = world
    yan, zoe, tmp_mod = await people(world, ("rr_yan", ADULT), ("rr_zoe", ADULT), ("rr_mod", ADULT))
    await change_role(relay.config.data_dir, "rr_mod", "moderator", grant=True)
    await relay.app[SAFETY].load()
    async with open_clients(yan, zoe, tmp_mod) as (y, _z, m):
        await y.report("rr_zoe", "spam", last=0)
        taken = await m.moderation.next_case("general")
        assert case_of(relay, "rr_zoe") == (taken.summary.id, "general", "rr_mod")
        await change_role(relay.config.data_dir, "rr_mod", "moderator", grant=False)
        await relay.app[SAFETY].load()
        assert case_of(relay, "rr_zoe") == (taken.summary.id, "general", None)
        assert await refused(m.moderation.queues()) == "forbidden"


async def test_a_suspended_account_cannot_sign_in(world):
    """The suspension itself still works after the reordering (flags written first)."""
    relay, _, mods = world
    yan, zoe = await people(world, ("rz_yan", ADULT), ("rz_zoe", ADULT))
    async with open_clients(yan, mods["gmod"]) as (y, gm):
        await y.report("rz_zoe", "spam", last=0)
        case_id, _, _ = case_of(relay, "rz_zoe")
        await gm.moderation.decide(case_id, "suspend", "spam")
    async with open_client(zoe, reconnect=False) as z:
        assert await refused(z.wait_connected(3)) == "account_suspended"


async def test_the_reporters_own_encrypted_messages_are_filed_as_encrypted(world):
    """They carry no franking evidence (only received messages do), yet they travelled
    end-to-end encrypted: the case must not show them as visible text the relay held."""
    relay, _, mods = world
    amy, bob = await people(world, ("re_amy", ADULT), ("re_bob", ADULT))
    async with open_clients(amy, bob, mods["gmod"]) as (a, b, gm):
        await connect(a, b)
        await send_and_wait(b, "re_amy", "rude words")
        await drain(a)
        await send_and_wait(a, "re_bob", "please stop")
        await drain(b)
        await a.report("re_bob", "rude", last=2)
        case_id, _, _ = case_of(relay, "re_bob")
        view = await gm.moderation.case(case_id)
        assert sorted((e.sender, e.mode, e.franking) for e in view.evidence) == [
            ("re_amy", "e2ee", "unverified"),
            ("re_bob", "e2ee", "verified"),
        ]
