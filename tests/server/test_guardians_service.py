"""Guardian links on the relay, in process and fast (issue 16): a real SQLite store and the
real `SocialService`, with the recording committer of test_mutants_social_service.

The table runs every adult↔minor pair rule (`never`, `refused`, `request`, `direct`, each
direction) × the guardian dials (`lifts_pair_rules`, `approvals`): who may start a link, what
a linked parent and teen may do, what an unlinked adult may still do, and whether a new adult
contact waits for the guardian. The rest checks each behaviour exactly: what each side is
told, what a guardian sees (never a message), approvals, unlinking, audit, blocks.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

from protocol.policy import Contact, Decision, PairRule, Policy
from server.policy.loader import load_policy
from server.safety.audit import AuditLog
from tests.server.test_mutants_social_service import (
    ADULT,
    ADULT2,
    TEEN14,
    TEEN16,
    connect,
    entries,
    service,
)

INITIATE = ("never", "refused", "request", "direct")


def with_rules(
    a2m: str,
    m2a: str,
    *,
    lifts: bool,
    approvals: str,
    visibility: str = "contacts",
    notify: bool = False,
    base: str = "default",
) -> Policy:
    policy = load_policy(base)
    return msgspec.structs.replace(
        policy,
        contact=Contact(
            adult_to_minor=PairRule(search="connected_only", initiate=a2m),
            minor_to_adult=PairRule(search="always", initiate=m2a),
            adult_to_adult=policy.contact.adult_to_adult,
            minor_to_minor=policy.contact.minor_to_minor,
        ),
        guardians=msgspec.structs.replace(
            policy.guardians,
            lifts_pair_rules=lifts,
            approvals=approvals,
            visibility=visibility,
            notify_blocks_and_reports=notify,
        ),
    )


async def link(social, inviter: str, invitee: str) -> None:
    assert await social.guardians.invite(inviter, invitee) == Decision("request", "guardian_invite")
    assert await social.guardians.accept(invitee, inviter) == Decision("allow", "linked")


# --- the table: pair rules × guardian dials ------------------------------------------------


@pytest.mark.parametrize(
    ("a2m", "m2a", "lifts", "approvals"),
    list(itertools.product(INITIATE, INITIATE, (False, True), ("never", "adults_only"))),
)
async def test_every_pair_rule_and_guardian_setting(world, a2m, m2a, lifts, approvals):
    policy = with_rules(a2m, m2a, lifts=lifts, approvals=approvals)
    social, _, _ = await service(
        world, policy, mum=ADULT, dad=ADULT2, rex=ADULT2, coach=ADULT, tia=TEEN14
    )
    g = social.guardians
    never = "never" in (a2m, m2a)

    # An adult may start a link only where they could start contact with the minor (and
    # `never` either way is no contact at all).
    dad = await g.invite("dad", "tia")
    if a2m == "refused" or never:
        assert dad == Decision("refuse", "contact_not_allowed")
    else:
        assert dad == Decision("request", "guardian_invite")
        assert await g.unlink("dad", "tia") == Decision("allow", "cancelled")

    # The minor may always start it: she chooses her guardian.
    await link(social, "tia", "mum")
    assert g.is_linked("mum", "tia")
    assert entries(social, "tia") == [("mum", "connected", "visible", False)]

    # A linked parent and teen message each other unless the rules keep them apart and
    # the link doesn't lift them.
    for a, b in (("mum", "tia"), ("tia", "mum")):
        expected = (
            Decision("refuse", "contact_not_allowed")
            if never and not lifts
            else Decision("allow", "connected")
        )
        assert await social.decide_message(a, b, "visible") == expected

    # An unlinked adult stays a stranger under the pair rule.
    rex = await social.decide_message("rex", "tia", "visible")
    if a2m == "refused" or never:
        assert rex == Decision("refuse", "contact_not_allowed")
    elif a2m == "request" or approvals == "adults_only":
        assert rex == Decision("request", "message_request")  # direct waits for approval
    else:
        assert rex == Decision("allow", "direct")

    # The teen's new adult contact waits for her guardian when approvals are on.
    asked = await social.contact_request("tia", "coach")
    if never or m2a == "refused":
        assert asked.outcome == "refuse"
        return
    assert asked == Decision("request", "contact_request")
    answered = await social.respond("coach", "tia", accept=True)
    if approvals == "adults_only":
        assert answered == Decision("allow", "awaiting_guardian")
        assert entries(social, "tia")[0] == ("coach", "awaiting_guardian", "visible", False)
        assert await social.decide_message("tia", "coach", "visible") == Decision(
            "refuse", "guardian_approval_pending"
        )
        assert await g.decide("mum", "tia", "coach", approve=True) == Decision("allow", "approved")
    else:
        assert answered == Decision("allow", "connected")
    assert await social.decide_message("coach", "tia", "visible") == Decision("allow", "connected")


# --- linking -------------------------------------------------------------------------------


async def test_linking_tells_each_side_what_the_guardian_sees(world):
    social, events, _ = await service(world, "strict", mum=ADULT, tia=TEEN14)
    g = social.guardians
    assert await g.invite("mum", "tia") == Decision("refuse", "contact_not_allowed")
    assert await g.invite("tia", "mum") == Decision("request", "guardian_invite")
    sent = {(m.recipient, m.kind, m.code): m.body for m in events.sent}
    events.sent.clear()
    assert sent == {
        ("mum", "system", "guardian_invite"): (
            "Tia (@tia) asks you to be their guardian. As their guardian: You can see who "
            "their contacts are, their age group and when each one started. Never their "
            "messages. Their new adult contacts wait for your approval. You're told when they "
            "block or report someone (who, not why). They see everything you're told about "
            "them, and either of you can unlink."
        )
    }
    assert await g.accept("mum", "tia") == Decision("allow", "linked")
    sent = {(m.recipient, m.kind, m.code): m.body for m in events.sent}
    events.sent.clear()
    assert sent[("tia", "system", "guardian_linked")] == (
        "Mum (@mum) is now your guardian. You can message each other. Your guardian can see "
        "who your contacts are, their age group and when each one started. Never your "
        "messages. A new adult contact has to wait until your guardian approves it. Your "
        "guardian is told when you block or report someone (who, not why), and you're always "
        "shown what they were told. You and your guardian can message each other even where "
        "this relay keeps adults and people under 18 apart. Either of you can unlink at any "
        "time, and it takes effect at once."
    )
    assert sent[("mum", "system", "guardian_linked")].startswith(
        "You are now Tia (@tia)'s guardian. You can message each other."
    )
    assert sorted(sent) == [
        ("mum", "system", "guardian_linked"),
        ("tia", "system", "guardian_linked"),
    ]


async def test_an_adults_invitation_to_a_minor_is_a_notice_saying_what_they_would_see(world):
    social, events, _ = await service(world, "default", dad=ADULT, tia=TEEN14)
    await connect(social, "tia", "dad")
    events.take()
    assert await social.guardians.invite("dad", "tia") == Decision("request", "guardian_invite")
    (notice,) = events.sent
    assert (notice.recipient, notice.kind, notice.code) == ("tia", "notice", "guardian_invite")
    assert notice.body.startswith(
        "Dad (@dad) asks to be your guardian. Your guardian can see who your contacts are"
    )
    assert notice.body.endswith(
        "Only accept if they really are your parent or carer; if you're not sure, ask an "
        "adult you trust."
    )


@pytest.mark.parametrize(
    ("setup", "inviter", "invitee", "code"),
    [
        ("", "mum", "dad", "guardian_pair_invalid"),  # two adults
        ("", "tia", "tom", "guardian_pair_invalid"),  # two minors
        ("link", "tia", "mum", "already_linked"),
        ("link", "mum", "tia", "already_linked"),
        ("invite", "tia", "mum", "guardian_invite_pending"),
        ("invite", "mum", "tia", "guardian_invite_awaiting_you"),
        ("block", "tia", "mum", "you_blocked"),
        ("two", "tia", "rex", "too_many_guardians"),
    ],
)
async def test_invitation_refusals(world, setup, inviter, invitee, code):
    social, _, _ = await service(
        world, "default", mum=ADULT, dad=ADULT2, rex=ADULT2, tia=TEEN14, tom=TEEN16
    )
    g = social.guardians
    if setup == "link":
        await link(social, "tia", "mum")
    elif setup == "invite":
        await g.invite("tia", "mum")
    elif setup == "block":
        await social.block("tia", "mum")
    elif setup == "two":
        await link(social, "tia", "mum")
        await link(social, "tia", "dad")
    assert await g.invite(inviter, invitee) == Decision("refuse", code)


async def test_guardian_links_off_and_accepting_nothing(world):
    social, _, _ = await service(world, "open", mum=ADULT, tia=TEEN14)
    assert await social.guardians.invite("tia", "mum") == Decision("refuse", "guardian_links_off")
    assert await social.guardians.accept("mum", "tia") == Decision("refuse", "no_pending_invite")
    assert await social.guardians.unlink("mum", "tia") == Decision("refuse", "not_linked")


async def test_a_restricted_adult_cant_become_a_guardian_and_loses_what_a_link_gives(world):
    social, events, _ = await service(world, "default", mum=ADULT, rex=ADULT2, tia=TEEN14)
    g = social.guardians
    await social.restrict_by_moderator("rex", "reviewed")
    refused = await g.invite("tia", "rex")
    assert (refused.outcome, refused.reason) == ("refuse", "sender_restricted")
    assert refused.sentence.startswith("This account has been restricted by a moderator")
    await link(social, "tia", "mum")
    (mine,) = (await g.view("mum"))[0]
    assert mine.contacts is not None
    await social.restrict_by_moderator("mum", "reviewed")
    events.take()
    (mine,) = (await g.view("mum"))[0]
    assert (mine.handle, mine.state, mine.contacts) == ("tia", "linked", None)
    assert g.guardians_of("tia") == [] and g.guardians_of("tia", active=False) == ["mum"]


async def test_an_invitation_to_someone_who_blocked_you_looks_sent_and_stays_hidden(world):
    social, events, _ = await service(world, "default", mum=ADULT, tia=TEEN14)
    g = social.guardians
    await connect(social, "tia", "mum")
    await social.block("tia", "mum")
    events.take()
    assert await g.invite("mum", "tia") == Decision("drop", "blocked_by_target")
    assert events.take() == []
    (sent,) = (await g.view("mum"))[0]
    assert (sent.handle, sent.state) == ("tia", "invite_sent")
    assert (await g.view("tia"))[0] == []
    assert await g.invite("mum", "tia") == Decision("refuse", "guardian_invite_pending")
    assert await g.accept("tia", "mum") == Decision("refuse", "no_pending_invite")
    assert await g.unlink("tia", "mum") == Decision("refuse", "not_linked")


# --- what a guardian sees ------------------------------------------------------------------


async def test_a_guardian_sees_the_wards_contacts_band_and_since_never_a_message(world):
    social, _, clock = await service(
        world, "default", mum=ADULT, ann=ADULT2, tia=TEEN14, tom=TEEN16
    )
    await connect(social, "tia", "ann")
    await connect(social, "tom", "tia")
    await social.decide_message("tia", "ann", "visible")
    await link(social, "tia", "mum")
    links, approvals = await social.guardians.view("mum")
    (ward,) = links
    assert (ward.handle, ward.role, ward.state) == ("tia", "ward", "linked")
    assert [(c.handle, c.band, c.since) for c in ward.contacts] == [
        ("ann", "adult", clock.now),
        ("mum", "adult", clock.now),
        ("tom", "teen_16_17", clock.now),
    ]
    assert approvals == []
    # Only handles, names, bands and times: nothing a message could hide in.
    assert set(msgspec.to_builtins(ward.contacts[0])) == {"handle", "display_name", "band", "since"}
    # The ward's own view: her guardian, no contacts.
    (mine,) = (await social.guardians.view("tia"))[0]
    assert (mine.handle, mine.role, mine.state, mine.contacts) == (
        "mum",
        "guardian",
        "linked",
        None,
    )
    # The view is recorded for moderators.
    context = await social.guardians.context("tia")
    assert context.guardians == ["mum"]
    assert [(a.event, a.guardian) for a in context.activity][:2] == [
        ("viewed_contacts", "mum"),
        ("linked", "mum"),
    ]


async def test_with_visibility_none_a_guardian_sees_only_the_link(world):
    policy = with_rules("refused", "request", lifts=False, approvals="never", visibility="none")
    social, _, _ = await service(world, policy, mum=ADULT, tia=TEEN14)
    await link(social, "tia", "mum")
    (ward,) = (await social.guardians.view("mum"))[0]
    assert (ward.state, ward.contacts) == ("linked", None)


# --- approvals -----------------------------------------------------------------------------


async def test_an_approval_asks_the_guardians_and_the_teen_sees_what_they_were_told(world):
    policy = with_rules("refused", "request", lifts=True, approvals="adults_only")
    social, events, _ = await service(world, policy, mum=ADULT, dad=ADULT2, tia=TEEN14, coach=ADULT)
    await link(social, "tia", "mum")
    await link(social, "tia", "dad")
    await social.contact_request("tia", "coach")
    events.take()
    assert await social.respond("coach", "tia", accept=True) == Decision(
        "allow", "awaiting_guardian"
    )
    sent = [(m.recipient, m.code, m.conversation, m.body) for m in events.sent]
    events.sent.clear()
    told = (
        "Tia (@tia) wants to add Coach (@coach), an adult, as a contact. It waits for your "
        "approval."
    )
    assert [(r, c, conv) for r, c, conv, _ in sent] == [
        ("dad", "guardian_approval_request", "dm:dad:tia"),
        ("mum", "guardian_approval_request", "dm:mum:tia"),
        ("tia", "guardian_approval_pending", "dm:coach:tia"),
    ]
    assert sent[0][3].startswith(told)
    assert sent[2][3] == (
        "Your contact with Coach (@coach) waits for your guardian's approval; until then "
        "neither of you can write. Your guardians Dad (@dad) and Mum (@mum) were told: "
        f"“{told}”"
    )
    # Both sides see it waiting; neither can write.
    assert entries(social, "coach")[0] == ("tia", "awaiting_guardian", "visible", False)
    assert await social.decide_message("coach", "tia", "visible") == Decision(
        "refuse", "guardian_approval_pending"
    )
    assert await social.contact_request("coach", "tia") == Decision(
        "refuse", "guardian_approval_pending"
    )
    # Who may decide: her guardians, about this pending contact only.
    for who, ward, contact in (("coach", "tia", "coach"), ("mum", "tia", "dad")):
        assert await social.guardians.decide(who, ward, contact, True) == Decision(
            "refuse", "no_pending_approval"
        )
    (waiting,) = (await social.guardians.view("tia"))[1]
    assert (waiting.ward, waiting.contact, waiting.contact_band) == ("tia", "coach", "adult")
    assert [a.contact for a in (await social.guardians.view("mum"))[1]] == ["coach"]
    assert await social.guardians.decide("dad", "tia", "coach", False) == Decision(
        "allow", "declined"
    )
    assert events.take() == [("tia", "system", "guardian_declined")]
    assert entries(social, "tia") == [
        ("dad", "connected", "visible", False),
        ("mum", "connected", "visible", False),
    ]
    assert await social.guardians.decide("mum", "tia", "coach", True) == Decision(
        "refuse", "no_pending_approval"
    )
    # Asked again and approved this time.
    await social.contact_request("tia", "coach")
    await social.respond("coach", "tia", accept=True)
    events.take()
    assert await social.guardians.decide("mum", "tia", "coach", True) == Decision(
        "allow", "approved"
    )
    assert events.take() == [
        ("tia", "system", "guardian_approved"),
        ("coach", "system", "contact_accepted"),
        ("tia", "system", "contact_accepted"),
        ("tia", "notice", "new_adult_contact"),
    ]
    # Every answer is in the audit log.
    audit = [(e.action, e.actor, e.subject, e.detail) for e in await AuditLog(world).entries()]
    approvals = [a for a in audit if a[0] == "guardian_approval"]
    assert approvals == [
        (
            "guardian_approval",
            "dad",
            "tia",
            '{"contact": "coach", "outcome": "declined", "ward": "tia"}',
        ),
        (
            "guardian_approval",
            "mum",
            "tia",
            '{"contact": "coach", "outcome": "approved", "ward": "tia"}',
        ),
    ]


async def test_the_ward_accepting_an_adult_waits_too_and_the_adult_is_told(world):
    policy = with_rules("request", "request", lifts=False, approvals="adults_only")
    social, events, _ = await service(world, policy, mum=ADULT, tia=TEEN14, coach=ADULT2)
    await link(social, "tia", "mum")
    await social.contact_request("coach", "tia")
    events.take()
    assert await social.respond("tia", "coach", accept=True) == Decision(
        "allow", "awaiting_guardian"
    )
    assert events.take() == [
        ("mum", "system", "guardian_approval_request"),
        ("tia", "system", "guardian_approval_pending"),
        ("coach", "system", "guardian_approval_pending"),
    ]


async def test_unlinking_the_last_guardian_cancels_what_waits_for_them(world):
    policy = with_rules("request", "request", lifts=False, approvals="adults_only")
    social, events, _ = await service(world, policy, mum=ADULT, tia=TEEN14, coach=ADULT2)
    await link(social, "tia", "mum")
    await social.contact_request("tia", "coach")
    await social.respond("coach", "tia", accept=True)
    events.take()
    assert await social.guardians.unlink("tia", "mum") == Decision("allow", "unlinked")
    assert events.take() == [
        ("tia", "system", "guardian_approval_cancelled"),
        ("tia", "system", "guardian_unlinked"),
        ("mum", "system", "guardian_unlinked"),
    ]
    assert [e[0] for e in entries(social, "tia")] == ["mum"]  # coach is a stranger again
    assert await social.decide_message("tia", "coach", "visible") == Decision(
        "request", "message_request"
    )


# --- unlinking -----------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["tia", "mum"])
async def test_unlinking_from_either_side_takes_effect_at_once_and_is_audited(world, by):
    social, events, _ = await service(world, "strict", mum=ADULT, tia=TEEN14)
    await link(social, "tia", "mum")
    assert await social.decide_message("mum", "tia", "visible") == Decision("allow", "connected")
    events.take()
    other = "mum" if by == "tia" else "tia"
    assert await social.guardians.unlink(by, other) == Decision("allow", "unlinked")
    sent = {m.recipient: m.body for m in events.sent}
    assert sent["tia"] == (
        f"Mum (@mum) is no longer your guardian (unlinked by {by.title()} (@{by})). They "
        "can't see anything about your account any more. You can't message each other any "
        "more under this relay's policy."
    )
    for a, b in (("mum", "tia"), ("tia", "mum")):
        assert await social.decide_message(a, b, "visible") == Decision(
            "refuse", "contact_not_allowed"
        )
    assert (await social.guardians.view("mum")) == ([], [])
    assert await social.guardians.unlink(by, other) == Decision("refuse", "not_linked")
    audit = [(e.action, e.actor, e.subject) for e in await AuditLog(world).entries()]
    assert audit == [("guardian_link", "mum", "tia"), ("guardian_unlink", by, "tia")]
    _, _, problem = await AuditLog(world).verify()
    assert problem is None


async def test_turning_18_ends_the_link(world):
    social, events, _ = await service(world, "strict", mum=ADULT, tia=TEEN14)
    await link(social, "tia", "mum")
    events.take()
    social.accounts["tia"] = social.accounts["tia"].__class__("Tia", ADULT2)
    await social.check_bands(["tia"])
    assert not social.guardians.is_linked("mum", "tia")
    assert ("tia", "system", "guardian_unlinked") in events.take()
    audit = [(e.action, e.actor, e.detail) for e in await AuditLog(world).entries()]
    assert audit[-1][:2] == ("guardian_unlink", "agechat")
    assert '"ended_by": "band_changed"' in audit[-1][2]


# --- what the guardian is told -------------------------------------------------------------


async def test_the_guardian_is_told_of_blocks_and_reports_and_the_teen_sees_it(world):
    social, events, _ = await service(world, "strict", mum=ADULT, tia=TEEN14, tom=TEEN16)
    await link(social, "tia", "mum")
    events.take()
    await social.block("tia", "tom")
    await social.report("tia", "tom", "mean", b"[]")
    sent = [(m.recipient, m.code, m.body) for m in events.sent]
    assert sent == [
        ("mum", "ward_blocked", "Tia (@tia) blocked Tom (@tom)."),
        (
            "tia",
            "guardian_told",
            "Your guardian Mum (@mum) was told: “Tia (@tia) blocked Tom (@tom).”",
        ),
        ("mum", "ward_reported", "Tia (@tia) reported Tom (@tom)."),
        (
            "tia",
            "guardian_told",
            "Your guardian Mum (@mum) was told: “Tia (@tia) reported Tom (@tom).”",
        ),
    ]
    assert "mean" not in str(sent)  # never why
    events.take()
    social.policy = load_policy("default")  # notify_blocks_and_reports = false
    await social.unblock("tia", "tom")
    await social.block("tia", "tom")
    assert events.take() == []


async def test_a_restart_keeps_links_invitations_and_approvals_waiting(world):
    policy = with_rules("request", "request", lifts=False, approvals="adults_only")
    people = {"mum": ADULT, "dad": ADULT2, "tia": TEEN14, "coach": ADULT2}
    social, _, _ = await service(world, policy, **people)
    await link(social, "tia", "mum")
    await social.guardians.invite("tia", "dad")
    await social.contact_request("tia", "coach")
    await social.respond("coach", "tia", accept=True)

    async def state(s) -> list[object]:
        views = [await s.guardians.view(h) for h in ("mum", "dad", "tia")]
        return [([(x.handle, x.role, x.state, x.since) for x in links], a) for links, a in views]

    before = await state(social)
    again, events, _ = await service(world, policy, **people)
    await again.guardians.load()  # (contacts come back through SocialService.load)
    assert again.guardians.is_linked("tia", "mum") and not again.guardians.is_linked("tia", "dad")
    assert again.guardians.supervised("tia", "teen_13_15", "coach", "adult")
    assert await state(again) == before
    assert events.take() == []
