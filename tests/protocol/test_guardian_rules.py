"""Guardian-link decisions (`may_invite_guardian`, `may_accept_guardian`), table-driven from
docs/POLICY.md "Guardians" and PROTOCOL.md §6.7, over every preset and the hand-made policies
of test_rules_table (every pair rule differs), each band pair, relationship, link state,
block, restriction and count of guardians (issue 16)."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from protocol import policy as rules
from protocol.policy import BANDS, RELATIONSHIPS, Facts, LinkFacts, Policy
from tests.protocol.test_rules_table import POLICIES, capped, group, never_between, pair_rule

R, Q, A, D = "refuse", "request", "allow", "drop"
LINKS = ("none", "invite_sent", "invite_received", "linked")


def adult_restricted(policy: Policy, f: Facts) -> bool:
    """The adult of the pair is restricted (automatically where the policy enables it, or by
    a moderator), whichever of the two is asking."""
    if group(f.actor) == "adult":
        auto, by_moderator = f.actor_restricted, f.actor_restricted_by_moderator
    else:
        auto, by_moderator = f.target_restricted, f.target_restricted_by_moderator
    return by_moderator or (policy.restriction.enabled and auto)


def expected_invite(policy: Policy, lf: LinkFacts) -> tuple[str, str]:
    f = lf.pair
    decision = _invite(policy, lf)
    if f.target_blocked_actor and decision[0] == Q:
        return (D, "blocked_by_target")  # looks sent; never shown to the blocker
    return decision


def _invite(policy: Policy, lf: LinkFacts) -> tuple[str, str]:
    f, g = lf.pair, policy.guardians
    if g.max_guardians == 0:
        return (R, "guardian_links_off")
    if group(f.actor) == group(f.target):
        return (R, "guardian_pair_invalid")  # one adult and one minor
    if f.actor_blocked_target:
        return (R, "you_blocked")
    by_link = {
        "linked": "already_linked",
        "invite_sent": "guardian_invite_pending",
        "invite_received": "guardian_invite_awaiting_you",
    }
    if lf.link in by_link:
        return (R, by_link[lf.link])
    if lf.ward_guardians >= g.max_guardians:
        return (R, "too_many_guardians")
    if adult_restricted(policy, f):
        return (R, "sender_restricted")
    if group(f.actor) == "adult":
        # "the adult cannot start it unless the pair rule or an existing connection allows"
        if never_between(policy, f.actor, f.target):
            return (R, "contact_not_allowed")
        refused = pair_rule(policy, f.actor, f.target).initiate == "refused"
        if refused and f.relationship != "connected":
            return (R, "contact_not_allowed")
    if rules.is_stranger(f.relationship) and capped(policy, f):
        return (R, "rate_limited")
    return (Q, "guardian_invite")


def expected_accept(policy: Policy, lf: LinkFacts) -> tuple[str, str]:
    f, g = lf.pair, policy.guardians
    if lf.link != "invite_received" or f.actor_blocked_target:
        return (R, "no_pending_invite")
    if g.max_guardians == 0:
        return (R, "guardian_links_off")
    if group(f.actor) == group(f.target):
        return (R, "guardian_pair_invalid")
    if lf.ward_guardians >= g.max_guardians:
        return (R, "too_many_guardians")
    if adult_restricted(policy, f):
        return (R, "sender_restricted")
    return (A, "linked")


VARIANTS: list[dict[str, object]] = [
    {},
    {"target_blocked_actor": True},
    {"actor_blocked_target": True},
    {"actor_restricted": True},
    {"target_restricted": True},
    {"actor_restricted_by_moderator": True},
    {"target_restricted_by_moderator": True},
    {"requests_today": 1000},
    {"requests_to_minors_today": 1000},
]


def with_max(policy: Policy, n: int) -> Policy:
    return msgspec.structs.replace(
        policy, guardians=msgspec.structs.replace(policy.guardians, max_guardians=n)
    )


@pytest.mark.parametrize(
    ("name", "actor", "target"), list(itertools.product(POLICIES, BANDS, BANDS))
)
def test_every_invitation_and_acceptance_decides_as_documented(name, actor, target):
    wrong = []
    for policy in (POLICIES[name], with_max(POLICIES[name], 0), with_max(POLICIES[name], 1)):
        cases = itertools.product(RELATIONSHIPS, LINKS, (0, 1, 2), VARIANTS)
        for relationship, link, others, extra in cases:
            pair = Facts(actor=actor, target=target, relationship=relationship, **extra)
            lf = LinkFacts(pair=pair, link=link, ward_guardians=others)
            for decide, expect in (
                (rules.may_invite_guardian, expected_invite),
                (rules.may_accept_guardian, expected_accept),
            ):
                got = decide(policy, lf)
                if (got.outcome, got.reason) != expect(policy, lf):
                    wrong.append((decide.__name__, relationship, link, others, extra, got))
    assert wrong == []


def test_under_strict_only_the_teen_starts_a_link_and_a_restricted_adult_never_links():
    strict = POLICIES["strict"]
    teen, adult = "teen_13_15", "adult"
    by_adult = rules.may_invite_guardian(strict, LinkFacts(Facts(adult, teen)))
    assert (by_adult.reason, by_adult.sentence) == (
        "contact_not_allowed",
        "This relay's policy doesn't allow contact between adults and people under 18.",
    )
    by_teen = rules.may_invite_guardian(strict, LinkFacts(Facts(teen, adult)))
    assert by_teen == rules.Decision(Q, "guardian_invite")
    restricted = rules.may_invite_guardian(
        strict, LinkFacts(Facts(teen, adult, target_restricted_by_moderator=True))
    )
    assert restricted.reason == "sender_restricted"
    assert restricted.sentence.startswith("This account has been restricted by a moderator")
    own = rules.may_accept_guardian(
        strict, LinkFacts(Facts(adult, teen, actor_restricted=True), link="invite_received")
    )
    assert own.reason == "sender_restricted" and own.sentence.startswith("Your account")
