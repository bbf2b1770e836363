"""The relay's policy application (server/social/service.py), in process and fast (issue 17).

A `SocialService` over a real SQLite store, with a clock the test sets and a committer
that records the events it is given instead of storing them, so each rule of POLICY.md's
"Block", "restriction", the events table and the daily counters is checked exactly —
who is told what, with which code and kind, and what each list and search shows.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import msgspec

from protocol import policy as policy_rules
from protocol.frames import ContactEntry, Person
from protocol.ids import RANDOM_BYTES, time_ordered_id
from protocol.limits import MAX_SEARCH_RESULTS
from protocol.policy import Decision, Policy
from server.delivery.records import NewMessage
from server.delivery.store import SqliteStore
from server.policy.loader import load_policy
from server.social import service as service_module
from server.social import store as social_store
from server.social.service import SocialService

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ADULT, ADULT2 = date(1986, 1, 1), date(1990, 7, 7)
TEEN14, TEEN16 = date(2012, 1, 1), date(2010, 1, 1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Events:
    """Stands in for the group committer: records each event the service emits."""

    def __init__(self) -> None:
        self.sent: list[NewMessage] = []
        self.writes: list[tuple[str, tuple[object, ...]]] = []

    def submit_write(self, sql: str, params: tuple[object, ...]) -> None:
        self.writes.append((sql, params))

    async def flush(self, store: SqliteStore) -> None:
        """What the group commit would have written behind (before a restart)."""
        for sql, params in self.writes:
            await store.db.execute(sql, params)
        self.writes.clear()

    def submit_message(self, message: NewMessage) -> asyncio.Future[None]:
        self.sent.append(message)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def take(self) -> list[tuple[str, str, str | None]]:
        """(recipient, kind, code) of each event since the last call, in order."""
        got = [(m.recipient, m.kind, m.code) for m in self.sent]
        self.sent.clear()
        return got

    def texts(self) -> dict[tuple[str, str | None], str]:
        got = {(m.recipient, m.code): m.body for m in self.sent}
        self.sent.clear()
        return got


async def service(
    store: SqliteStore, policy: Policy | str = "default", **people: date
) -> tuple[SocialService, Events, Clock]:
    clock, events = Clock(), Events()
    loaded = load_policy(policy) if isinstance(policy, str) else policy
    social = SocialService(store, loaded, clock, events)  # type: ignore[arg-type]
    for handle, born in people.items():
        social.add_account(handle, handle.title(), born)
        await social.record_new_account(handle)
    return social, events, clock


def entries(social: SocialService, handle: str) -> list[tuple[str, str, str | None, bool]]:
    return [(c.handle, c.state, c.mode, c.restricted) for c in social.list_contacts(handle)]


async def connect(social: SocialService, requester: str, target: str) -> None:
    assert (await social.contact_request(requester, target)).outcome == "request"
    assert await social.respond(target, requester, accept=True) == Decision("allow", "connected")


# --- requests, answers and the events they make ----------------------------------------


async def test_a_contact_request_and_its_acceptance_between_adults(world):
    social, events, _ = await service(world, ann=ADULT, bob=ADULT2)
    assert await social.contact_request("bob", "ann") == Decision("request", "contact_request")
    texts = events.texts()
    assert texts == {
        (
            "ann",
            "contact_request",
        ): "Bob (@bob) wants to connect with you. You can accept or decline."
    }
    assert entries(social, "ann") == [("bob", "incoming_request", "e2ee", False)]
    assert entries(social, "bob") == [("ann", "outgoing_request", "e2ee", False)]
    assert await social.respond("ann", "bob", accept=True) == Decision("allow", "connected")
    sent = list(events.sent)
    assert [(m.recipient, m.kind, m.code, m.sender, m.mode) for m in sent] == [
        ("bob", "system", "contact_accepted", "agechat", "visible"),
        ("ann", "system", "contact_accepted", "agechat", "visible"),
    ]
    assert [m.conversation for m in sent] == ["dm:ann:bob", "dm:ann:bob"]
    assert sent[0].body == "You and Ann (@ann) are connected. This chat is end-to-end encrypted."
    assert sent[1].body == "You and Bob (@bob) are connected. This chat is end-to-end encrypted."
    assert all(m.sent_at == NOW and len(m.msg_id) >= 16 for m in sent)
    assert entries(social, "ann") == [("bob", "connected", "e2ee", False)]
    assert await social.respond("ann", "bob", accept=True) == Decision(
        "refuse", "no_pending_request"
    )


async def test_a_minor_is_told_when_an_adult_becomes_a_contact(world):
    social, events, _ = await service(world, ann=ADULT, tia=TEEN14)
    assert await social.contact_request("tia", "ann") == Decision("request", "contact_request")
    assert events.take() == [("ann", "system", "contact_request")]  # ann is an adult
    await social.respond("ann", "tia", accept=True)
    texts = {(m.recipient, m.kind, m.code): m.body for m in events.sent}
    events.sent.clear()
    assert texts == {
        ("tia", "system", "contact_accepted"): (
            "You and Ann (@ann) are connected. This chat is visible to safety checks."
        ),
        ("ann", "system", "contact_accepted"): (
            "You and Tia (@tia) are connected. This chat is visible to safety checks."
        ),
        ("tia", "notice", "new_adult_contact"): (
            "Ann (@ann) is an adult and is now one of your contacts. If anything they say "
            "makes you uncomfortable, you can block or report them at any time."
        ),
    }


async def test_a_request_to_a_minor_is_a_notice_and_follows_its_switch(world):
    social, events, _ = await service(world, tia=TEEN14, tom=TEEN16, una=TEEN16)
    await social.contact_request("tom", "tia")
    assert events.take() == [("tia", "notice", "contact_request")]
    base = social.policy
    social.policy = msgspec.structs.replace(
        base, notices=msgspec.structs.replace(base.notices, minor_message_request=False)
    )
    await social.contact_request("una", "tia")
    assert events.take() == [("tia", "system", "contact_request")]


async def test_a_stranger_message_request_and_its_notice(world):
    social, events, _ = await service(world, tia=TEEN14, tom=TEEN16, ann=ADULT, bob=ADULT2)
    decision = await social.decide_message("tom", "tia", "visible")
    assert decision == Decision("request", "message_request")
    texts = events.texts()
    assert texts == {
        ("tia", "message_request"): (
            "Tom (@tom) isn't one of your contacts and sent you a message request. You can "
            "accept, decline, block or report. Only accept people you know."
        )
    }
    assert entries(social, "tom") == [("tia", "outgoing_request", "visible", False)]
    # Between adults: a request, and no notice (adults get none).
    assert await social.decide_message("bob", "ann", "e2ee") == Decision(
        "request", "message_request"
    )
    assert events.take() == []
    # Follow-ups ride on the request and make no new event.
    assert await social.decide_message("tom", "tia", "visible") == Decision(
        "request", "request_pending"
    )
    assert events.take() == []


async def test_the_mode_is_checked_after_the_policy(world):
    social, _, _ = await service(world, tia=TEEN14, ann=ADULT, bob=ADULT2)
    assert await social.decide_message("bob", "ann", "visible") == Decision(
        "refuse", "mode_mismatch"
    )
    assert entries(social, "bob") == []  # a refused send starts no request
    # The policy's refusal comes first: the mode says nothing about the minor.
    assert await social.decide_message("ann", "tia", "e2ee") == Decision(
        "refuse", "contact_not_allowed"
    )
    assert social.mode("ann", "bob") == "e2ee"
    assert social.mode("ann", "tia") == "visible"


async def test_declining_a_request(world):
    social, events, _ = await service(world, ann=ADULT, tia=TEEN14)
    await social.contact_request("ann", "tia")  # refused under default: adult → minor
    await social.contact_request("tia", "ann")
    events.take()
    assert await social.respond("ann", "tia", accept=False) == Decision("allow", "declined")
    assert events.take() == []  # nobody is told
    assert entries(social, "ann") == [("tia", "declined_by_you", "visible", False)]
    assert entries(social, "tia") == [("ann", "declined", None, False)]  # no mode: no age group
    assert await social.respond("ann", "tia", accept=False) == Decision(
        "refuse", "no_pending_request"
    )


async def test_a_minor_declining_an_adult_counts_towards_restriction(world):
    policy = load_policy("default")
    policy = msgspec.structs.replace(
        policy,
        restriction=msgspec.structs.replace(
            policy.restriction, refused_or_declined_requests_to_minors=2
        ),
    )
    social, events, _ = await service(world, policy, ann=ADULT, tia=TEEN14, tom=TEEN16, ada=ADULT2)
    # An adult declining a minor's request counts against nobody...
    await social.contact_request("tia", "ann")
    await social.respond("ann", "tia", accept=False)
    assert not social.is_restricted("tia")
    # ...a minor declining an adult's request does (here adults may ask minors).
    social.policy = msgspec.structs.replace(
        policy,
        contact=msgspec.structs.replace(
            policy.contact,
            adult_to_minor=msgspec.structs.replace(
                policy.contact.adult_to_minor, initiate="request"
            ),
        ),
    )
    for minor in ("tia", "tom"):
        assert (await social.contact_request("ada", minor)).outcome == "request"
        events.take()
        await social.respond(minor, "ada", accept=False)
    assert social.restricted == {"ada"}
    assert social.is_restricted("ada")
    assert not social.is_restricted("ann")


# --- blocks ------------------------------------------------------------------------------


async def test_a_block_shows_only_in_the_blockers_list_and_is_undone(world):
    social, events, _ = await service(world, ann=ADULT, bob=ADULT2, cyd=ADULT2)
    await connect(social, "bob", "ann")
    await connect(social, "cyd", "ann")
    events.take()
    before = {h: entries(social, h) for h in ("ann", "bob", "cyd")}
    await social.block("ann", "bob")
    assert entries(social, "ann") == [
        ("bob", "blocked", None, False),
        ("cyd", "connected", "e2ee", False),
    ]
    assert entries(social, "bob") == before["bob"]
    assert entries(social, "cyd") == before["cyd"]
    assert events.take() == []
    assert await social.decide_message("bob", "ann", "e2ee") == Decision(
        "drop", "blocked_by_target"
    )
    assert social.would_be_request("bob", "ann") is False
    assert await social.decide_message("ann", "bob", "e2ee") == Decision("refuse", "you_blocked")
    await social.unblock("ann", "bob")
    assert {h: entries(social, h) for h in ("ann", "bob", "cyd")} == before
    assert await social.decide_message("bob", "ann", "e2ee") == Decision("allow", "connected")


async def test_a_blocked_strangers_message_is_answered_as_a_request(world):
    social, events, _ = await service(world, ann=ADULT, bob=ADULT2, cyd=ADULT2)
    await social.block("ann", "bob")
    assert social.would_be_request("bob", "ann") is True
    assert await social.decide_message("bob", "ann", "e2ee") == Decision(
        "drop", "blocked_by_target"
    )
    # What any pending request looks like to its sender: the list, a second request, the
    # follow-ups; the blocker hears nothing and sees only the block.
    assert entries(social, "bob") == [("ann", "outgoing_request", "e2ee", False)]
    assert await social.contact_request("bob", "ann") == Decision("refuse", "request_pending")
    assert social.would_be_request("bob", "ann") is True
    assert await social.decide_message("bob", "ann", "e2ee") == Decision(
        "drop", "blocked_by_target"
    )
    assert entries(social, "ann") == [("bob", "blocked", None, False)]
    assert events.take() == []
    # A contact request first: the same.
    await social.block("ann", "cyd")
    assert await social.contact_request("cyd", "ann") == Decision("drop", "blocked_by_target")
    assert entries(social, "cyd") == [("ann", "outgoing_request", "e2ee", False)]
    assert await social.contact_request("cyd", "ann") == Decision("refuse", "request_pending")
    assert events.take() == []


async def test_blocks_and_reports_by_minors_count_only_after_contact(world):
    """POLICY.md `restriction.*`: distinct minors who had been in contact with the adult."""
    policy = load_policy("default")  # 3 minors restrict
    social, events, _ = await service(
        world, policy, ada=ADULT, tia=TEEN14, tom=TEEN16, una=TEEN16, vic=TEEN14
    )
    restricted: list[str] = []

    async def on_restricted(handle: str) -> None:
        restricted.append(handle)

    social.on_restricted = on_restricted
    for minor in ("tia", "tom", "una"):
        await social.block(minor, "ada")  # strangers: not counted
    assert not social.is_restricted("ada")
    for minor in ("tia", "tom"):
        await social.unblock(minor, "ada")
        await social.contact_request(minor, "ada")
        await social.respond("ada", minor, accept=True)
    events.take()
    await social.block("tia", "ada")
    await social.report("tom", "ada", "spam", b"[]")
    await social.report("tom", "ada", "spam again", b"[]")  # the same minor: once
    assert not social.is_restricted("ada")
    await social.contact_request("vic", "ada")
    events.take()
    await social.report("vic", "ada", "creepy", b"[]")
    assert social.restricted == {"ada"}
    assert restricted == ["ada"]
    # Her minor contacts (connected or with a request) are told, once.
    texts = {(m.recipient, m.kind, m.code): m.body for m in events.sent}
    assert sorted(texts) == [
        ("tia", "notice", "contact_restricted"),
        ("tom", "notice", "contact_restricted"),
        ("vic", "notice", "contact_restricted"),
    ]
    assert texts[("tom", "notice", "contact_restricted")] == (
        "Safety notice: Ada (@ada) has been restricted after reports or blocks from other "
        "young people. Be careful; you can block or report them."
    )
    events.take()
    # A minor sees the restriction in her list; an adult wouldn't.
    assert entries(social, "tom") == [("ada", "connected", "visible", True)]
    assert entries(social, "ada")[0] == ("tia", "connected", "visible", False)
    # Reports are stored with their reason, whoever files them.
    reports = await social.social.reports()
    assert [(r["reporter"], r["reported"], r["reason"]) for r in reports] == [
        ("tom", "ada", "spam"),
        ("tom", "ada", "spam again"),
        ("vic", "ada", "creepy"),
    ]
    # Restriction lifts once the events leave the window.
    social._clock.now = NOW + timedelta(days=policy.restriction.window_days + 1)
    await social.refresh_restriction("ada")
    assert not social.is_restricted("ada")
    assert events.take() == []


async def test_a_report_by_an_adult_or_of_a_minor_does_not_count(world):
    social, _, _ = await service(world, ada=ADULT, bob=ADULT2, tia=TEEN14)
    await connect(social, "tia", "ada")
    for _ in range(4):
        await social.report("bob", "ada", "spam", b"[]")
        await social.report("ada", "tia", "spam", b"[]")
    since = NOW - timedelta(days=30)
    events = (social_store.BLOCKED_BY_MINOR, social_store.REPORTED_BY_MINOR)
    assert await social.social.count_events("ada", events, since) == 0
    assert await social.social.count_events("tia", events, since) == 0


# --- a moderator's restriction ---------------------------------------------------------


async def test_a_moderators_restriction_tells_the_subject_and_minor_contacts_once(world):
    social, events, _ = await service(world, ada=ADULT, bob=ADULT2, tia=TEEN14)
    await connect(social, "tia", "ada")
    await connect(social, "bob", "ada")
    events.take()
    await social.restrict_by_moderator("ada", "internal reason")
    sent = {(m.recipient, m.kind, m.code): m for m in events.sent}
    events.sent.clear()
    assert sorted(sent) == [
        ("ada", "system", "moderator_restricted"),
        ("tia", "notice", "contact_restricted"),
    ]
    subject = sent[("ada", "system", "moderator_restricted")]
    assert subject.body == (
        "A moderator restricted your account after reviewing reports about it: you can't "
        "contact people under 18 any more, including existing contacts."
    )
    assert subject.conversation == "dm:ada:agechat"
    assert "internal reason" not in subject.body
    assert sent[("tia", "notice", "contact_restricted")].body == (
        "Safety notice: Ada (@ada) has been restricted by agechat's safety team. Be careful; "
        "you can block or report them."
    )
    assert social.moderator_restricted == {"ada": "internal reason"}
    assert social.is_restricted("ada") and "ada" not in social.restricted
    # Existing minor contacts too, both ways; adults untouched.
    assert await social.decide_message("ada", "tia", "visible") == Decision(
        "refuse", "sender_restricted"
    )
    assert await social.decide_message("tia", "ada", "visible") == Decision(
        "refuse", "contact_not_allowed"
    )
    assert await social.decide_message("ada", "bob", "e2ee") == Decision("allow", "connected")
    await social.restrict_by_moderator("ada", "again")  # no second announcement
    assert events.take() == []
    assert social.moderator_restricted == {"ada": "again"}
    social.lift_moderator_restriction("ada")
    social.lift_moderator_restriction("ada")  # lifting twice is fine
    assert not social.is_restricted("ada")
    assert await social.decide_message("ada", "tia", "visible") == Decision("allow", "connected")


# --- refusals counted towards restriction and a finding ----------------------------------


async def test_refused_attempts_on_minors_count_once_a_day_per_minor(world):
    policy = load_policy("default")  # 5 refused attempts restrict; a finding at 3
    social, _, clock = await service(
        world, policy, ada=ADULT, t1=TEEN14, t2=TEEN14, t3=TEEN16, t4=TEEN16, t5=TEEN14
    )
    findings: list[tuple[str, int]] = []

    async def on_refusals(handle: str, count: int) -> None:
        findings.append((handle, count))

    social.on_refusals_to_minors = on_refusals
    refused = Decision("refuse", "contact_not_allowed")
    # Bundle, message and request on one minor in a day: one attempt.
    assert (await social.look_up("ada", "t1")).reason == "contact_not_allowed"
    assert await social.decide_message("ada", "t1", "visible") == refused
    assert await social.contact_request("ada", "t1") == refused
    since = NOW - timedelta(days=30)
    count = social.social.count_events
    assert await count("ada", (social_store.REFUSED_TO_MINOR,), since) == 1
    for minor in ("t2", "t3"):
        assert await social.contact_request("ada", minor) == refused
    assert findings == [("ada", 3)]  # at the threshold, once
    assert await social.contact_request("ada", "t4") == refused
    assert findings == [("ada", 3)]
    assert not social.is_restricted("ada")
    clock.now = NOW + timedelta(days=1, minutes=1)  # the same minor again, another day
    assert await social.contact_request("ada", "t1") == refused
    assert social.restricted == {"ada"}
    assert await social.contact_request("ada", "t5") == Decision("refuse", "sender_restricted")
    # Refusals between adults, or by a minor, don't count.
    assert await count("t1", (social_store.REFUSED_TO_MINOR,), since) == 0


async def test_no_finding_when_the_policy_switches_it_off(world):
    policy = load_policy("default")
    policy = msgspec.structs.replace(
        policy, moderation=msgspec.structs.replace(policy.moderation, refusals_to_minors_finding=0)
    )
    social, _, _ = await service(world, policy, ada=ADULT, t1=TEEN14, t2=TEEN14, t3=TEEN14)
    findings: list[tuple[str, int]] = []

    async def on_refusals(handle: str, count: int) -> None:
        findings.append((handle, count))

    social.on_refusals_to_minors = on_refusals
    for minor in ("t1", "t2", "t3"):
        await social.contact_request("ada", minor)
    assert findings == []


async def test_a_contacts_refusal_is_counted_too(world):
    """The fast path between contacts: a moderator's restriction refuses, and counts."""
    social, _, _ = await service(world, ada=ADULT, tia=TEEN14)
    await connect(social, "tia", "ada")
    await social.restrict_by_moderator("ada", "r")
    assert await social.decide_message("ada", "tia", "visible") == Decision(
        "refuse", "sender_restricted"
    )
    since = NOW - timedelta(days=30)
    assert await social.social.count_events("ada", (social_store.REFUSED_TO_MINOR,), since) == 1


