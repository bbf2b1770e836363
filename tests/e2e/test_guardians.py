"""Guardian links through a real relay and the real client library (issue 16): under
`strict` a linked parent and teen message each other and an unlinked adult still can't; a
guardian's view lists the ward's contacts and never a message (also as `agechat guardian
list --json`); a new adult contact waits for the guardian and the teen sees that it does;
unlinking from either side takes effect at once and is audited; the moderator's case view
of a ward shows the link, views and approvals.

One relay per policy for the module: each test uses its own people.
"""

from __future__ import annotations

import json

import msgspec
import pytest
import pytest_asyncio

from protocol.frames import RELAY_HANDLE
from server.app_keys import SAFETY
from server.policy.loader import PRESETS_DIR
from tests.e2e.test_cli import agechat
from tests.support import (
    PASSPHRASE,
    Relay,
    drain,
    grant,
    make_profile,
    open_clients,
    refused,
    send_and_wait,
    years_ago,
)

ADULT, TEEN14, TEEN15 = years_ago(40), years_ago(14), years_ago(15, days=40)
SECRET = "meet me behind the gym, bring the PLAN-7731"

on_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def strict(tmp_path_factory):
    base = tmp_path_factory.mktemp("strict")
    relay = await Relay(base / "relay", policy="strict").start()
    yield relay, base
    await relay.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def supervised(tmp_path_factory):
    """`default` with `guardians.approvals = "adults_only"`: a teen may ask an adult to
    connect, and the new contact waits for her guardian."""
    base = tmp_path_factory.mktemp("approvals")
    text = (PRESETS_DIR / "default.toml").read_text()
    assert 'approvals = "never"' in text
    policy = base / "supervised.toml"
    policy.write_text(text.replace('approvals = "never"', 'approvals = "adults_only"'))
    relay = await Relay(base / "relay", policy=str(policy)).start()
    yield relay, base
    await relay.stop()


def codes(events) -> list[str]:
    return [e.message.code for e in events if e.message.sender == RELAY_HANDLE]


async def link(ward, guardian) -> None:
    """The teen invites, the parent accepts (under `strict` only the teen may start it)."""
    assert await ward.guardians.invite(guardian.handle) == "invited"
    assert await guardian.guardians.accept(ward.handle) == "linked"


@on_module_loop
async def test_under_strict_a_linked_parent_and_teen_message_each_other(strict):
    relay, base = strict
    people = [
        await make_profile(base, relay.url, "mum", ADULT),
        await make_profile(base, relay.url, "tia", TEEN14),
        await make_profile(base, relay.url, "rex", ADULT),
    ]
    async with open_clients(*people) as (mum, tia, rex):
        assert await refused(send_and_wait(tia, "mum", "hi mum")) == "contact_not_allowed"
        # The adult can't start it under `strict`; the teen can.
        assert await refused(mum.guardians.invite("tia")) == "contact_not_allowed"
        await link(tia, mum)
        assert "guardian_linked" in codes(await drain(tia))
        await send_and_wait(tia, "mum", "hi mum")
        sent = await send_and_wait(mum, "tia", "hi love")
        assert sent.mode == "visible"
        got = await drain(tia)
        assert [e.message.body for e in got if e.message.kind == "message"] == ["hi love"]
        # An unlinked adult still can't, by message, request or invitation.
        assert await refused(send_and_wait(rex, "tia", "hey")) == "contact_not_allowed"
        assert await refused(rex.contact_request("tia")) == "contact_not_allowed"
        assert await refused(rex.guardians.invite("tia")) == "contact_not_allowed"
        assert await refused(tia.guardians.accept("rex")) == "no_pending_invite"


@on_module_loop
async def test_a_guardian_sees_the_wards_contacts_and_never_a_message(strict):
    relay, base = strict
    people = [
        await make_profile(base, relay.url, "pat", ADULT),
        await make_profile(base, relay.url, "ana", TEEN14),
        await make_profile(base, relay.url, "ben", TEEN15),
    ]
    async with open_clients(*people) as (pat, ana, ben):
        await link(ana, pat)
        await ben.contact_request("ana")
        await ana.respond("ben", accept=True)
        await send_and_wait(ben, "ana", SECRET)
        await send_and_wait(ana, "ben", SECRET + " ok")
        view = await pat.guardians.view()
        (ward,) = view.links
        assert (ward.handle, ward.role, ward.state) == ("ana", "ward", "linked")
        assert {(c.handle, c.band) for c in ward.contacts} == {
            ("ben", "teen_13_15"),
            ("pat", "adult"),
        }
        assert SECRET not in msgspec.json.encode(view.links).decode()
        # The ward sees her guardian and what they can see, not a contact list of theirs.
        (mine,) = (await ana.guardians.view()).links
        assert (mine.handle, mine.role, mine.contacts) == ("pat", "guardian", None)
    rc, out, err = await agechat(
        "--profile", str(base / "pat"), "--json", "guardian", "list", passphrase=PASSPHRASE
    )
    assert rc == 0, err
    listed = json.loads(out)
    assert set(listed) == {"rules", "links", "approvals", "disclosure"}
    assert listed["rules"]["visibility"] == "contacts"
    (ward,) = listed["links"]
    assert ward["handle"] == "ana" and ward["state"] == "linked"
    contacts = {c["handle"]: c for c in ward["contacts"]}
    assert set(contacts) == {"ben", "pat"}
    assert set(contacts["ben"]) == {"handle", "display_name", "band", "since"}
    assert contacts["ben"]["band"] == "teen_13_15" and contacts["ben"]["since"].endswith("Z")
    assert "PLAN-7731" not in out


