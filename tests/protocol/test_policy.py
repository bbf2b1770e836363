"""The policy, table-driven: every band pair × relationship × preset, decision and reason."""

from __future__ import annotations

import itertools
from datetime import date

import pytest

from protocol import policy as rules
from protocol.policy import BANDS, RELATIONSHIPS, Facts, band, is_minor
from server.policy.loader import load_policy

PRESETS = {name: load_policy(name) for name in ("default", "strict", "open")}
R, Q, A, D = "refuse", "request", "allow", "drop"

# What a stranger's first contact does, per preset and direction: (message, contact request).
STRANGER = {
    "default": {
        ("adult", "minor"): ((R, "contact_not_allowed"), (R, "contact_not_allowed")),
        ("minor", "adult"): ((Q, "message_request"), (Q, "contact_request")),
        ("adult", "adult"): ((Q, "message_request"), (Q, "contact_request")),
        ("minor", "minor"): ((Q, "message_request"), (Q, "contact_request")),
    },
    "strict": {
        ("adult", "minor"): ((R, "contact_not_allowed"), (R, "contact_not_allowed")),
        ("minor", "adult"): ((R, "contact_not_allowed"), (R, "contact_not_allowed")),
        ("adult", "adult"): ((Q, "message_request"), (Q, "contact_request")),
        ("minor", "minor"): ((Q, "message_request"), (Q, "contact_request")),
    },
    "open": {
        pair: ((A, "direct"), (Q, "contact_request"))
        for pair in itertools.product(("adult", "minor"), repeat=2)
    },
}
# Who can find whom, per preset and direction: (as strangers, once connected).
FIND = {
    "default": {("adult", "minor"): (False, True)},
    "strict": {("adult", "minor"): (False, False), ("minor", "adult"): (False, False)},
    "open": {},
}
# Relationships other than "none" decide the same way in every preset.
MESSAGE_BY_RELATIONSHIP = {
    "connected": (A, "connected"),
    "declined": (R, "request_declined"),
    "incoming_request": (R, "request_awaiting_you"),
    "outgoing_request": (Q, "request_pending"),
    "awaiting_guardian": (R, "guardian_approval_pending"),
}
REQUEST_BY_RELATIONSHIP = {
    "connected": (R, "already_connected"),
    "declined": (R, "request_declined"),
    "incoming_request": (R, "request_awaiting_you"),
    "outgoing_request": (R, "request_pending"),
    "awaiting_guardian": (R, "guardian_approval_pending"),
}


def group(b: str) -> str:
    return "minor" if is_minor(b) else "adult"


CASES = list(itertools.product(PRESETS, BANDS, BANDS, RELATIONSHIPS))


@pytest.mark.parametrize(("preset", "actor", "target", "relationship"), CASES)
def test_message_request_and_find_decisions(preset, actor, target, relationship):
    policy = PRESETS[preset]
    facts = Facts(actor=actor, target=target, relationship=relationship)
    stranger_message, stranger_request = STRANGER[preset][(group(actor), group(target))]
    expected_message = MESSAGE_BY_RELATIONSHIP.get(relationship, stranger_message)
    expected_request = REQUEST_BY_RELATIONSHIP.get(relationship, stranger_request)
    if relationship == "outgoing_request" and stranger_message[0] == R:
        expected_message = stranger_message  # a request the rules no longer allow is dead
    if preset == "strict" and group(actor) != group(target) and relationship == "connected":
        expected_message = (R, "contact_not_allowed")  # `never`: not even existing contacts
    message = rules.may_message(policy, facts)
    request = rules.may_request(policy, facts)
    assert (message.outcome, message.reason) == expected_message
    assert (request.outcome, request.reason) == expected_request

    as_stranger, once_connected = FIND[preset].get((group(actor), group(target)), (True, True))
    found = rules.may_find(policy, facts).allowed
    assert found == (once_connected if relationship == "connected" else as_stranger)


@pytest.mark.parametrize(
    ("preset", "actor", "target"), list(itertools.product(PRESETS, BANDS, BANDS))
)
def test_a_block_turns_only_what_would_go_through_into_a_silent_drop(preset, actor, target):
    """So the blocked account gets exactly the answer it would have got: it can't tell."""
    policy = PRESETS[preset]
    for relationship in RELATIONSHIPS:
        open_ = Facts(actor, target, relationship)
        blocked = Facts(actor, target, relationship, target_blocked_actor=True)
        for decide in (rules.may_message, rules.may_request):
            without, with_block = decide(policy, open_), decide(policy, blocked)
            if without.allowed:
                assert with_block == rules.Decision(D, "blocked_by_target")
            else:
                assert with_block == without
        assert not rules.may_find(policy, blocked).allowed
        by_actor = Facts(actor, target, relationship, actor_blocked_target=True)
        assert rules.may_message(policy, by_actor) == rules.Decision(R, "you_blocked")
        assert rules.may_request(policy, by_actor) == rules.Decision(R, "you_blocked")