# --- lookups and the daily counters ------------------------------------------------------


async def test_lookups_of_strangers_are_counted_and_limited(world):
    policy = load_policy("default")
    policy = msgspec.structs.replace(
        policy, limits=msgspec.structs.replace(policy.limits, lookups_per_day=4)
    )
    social, _, clock = await service(world, policy, ann=ADULT, bob=ADULT2, cyd=ADULT2)
    await connect(social, "ann", "cyd")  # a request to a stranger: the first lookup
    assert await social.unknown_handle("ann", "nobody") == "unknown_recipient"
    assert await social.look_up("ann", "ghost") == Decision("refuse", "unknown_recipient")
    assert await social.look_up("ann", "bob") == Decision("request", "message_request")
    # The fourth stranger lookup of the day: limited, existing account or not.
    assert (await social.look_up("ann", "bob")).reason == "rate_limited"
    assert await social.unknown_handle("ann", "nobody") == "rate_limited"
    assert (await social.decide_message("ann", "bob", "e2ee")).reason == "rate_limited"
    assert (await social.contact_request("ann", "bob")).reason == "rate_limited"
    # A contact is never a stranger lookup.
    assert await social.look_up("ann", "cyd") == Decision("allow", "connected")
    clock.now = NOW + timedelta(days=1, seconds=1)
    assert await social.look_up("ann", "bob") == Decision("request", "message_request")