@on_module_loop
async def test_a_new_adult_contact_waits_for_the_guardian_and_the_teen_sees_it(supervised):
    relay, base = supervised
    people = [
        await make_profile(base, relay.url, "dad", ADULT),
        await make_profile(base, relay.url, "kim", TEEN14),
        await make_profile(base, relay.url, "coach", ADULT),
    ]
    async with open_clients(*people) as (dad, kim, coach):
        await link(kim, dad)
        await drain(kim)
        await drain(dad)
        assert await kim.contact_request("coach") == "requested"
        assert await coach.respond("kim", accept=True) == "awaiting_guardian"
        waiting = await drain(kim)
        assert codes(waiting) == ["guardian_approval_pending"]
        assert "waits for your guardian's approval" in waiting[0].message.body
        assert [(c.handle, c.state) for c in await kim.contacts() if c.handle == "coach"] == [
            ("coach", "awaiting_guardian")
        ]
        assert await refused(send_and_wait(kim, "coach", "hi")) == "guardian_approval_pending"
        assert codes(await drain(dad)) == ["guardian_approval_request"]
        (approval,) = (await dad.guardians.view()).approvals
        assert (approval.ward, approval.contact) == ("kim", "coach")
        # Only her guardian decides: not the adult (about himself, or anything else).
        assert await refused(coach.guardians.decide("kim", "coach", True)) == ("cannot_target_self")
        assert await refused(coach.guardians.decide("kim", "dad", True)) == "no_pending_approval"
        assert await dad.guardians.decide("kim", "coach", approve=True) == "approved"
        assert codes(await drain(kim)) == [
            "guardian_approved",
            "contact_accepted",
            "new_adult_contact",
        ]
        await send_and_wait(coach, "kim", "practice at 5")
        audit = [(e.action, e.actor, e.subject) for e in await relay.app[SAFETY].audit.entries()]
        assert ("guardian_approval", "dad", "kim") in audit


@on_module_loop
@pytest.mark.parametrize("by", ["ward", "guardian"])
async def test_unlinking_from_either_side_takes_effect_at_once_and_is_audited(strict, by):
    relay, base = strict
    people = [
        await make_profile(base, relay.url, f"g_{by}", ADULT),
        await make_profile(base, relay.url, f"w_{by}", TEEN14),
    ]
    async with open_clients(*people) as (guardian, ward):
        await link(ward, guardian)
        await send_and_wait(guardian, ward.handle, "dinner at 7")
        actor, other = (ward, guardian) if by == "ward" else (guardian, ward)
        assert await actor.guardians.unlink(other.handle) == "unlinked"
        # At once: the next message either way is refused, and the view is gone.
        assert await refused(send_and_wait(guardian, ward.handle, "x")) == "contact_not_allowed"
        assert await refused(send_and_wait(ward, guardian.handle, "y")) == "contact_not_allowed"
        assert (await guardian.guardians.view()).links == []
        assert "guardian_unlinked" in codes(await drain(other))
        assert await refused(actor.guardians.unlink(other.handle)) == "not_linked"
    audit = relay.app[SAFETY].audit
    entries = [(e.action, e.actor, e.subject) for e in await audit.entries()]
    assert ("guardian_unlink", actor.handle, ward.handle) in entries
    _, _, problem = await audit.verify()
    assert problem is None


@on_module_loop
async def test_the_moderators_case_view_of_a_ward_shows_the_guardian_context(strict):
    relay, base = strict
    people = [
        await make_profile(base, relay.url, "gus", ADULT),
        await make_profile(base, relay.url, "ivy", TEEN14),
        await make_profile(base, relay.url, "joe", TEEN15),
        await make_profile(base, relay.url, "mia_mod", ADULT),
    ]
    await grant(relay, "mia_mod", "child_safety_moderator")
    async with open_clients(*people) as (gus, ivy, joe, mia):
        await link(ivy, gus)
        await gus.guardians.view()  # a view of her contacts: recorded for moderators
        await joe.contact_request("ivy")
        await ivy.respond("joe", accept=True)
        await send_and_wait(ivy, "joe", "whatever")
        await drain(joe)
        await joe.report("ivy", "rude", last=1)
        (summary,) = [c for c in await mia.moderation.queue("child_safety") if c.subject == "ivy"]
        case = await mia.moderation.case(summary.id)
    assert case.guardians.guardians == ["gus"]
    assert case.guardians.wards == []
    events = [(a.event, a.guardian, a.ward) for a in case.guardians.activity]
    assert ("viewed_contacts", "gus", "ivy") in events
    assert ("linked", "gus", "ivy") in events
    # The same in `agechat mod case` (and the console, which shares the lines).
    rc, out, err = await agechat(
        "--profile", str(base / "mia_mod"), "mod", "case", str(summary.id), passphrase=PASSPHRASE
    )
    assert rc == 0, err
    assert "Guardians: @gus" in out
    assert "@gus → @ivy: viewed the ward's contacts" in out
