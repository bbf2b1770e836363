"""Every refusal's sentence fits the rule and the direction that refused it (issue 9,
defect 6): a 14-year-old refused under `strict` is not told "Adults can't start
conversations with accounts under 18"."""

from __future__ import annotations

import itertools

import pytest

from protocol import policy as rules
from protocol.errors import wire_message
from protocol.policy import BANDS, RELATIONSHIPS, Facts, is_minor
from server.policy.loader import load_policy

PRESETS = {name: load_policy(name) for name in ("default", "strict", "open")}
DECISIONS = (rules.may_message, rules.may_request, rules.may_accept, rules.may_look_up)


def who(band: str) -> str:
    return "minor" if is_minor(band) else "adult"


def all_refusals():
    for (name, policy), actor, target, relationship, restricted in itertools.product(
        PRESETS.items(), BANDS, BANDS, RELATIONSHIPS, (False, True)
    ):
        facts = Facts(
            actor=actor,
            target=target,
            relationship=relationship,
            actor_restricted=restricted,
            target_restricted=restricted,
        )
        for decide in DECISIONS:
            decision = decide(policy, facts)
            if decision.outcome == "refuse":
                yield name, decide.__name__, facts, decision


REFUSALS = list(all_refusals())


def test_every_refusal_has_a_sentence():
    assert REFUSALS
    for _, _, _, decision in REFUSALS:
        assert decision.sentence.endswith("."), decision


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_contact_not_allowed_names_the_direction_that_refused(name):
    for preset, decide, f, decision in REFUSALS:
        if preset != name or decision.reason != "contact_not_allowed":
            continue
        text = decision.sentence
        pair = (who(f.actor), who(f.target))
        if decide == "may_accept":
            pair = pair[::-1]  # the requester is the one who started it
        if pair == ("minor", "adult"):
            assert "Adults can't start" not in text, (preset, decide, f, text)
        if pair[0] == pair[1]:
            assert "Adults can't start conversations with accounts under 18" not in text


def test_a_teen_refused_under_strict_is_told_the_rule_that_applies():
    strict = PRESETS["strict"]
    decision = rules.may_message(strict, Facts(actor="teen_13_15", target="adult"))
    assert decision.reason == "contact_not_allowed"
    assert decision.sentence != wire_message("contact_not_allowed")
    assert "under 18" in decision.sentence and "adults" in decision.sentence
    default = PRESETS["default"]
    adult = rules.may_message(default, Facts(actor="adult", target="teen_13_15"))
    assert adult.sentence == "Adults can't start conversations with accounts under 18."


def test_a_restricted_adult_and_the_minor_accepting_them_are_told_different_things():
    default = PRESETS["default"]
    own = rules.may_request(
        default, Facts(actor="adult", target="teen_16_17", actor_restricted=True)
    )
    theirs = rules.may_accept(
        default,
        Facts(
            actor="teen_16_17",
            target="adult",
            relationship="incoming_request",
            target_restricted=True,
        ),
    )
    assert own.reason == theirs.reason == "sender_restricted"
    assert own.sentence.startswith("Your account")
    assert not theirs.sentence.startswith("Your account")


def test_a_lookup_limit_is_not_called_a_contact_request_limit():
    default = PRESETS["default"]
    limited = rules.may_look_up(default, Facts(actor="adult", target="adult", lookups_today=10_000))
    assert limited.reason == "rate_limited"
    assert "look" in limited.sentence


def test_a_moderators_restriction_is_told_as_one_and_for_existing_contacts_too():
    default = PRESETS["default"]
    own = rules.may_message(
        default,
        Facts(
            actor="adult",
            target="teen_13_15",
            relationship="connected",
            actor_restricted_by_moderator=True,
        ),
    )
    assert own.reason == "sender_restricted"
    assert "moderator" in own.sentence and "existing contacts" in own.sentence
    theirs = rules.may_message(
        default,
        Facts(
            actor="teen_13_15",
            target="adult",
            relationship="connected",
            target_restricted_by_moderator=True,
        ),
    )
    assert theirs.reason == "contact_not_allowed" and "moderator" in theirs.sentence
    automatic = rules.may_request(
        default, Facts(actor="adult", target="teen_16_17", actor_restricted=True)
    )
    assert "moderator" not in automatic.sentence and "new contact" in automatic.sentence