async def test_the_daily_new_contact_counters(world):
    policy = load_policy("default")
    policy = msgspec.structs.replace(
        policy,
        limits=msgspec.structs.replace(
            policy.limits, contact_requests_per_day=3, contact_requests_to_minors_per_day=1
        ),
    )
    social, _, clock = await service(
        world, policy, tia=TEEN14, tom=TEEN16, una=TEEN16, ann=ADULT, bob=ADULT2
    )
    facts = await social.facts("tia", "tom")
    assert (facts.requests_today, facts.requests_to_minors_today) == (0, 0)
    assert (await social.decide_message("tia", "tom", "visible")).outcome == "request"
    facts = await social.facts("tia", "una")
    assert (facts.requests_today, facts.requests_to_minors_today) == (1, 1)
    assert (await social.contact_request("tia", "una")).reason == "rate_limited"
    assert (await social.contact_request("tia", "ann")).outcome == "request"
    assert (await social.decide_message("tia", "bob", "visible")).outcome == "request"
    assert (await social.decide_message("tia", "una", "visible")).reason == "rate_limited"
    facts = await social.facts("tia", "una")
    assert (facts.requests_today, facts.requests_to_minors_today) == (3, 1)
    clock.now = NOW + timedelta(days=1, seconds=1)
    assert (await social.contact_request("tia", "una")).outcome == "request"