@pytest.mark.parametrize("preset", PRESETS)
def test_restricted_adults_cannot_start_contact_with_minors(preset):
    policy = PRESETS[preset]
    for minor in ("teen_13_15", "teen_16_17"):
        f = Facts("adult", minor, actor_restricted=True)
        expected = (A, "direct") if preset == "open" else (R, "sender_restricted")
        decision = rules.may_message(policy, f)
        assert (decision.outcome, decision.reason) == expected
        # ...but keep existing contacts (where the preset allows any), and can reach adults.
        connected = rules.may_message(
            policy, Facts("adult", minor, "connected", actor_restricted=True)
        )
        assert connected.allowed == (preset != "strict")
        assert rules.may_message(policy, Facts("adult", "adult", actor_restricted=True)).allowed
        # A restricted adult may not accept a minor's request either.
        if preset == "open":
            continue
        accept = rules.may_accept(
            policy, Facts("adult", minor, "incoming_request", actor_restricted=True)
        )
        assert (accept.outcome, accept.reason) == (R, "sender_restricted")


@pytest.mark.parametrize("preset", PRESETS)
def test_rate_limits(preset):
    policy = PRESETS[preset]
    limit = policy.limits.contact_requests_per_day
    to_minors = policy.limits.contact_requests_to_minors_per_day
    assert rules.may_request(policy, Facts("adult", "adult", requests_today=limit - 1)).allowed
    over = rules.may_request(policy, Facts("adult", "adult", requests_today=limit))
    assert (over.outcome, over.reason) == (R, "rate_limited")
    minor_over = rules.may_request(
        policy, Facts("teen_16_17", "teen_13_15", requests_to_minors_today=to_minors)
    )
    assert (minor_over.outcome, minor_over.reason) == (R, "rate_limited")
    assert to_minors <= limit  # "lower towards minors" (or equal, in open)


def test_guardian_hook_in_strict():
    strict = PRESETS["strict"]
    f = Facts("adult", "teen_13_15", guardian_approved=True)
    assert rules.may_message(strict, f) == rules.Decision(A, "guardian_approved")
    assert rules.may_find(
        strict, Facts("adult", "teen_13_15", "connected", guardian_approved=True)
    ).allowed
    # The default preset has the hook switched off.
    assert not rules.may_message(PRESETS["default"], f).allowed


def test_accept_needs_a_pending_request():
    policy = PRESETS["default"]
    for relationship in RELATIONSHIPS:
        decision = rules.may_accept(policy, Facts("adult", "teen_13_15", relationship))
        if relationship == "incoming_request":
            assert decision == rules.Decision(A, "accepted")
        else:
            assert decision == rules.Decision(R, "no_pending_request")


@pytest.mark.parametrize(
    ("born", "today", "expected"),
    [
        (date(2010, 5, 10), date(2023, 5, 9), "under_13"),
        (date(2010, 5, 10), date(2023, 5, 10), "teen_13_15"),
        (date(2010, 5, 10), date(2026, 5, 9), "teen_13_15"),
        (date(2010, 5, 10), date(2026, 5, 10), "teen_16_17"),
        (date(2010, 5, 10), date(2028, 5, 9), "teen_16_17"),
        (date(2010, 5, 10), date(2028, 5, 10), "adult"),  # adult on the 18th birthday
        (date(2008, 2, 29), date(2026, 2, 28), "teen_16_17"),  # leap-day births: 1 March
        (date(2008, 2, 29), date(2026, 3, 1), "adult"),
    ],
)
def test_band_boundaries(born, today, expected):
    assert band(born, today) == expected


def test_registration_minimum_age():
    today = date(2026, 11, 23)
    twelve = date(2014, 1, 1)
    assert rules.may_register(PRESETS["default"], twelve, today) == rules.Decision(
        R, "under_minimum_age"
    )
    assert rules.may_register(PRESETS["default"], date(2013, 11, 23), today).allowed  # 13 today
    assert rules.may_register(PRESETS["open"], twelve, today).allowed


