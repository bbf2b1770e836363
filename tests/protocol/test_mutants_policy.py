"""The daily cap on new contacts applies to message requests too (issue 17, mutant 4);
and the policy's sentences and boundaries that mutation testing found unguarded.

POLICY.md: `limits.contact_requests_per_day` counts "new contacts (contact requests and
first messages that become message requests)", and `…_to_minors_per_day` those that go to
minors; past either, `rate_limited`. Deleting the check from the message path left every
test green; these pin it from the message side, in every preset.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import msgspec
import pytest

from protocol import policy as rules
from protocol.policy import Contact, Decision, Facts, PairRule
from server.policy.loader import load_policy

PRESETS = {name: load_policy(name) for name in ("default", "strict", "open")}
#: What a stranger's first message becomes under the cap, per preset, between two adults
#: and between two minors (both allowed to start contact in every preset).
UNDER_CAP = {
    "default": Decision("request", "message_request"),
    "strict": Decision("request", "message_request"),
    "open": Decision("allow", "direct"),
}
MINORS_SENTENCE = (
    "You've started too many new contacts with people under 18 today. Try again tomorrow."
)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("pair", [("adult", "adult"), ("teen_16_17", "teen_13_15")])
def test_a_strangers_first_message_counts_against_the_daily_cap(preset, pair):
    policy = PRESETS[preset]
    limit = policy.limits.contact_requests_per_day
    actor, target = pair
    under = rules.may_message(policy, Facts(actor, target, requests_today=limit - 1))
    assert under == UNDER_CAP[preset]
    for count in (limit, limit + 1):
        over = rules.may_message(policy, Facts(actor, target, requests_today=count))
        assert over == Decision("refuse", "rate_limited")
        assert over.sentence == rules.wire_message("rate_limited")
    # A stranger again after changing one's mind counts the same way.
    again = Facts(actor, target, "declined_by_actor", requests_today=limit)
    assert rules.may_message(policy, again) == Decision("refuse", "rate_limited")


@pytest.mark.parametrize("preset", PRESETS)
def test_the_lower_cap_towards_minors_applies_to_message_requests(preset):
    policy = PRESETS[preset]
    cap = policy.limits.contact_requests_to_minors_per_day
    total = min(cap, policy.limits.contact_requests_per_day - 1)  # under the overall cap
    under = Facts(
        "teen_16_17", "teen_13_15", requests_today=total, requests_to_minors_today=cap - 1
    )
    assert rules.may_message(policy, under) == UNDER_CAP[preset]
    over = Facts("teen_16_17", "teen_13_15", requests_today=total, requests_to_minors_today=cap)
    decision = rules.may_message(policy, over)
    assert decision == Decision("refuse", "rate_limited")
    assert decision.sentence == MINORS_SENTENCE
    # The count of requests to minors doesn't limit contact with adults.
    to_adult = Facts("teen_16_17", "adult", requests_today=total, requests_to_minors_today=cap)
    expected = {
        "default": Decision("request", "message_request"),
        "strict": Decision("refuse", "contact_not_allowed"),  # `never`, not the cap
        "open": Decision("allow", "direct"),
    }
    assert rules.may_message(policy, to_adult) == expected[preset]


@pytest.mark.parametrize("preset", PRESETS)
def test_the_cap_only_limits_new_contacts(preset):
    """Contacts and a waiting request's follow-ups aren't new contacts: never capped."""
    policy = PRESETS[preset]
    limit = policy.limits.contact_requests_per_day
    busy = {"requests_today": limit + 5, "requests_to_minors_today": limit + 5}
    connected = rules.may_message(policy, Facts("adult", "adult", "connected", **busy))
    assert connected == Decision("allow", "connected")
    pending = rules.may_message(policy, Facts("adult", "adult", "outgoing_request", **busy))
    assert pending == Decision("request", "request_pending")


def test_a_capped_message_to_someone_who_blocked_you_is_the_same_refusal():
    """The cap's refusal comes first, so a block doesn't change the answer."""
    policy = PRESETS["default"]
    limit = policy.limits.contact_requests_per_day
    blocked = Facts("adult", "adult", requests_today=limit, target_blocked_actor=True)
    assert rules.may_message(policy, blocked) == Decision("refuse", "rate_limited")
    under = Facts("adult", "adult", requests_today=limit - 1, target_blocked_actor=True)
    assert rules.may_message(policy, under) == Decision("drop", "blocked_by_target")


# --- the sentences each refusal carries, exactly ------------------------------------------

ALL_REFUSED = msgspec.structs.replace(
    PRESETS["default"],
    contact=Contact(
        **{
            pair: PairRule(search="always", initiate="refused")
            for pair in ("adult_to_minor", "minor_to_adult", "adult_to_adult", "minor_to_minor")
        }
    ),
)
ALL_NEVER = msgspec.structs.replace(
    ALL_REFUSED,
    contact=Contact(
        **{
            pair: PairRule(search="always", initiate="never")
            for pair in ("adult_to_minor", "minor_to_adult", "adult_to_adult", "minor_to_minor")
        }
    ),
)


@pytest.mark.parametrize(
    ("actor", "target", "sentence"),
    [
        # POLICY.md quotes the first; the others name their own direction.
        ("adult", "teen_13_15", "Adults can't start conversations with accounts under 18."),
        (
            "teen_16_17",
            "adult",
            "Accounts under 18 can't start conversations with adults under this relay's policy.",
        ),
        (
            "under_13",
            "teen_16_17",
            "Accounts under 18 can't start conversations with each other under this relay's "
            "policy.",
        ),
        (
            "adult",
            "adult",
            "Adults can't start conversations with other adults under this relay's policy.",
        ),
    ],
)
def test_refused_says_which_direction(actor, target, sentence):
    for decide in (rules.may_message, rules.may_request):
        decision = decide(ALL_REFUSED, Facts(actor, target))
        assert (decision.reason, decision.sentence) == ("contact_not_allowed", sentence)
    # Accepting a request that is no longer allowed says so, then why (the requester's way).
    accept = rules.may_accept(ALL_REFUSED, Facts(target, actor, "incoming_request"))
    assert (accept.reason, accept.sentence) == (
        "contact_not_allowed",
        f"This request is no longer allowed. {sentence}",
    )


@pytest.mark.parametrize(
    ("actor", "target", "between"),
    [
        ("adult", "teen_13_15", "adults and people under 18"),  # POLICY.md's example
        ("teen_13_15", "adult", "adults and people under 18"),
        ("adult", "adult", "adults"),
        ("teen_16_17", "under_13", "people under 18"),
    ],
)
def test_never_says_between_whom(actor, target, between):
    decision = rules.may_message(ALL_NEVER, Facts(actor, target, "connected"))
    assert decision.sentence == f"This relay's policy doesn't allow contact between {between}."


def test_the_restriction_sentences():
    default = PRESETS["default"]
    own = rules.may_accept(
        default, Facts("adult", "teen_13_15", "incoming_request", actor_restricted=True)
    )
    assert own.sentence == (
        "Your account can't start new contact with people under 18: it was restricted after "
        "blocks, reports or refused requests."
    )
    by_moderator = rules.may_accept(
        default,
        Facts("adult", "teen_13_15", "incoming_request", actor_restricted_by_moderator=True),
    )
    assert by_moderator.sentence == (
        "Your account can't contact people under 18, including existing contacts: a moderator "
        "restricted it."
    )


def test_the_lookup_limit_sentence():
    policy = PRESETS["default"]
    limited = rules.lookup_limited(policy, policy.limits.lookups_per_day)
    assert limited is not None
    assert limited.sentence == (
        "You've looked up too many accounts you aren't in contact with today. Try again tomorrow."
    )


@pytest.mark.parametrize(
    ("born", "today", "age"),
    [
        (date(2010, 5, 10), date(2026, 5, 9), 15),
        (date(2010, 5, 10), date(2026, 5, 10), 16),
        (date(2010, 5, 10), date(2026, 12, 31), 16),
        (date(2010, 12, 31), date(2026, 1, 1), 15),
        (date(2008, 2, 29), date(2026, 2, 28), 17),
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2026, 1, 1), date(2026, 1, 1), 0),
    ],
)
def test_age_on(born, today, age):
    assert rules.age_on(born, today) == age


def test_a_birth_date_of_today_is_not_in_the_future():
    open_ = PRESETS["open"]  # minimum age 0
    today = date(2026, 11, 23)
    assert rules.may_change_birthdate(open_, date(2020, 1, 1), today, today).allowed
    assert rules.may_register(open_, today, today).allowed


def test_a_route_to_an_undeclared_queue_is_named():
    text = (Path(__file__).parents[2] / "policies" / "default.toml").read_text()
    text = text.replace('otherwise = "general"', 'otherwise = "elsewhere"')
    with pytest.raises(
        msgspec.ValidationError, match=r"moderation\.routes names queue 'elsewhere'"
    ):
        rules.parse_policy(text)