# --- lists and search --------------------------------------------------------------------


async def test_contacts_of_and_the_list(world):
    social, _, _ = await service(world, ann=ADULT, bob=ADULT2, cyd=ADULT2, dee=ADULT2)
    await connect(social, "bob", "ann")
    await social.contact_request("ann", "cyd")
    await social.contact_request("dee", "ann")
    assert social.contacts_of("ann", ("connected",)) == ["bob"]
    assert social.contacts_of("ann", ("requested",)) == ["cyd", "dee"]
    assert social.contacts_of("ann", ("connected", "requested")) == ["bob", "cyd", "dee"]
    assert social.list_contacts("ann") == [
        ContactEntry(handle="bob", display_name="Bob", state="connected", mode="e2ee"),
        ContactEntry(handle="cyd", display_name="Cyd", state="outgoing_request", mode="e2ee"),
        ContactEntry(handle="dee", display_name="Dee", state="incoming_request", mode="e2ee"),
    ]
    # A block of someone never in contact still shows, for the blocker only.
    social.add_account("eve", "Eve", ADULT)
    await social.block("ann", "eve")
    assert social.list_contacts("ann")[-1] == ContactEntry(
        handle="eve", display_name="Eve", state="blocked", mode=None
    )
    assert social.list_contacts("eve") == []


