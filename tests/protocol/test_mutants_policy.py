"""The daily cap on new contacts applies to message requests too (issue 17, mutant 4).

POLICY.md: `limits.contact_requests_per_day` counts "new contacts (contact requests and
first messages that become message requests)", and `…_to_minors_per_day` those that go to
minors; past either, `rate_limited`. Deleting the check from the message path left every
test green; these pin it from the message side, in every preset.
"""

from __future__ import annotations

import pytest

from protocol import policy as rules
from protocol.policy import Decision, Facts
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