@pytest.mark.parametrize(
    ("preset", "current", "new", "expected"),
    [
        ("default", date(2011, 1, 1), date(1990, 1, 1), (R, "age_change_requires_assurance")),
        ("default", date(2011, 1, 1), date(2009, 12, 1), (R, "age_change_requires_assurance")),
        ("default", date(2011, 1, 1), date(2011, 6, 1), (A, "birthdate_changed")),  # younger
        # An older date inside the same band still needs assurance (bands roll over).
        ("default", date(2011, 1, 1), date(2010, 12, 1), (R, "age_change_requires_assurance")),
        ("default", date(1990, 1, 1), date(2011, 1, 1), (A, "birthdate_changed")),  # younger
        ("default", date(1990, 1, 1), date(2020, 1, 1), (R, "under_minimum_age")),
        ("open", date(2011, 1, 1), date(1990, 1, 1), (A, "birthdate_changed")),
    ],
)
def test_birthdate_changes(preset, current, new, expected):
    decision = rules.may_change_birthdate(PRESETS[preset], current, new, date(2026, 11, 23))
    assert (decision.outcome, decision.reason) == expected


def test_modes_follow_the_policy(monkeypatch):
    default, strict, open_ = PRESETS["default"], PRESETS["strict"], PRESETS["open"]
    for preset in (default, strict):
        assert rules.conversation_mode(preset, ["adult", "adult"]) == "e2ee"
        assert rules.conversation_mode(preset, ["adult", "teen_16_17"]) == "visible"
        assert rules.conversation_mode(preset, ["teen_13_15", "teen_13_15"]) == "visible"
    assert rules.conversation_mode(open_, ["adult", "teen_13_15"]) == "e2ee"
    # The switch that runs the relay as if nobody could encrypt.
    monkeypatch.setattr(rules, "E2EE_AVAILABLE", False)
    assert rules.conversation_mode(open_, ["adult", "adult"]) == "visible"


def test_restriction_thresholds():
    default = PRESETS["default"]
    r = default.restriction
    assert not rules.is_restricted(default, r.minors_blocking_or_reporting - 1, 0)
    assert rules.is_restricted(default, r.minors_blocking_or_reporting, 0)
    assert rules.is_restricted(default, 0, r.refused_or_declined_requests_to_minors)
    assert not rules.is_restricted(PRESETS["open"], 10**6, 10**6)


@pytest.mark.parametrize("preset", PRESETS)
def test_notices_go_to_minors_only(preset):
    policy = PRESETS[preset]
    on = preset != "open"
    assert (rules.minor_notice(policy, "contact_accepted", "teen_13_15", "adult") is not None) == on
    assert rules.minor_notice(policy, "contact_accepted", "teen_13_15", "teen_16_17") is None
    assert rules.minor_notice(policy, "message_request", "adult", "adult") is None
    assert (
        rules.minor_notice(policy, "contact_restricted", "teen_16_17", "adult") is not None
    ) == on


def test_restriction_follows_the_account_into_a_minor_band():
    default = PRESETS["default"]
    redeclared = Facts("teen_16_17", "teen_13_15", actor_restricted=True)
    assert rules.may_request(default, redeclared) == rules.Decision(R, "sender_restricted")
    assert rules.may_message(default, redeclared) == rules.Decision(R, "sender_restricted")
    # ...but contact with adults is untouched.
    assert rules.may_request(default, Facts("teen_16_17", "adult", actor_restricted=True)).allowed


def test_accepting_rechecks_the_request_under_todays_rules():
    default = PRESETS["default"]
    # An adult's request from before the target became (or was corrected to) a minor.
    stale = Facts("teen_13_15", "adult", "incoming_request")
    assert rules.may_accept(default, stale) == rules.Decision(R, "contact_not_allowed")
    # A minor accepting a request from an adult who has since been restricted.
    minor_asked = Facts("teen_13_15", "adult", "incoming_request", target_restricted=True)
    assert rules.may_accept(default, minor_asked).outcome == R
    # The ordinary case: an adult accepts a minor's request.
    assert rules.may_accept(default, Facts("adult", "teen_13_15", "incoming_request")).allowed
    # A stale request can't carry more messages either.
    assert not rules.may_message(default, Facts("adult", "teen_13_15", "outgoing_request")).allowed


def test_guardian_hook_never_lifts_restriction():
    strict = PRESETS["strict"]
    f = Facts("adult", "teen_13_15", guardian_approved=True, actor_restricted=True)
    assert rules.may_message(strict, f) == rules.Decision(R, "sender_restricted")