async def test_search(world):
    people = {f"mar{i:02d}": ADULT for i in range(MAX_SEARCH_RESULTS + 3)}
    social, _, _ = await service(world, ann=ADULT, tia=TEEN14, mark=ADULT2, mar=ADULT, **people)
    assert social.search("ann", "") == []
    assert social.search("ann", "  @ ") == []  # empty once normalised: nobody
    found = social.search("ann", " @MAR ")
    assert found[0] == Person(handle="mar", display_name="Mar")  # the exact handle first
    assert [p.handle for p in found[1:]] == sorted(people)[: MAX_SEARCH_RESULTS - 1]
    assert len(found) == MAX_SEARCH_RESULTS
    assert [p.handle for p in social.search("ann", "mark")] == ["mark"]
    assert [p.handle for p in social.search("ann", "Mar0")][:2] == ["mar00", "mar01"]
    assert social.search("ann", "ti") == []  # adults don't find minors
    assert social.search("tia", "an") == [Person(handle="ann", display_name="Ann")]
    assert social.search("ann", "ann") == []  # never oneself
    social.add_account("zz_top", "Zed", ADULT2)  # registered while the relay runs
    assert social.search("ann", "ze") == [Person(handle="zz_top", display_name="Zed")]  # by name
    assert social.search("ann", "MARK") == [Person(handle="mark", display_name="Mark")]


async def test_loading_rebuilds_memory_from_the_store(world):
    social, _, _ = await service(world, ann=ADULT, bob=ADULT2, tia=TEEN14)
    await connect(social, "bob", "ann")
    await social.block("ann", "tia")
    # The accounts table is the registration's: fill it as registration would.
    for handle, info in social.accounts.items():
        await world.db.execute(
            "INSERT INTO accounts (handle, display_name, identity_key, dh_identity_key, "
            "birthdate, declaration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (handle, info.display_name, b"k" * 32, b"d" * 32, info.birthdate.isoformat(),
             b"{}", NOW.timestamp()),
        )  # fmt: skip
    await world.db.commit()
    again, events, _ = await service(world)
    await again.load()
    assert sorted(again.accounts) == ["ann", "bob", "tia"]
    assert entries(again, "ann") == entries(social, "ann")
    assert entries(again, "bob") == entries(social, "bob")
    assert events.take() == []  # nobody's band changed


# --- what only minors' actions count, and what survives a restart -------------------------

COUNTED = (
    social_store.BLOCKED_BY_MINOR,
    social_store.REPORTED_BY_MINOR,
    social_store.REFUSED_TO_MINOR,
    social_store.DECLINED_BY_MINOR,
)


async def test_adults_blocking_reporting_declining_or_refusing_adults_count_nothing(world):
    policy = load_policy("default")
    policy = msgspec.structs.replace(
        policy, limits=msgspec.structs.replace(policy.limits, contact_requests_per_day=1)
    )
    social, _, _ = await service(world, policy, ada=ADULT, bob=ADULT2, cyd=ADULT2, dee=ADULT2)
    await connect(social, "bob", "ada")
    await social.block("bob", "ada")
    await social.report("bob", "ada", "spam", b"[]")
    await social.contact_request("cyd", "ada")
    await social.respond("ada", "cyd", accept=False)
    assert (await social.contact_request("ada", "dee")).outcome == "request"
    assert (await social.contact_request("ada", "cyd")).reason == "rate_limited"
    assert (await social.decide_message("ada", "dee", "e2ee")).outcome == "request"
    social._clock.now = NOW + timedelta(hours=1)
    # bob blocked her: the answer she'd get anyway (a refusal between contacts, uncounted).
    assert (await social.contact_request("ada", "bob")).reason == "already_connected"
    since = NOW - timedelta(days=30)
    for handle in ("ada", "bob", "cyd", "dee"):
        assert await social.social.count_events(handle, COUNTED, since) == 0, handle
    # ...and an adult over the daily cap towards another adult counts nothing either.
    social.add_account("eve", "Eve", ADULT)
    assert (await social.contact_request("ada", "eve")).reason == "rate_limited"
    assert await social.social.count_events("ada", COUNTED, since) == 0


async def test_a_third_block_restricts_at_once_and_adults_see_no_flag(world, caplog):
    social, events, _ = await service(
        world, ada=ADULT, bob=ADULT2, tia=TEEN14, tom=TEEN16, una=TEEN16
    )
    await connect(social, "bob", "ada")
    for minor in ("tia", "tom", "una"):
        await social.contact_request(minor, "ada")
    events.take()
    with caplog.at_level("INFO", logger="agechat.relay.policy"):
        for minor in ("tia", "tom", "una"):
            await social.block(minor, "ada")
    assert social.restricted == {"ada"}
    assert "adult restricted from contacting minors handle=ada" in caplog.messages
    assert entries(social, "bob") == [("ada", "connected", "e2ee", False)]  # bob is an adult
    # A minor accepting a request from an adult restricted since is refused.
    social.add_account("vic", "Vic", TEEN14)
    social._contacts[social_store.pair_key("ada", "vic")] = social_store.ContactRow(
        *social_store.pair_key("ada", "vic"), state="requested", requester="ada"
    )
    refused = await social.respond("vic", "ada", accept=True)
    assert (refused.outcome, refused.reason) == ("refuse", "sender_restricted")


async def test_three_refusals_without_a_finding_listener(world):
    """A bare relay has no safety service listening: the threshold passes quietly."""
    social, _, _ = await service(world, ada=ADULT, t1=TEEN14, t2=TEEN14, t3=TEEN14)
    assert social.on_refusals_to_minors is None
    for minor in ("t1", "t2", "t3"):
        assert (await social.contact_request("ada", minor)).reason == "contact_not_allowed"


async def test_a_restart_keeps_names_blocks_unblocks_and_restrictions_without_a_word(world):
    social, events, _ = await service(
        world, ada=ADULT, bob=ADULT2, tia=TEEN14, tom=TEEN16, una=TEEN16
    )
    assert await social.social.announced_bands() == {
        "ada": "adult",
        "bob": "adult",
        "tia": "teen_13_15",
        "tom": "teen_16_17",
        "una": "teen_16_17",
    }
    for minor in ("tia", "tom", "una"):
        await social.contact_request(minor, "ada")
        await social.block(minor, "ada")
    await social.block("bob", "ada")
    await social.unblock("bob", "ada")
    assert social.restricted == {"ada"}
    for handle, info in social.accounts.items():
        await world.db.execute(
            "INSERT INTO accounts (handle, display_name, identity_key, dh_identity_key, "
            "birthdate, declaration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (handle, info.display_name, b"k" * 32, b"d" * 32, info.birthdate.isoformat(),
             b"{}", NOW.timestamp()),
        )  # fmt: skip
    await events.flush(world)
    await world.db.commit()
    events.take()
    again, events, _ = await service(world)
    await again.load()
    assert again.accounts["ada"] == social_store.AccountInfo("Ada", ADULT)
    assert again.restricted == {"ada"}
    assert again._blocks == {("tia", "ada"), ("tom", "ada"), ("una", "ada")}
    assert events.take() == []  # restriction isn't announced again at start


async def test_events_have_fresh_ids_and_a_failed_one_is_logged(world, caplog):
    social, events, _ = await service(world, ann=ADULT, bob=ADULT2)
    await connect(social, "bob", "ann")
    ids = [m.msg_id for m in events.sent]
    assert len(set(ids)) == len(ids) == 3
    # Time-ordered, like a client's (protocol/ids.py): 48 bits of time, 80 random bits.
    # The time part is the relay clock's when the event was made.
    made_at = time_ordered_id(int(NOW.timestamp() * 1000), bytes(RANDOM_BYTES))[:8]
    assert all(len(i) == 26 and i[:8] == made_at for i in ids)

    loop = asyncio.get_running_loop()
    with caplog.at_level("ERROR", logger="agechat.relay.policy"):
        failed = loop.create_future()
        failed.set_exception(RuntimeError("disk full"))
        service_module._log_failure(failed)
        cancelled = loop.create_future()
        cancelled.cancel()
        service_module._log_failure(cancelled)
        fine = loop.create_future()
        fine.set_result(None)
        service_module._log_failure(fine)
    assert caplog.messages == ["storing a relay event failed: disk full"]


async def test_a_birthdate_changed_outside_is_picked_up_on_reload(world):
    social, events, _ = await service(world, ann=ADULT, bob=ADULT2)
    await connect(social, "bob", "ann")
    for handle, info in social.accounts.items():
        await world.db.execute(
            "INSERT INTO accounts (handle, display_name, identity_key, dh_identity_key, "
            "birthdate, declaration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (handle, info.display_name, b"k" * 32, b"d" * 32, info.birthdate.isoformat(),
             b"{}", NOW.timestamp()),
        )  # fmt: skip
    await world.db.commit()
    events.take()
    await social.social.set_birthdate("ann", TEEN16, None)  # as `agechat admin` would
    await social.reload_accounts()
    assert social.band_of("ann") == "teen_16_17"
    assert social.mode("ann", "bob") == "visible"
    assert sorted((m.recipient, m.code) for m in events.sent) == [
        ("ann", "band_changed"),
        ("bob", "band_changed"),
    ]


async def test_a_remembered_decision_follows_the_facts_and_the_policy(world, monkeypatch):
    """`decide_message_now` remembers decisions by (facts, mode, policy): a block, a
    moderator's restriction, another policy or a build without e2ee must still change the
    answer at once."""
    social, _, _ = await service(world, ann=ADULT, bob=ADULT2, tia=TEEN14, tom=TEEN16)
    await social.contact_request("tia", "tom")
    await social.respond("tom", "tia", True)
    await social.contact_request("ann", "bob")
    await social.respond("bob", "ann", True)
    allowed = Decision("allow", "connected")
    for _ in range(2):  # the second time from memory
        assert social.decide_message_now("tia", "tom", "visible") == allowed
        assert social.decide_message_now("ann", "bob", "e2ee") == allowed
        assert social.decide_message_now("ann", "bob", "visible") == Decision(
            "refuse", "mode_mismatch"
        )
    await social.block("tom", "tia")
    assert social.decide_message_now("tia", "tom", "visible") == Decision(
        "drop", "blocked_by_target"
    )
    await social.contact_request("tom", "ann")
    await social.respond("ann", "tom", True)
    assert social.decide_message_now("ann", "tom", "visible") == allowed
    await social.restrict_by_moderator("ann", "test")
    assert social.decide_message_now("ann", "tom", "visible") is None  # refused: ask again
    assert (await social.decide_message("ann", "tom", "visible")).outcome == "refuse"
    base = social.policy
    social.policy = msgspec.structs.replace(
        base, encryption=msgspec.structs.replace(base.encryption, e2ee="never")
    )
    assert social.decide_message_now("bob", "ann", "e2ee") == Decision("refuse", "mode_mismatch")
    assert social.decide_message_now("bob", "ann", "visible") == allowed
    social.policy = base
    assert social.decide_message_now("bob", "ann", "e2ee") == allowed
    monkeypatch.setattr(policy_rules, "E2EE_AVAILABLE", False)
    assert social.decide_message_now("bob", "ann", "e2ee") == Decision("refuse", "mode_mismatch")
