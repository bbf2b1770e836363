"""The age rules, table-driven from docs/POLICY.md (and MODERATION.md's `restrict`), not from
the implementation (issue 17).

``expected_*`` below restate the documented rules over a policy's *data*: the pair rule is
looked up by its documented name (`<actor group>_to_<target group>`, read actor → target),
so a policy whose four pair rules all differ makes a swapped or ignored rule fail. Every
band pair × relationship runs through each preset and through hand-made policies in which
every pair rule differs, `e2ee = "never"` and `always` included, with blocks, restriction
(automatic and a moderator's), the guardian hook and the daily caps. Reason codes are
asserted exactly; where POLICY.md names no priority between two codes, the situation's own
code (a block, then the relationship's state) comes before the pair rule, then the caps.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import msgspec
import pytest

from protocol import policy as rules
from protocol.policy import BANDS, RELATIONSHIPS, Contact, Decision, Facts, PairRule, Policy
from server.policy.loader import load_policy, policy_path

PRESETS = {name: load_policy(name) for name in ("default", "strict", "open")}
R, Q, A, D = "refuse", "request", "allow", "drop"


def group(band: str) -> str:
    """POLICY.md "Age bands": every band but `adult` is a minor."""
    return "adult" if band == "adult" else "minor"


def pair_rule(policy: Policy, actor: str, target: str) -> PairRule:
    """POLICY.md: pairs are `adult_to_minor`, `minor_to_adult`, `adult_to_adult`,
    `minor_to_minor`, read as actor → target."""
    return getattr(policy.contact, f"{group(actor)}_to_{group(target)}")


def make(
    name: str,
    *,
    a2m: tuple[str, str],
    m2a: tuple[str, str],
    a2a: tuple[str, str],
    m2m: tuple[str, str],
    e2ee: str = "all_adults",
    restriction: bool = True,
    guardian: bool = False,
    approvals: str = "never",
    per_day: int = 4,
    to_minors: int = 2,
) -> Policy:
    """`default` with every contact rule (search, initiate) and a few dials replaced."""
    base = PRESETS["default"]

    def rule(pair: tuple[str, str]) -> PairRule:
        return PairRule(search=pair[0], initiate=pair[1])

    return msgspec.structs.replace(
        base,
        name=name,
        encryption=msgspec.structs.replace(base.encryption, e2ee=e2ee),
        contact=Contact(
            adult_to_minor=rule(a2m),
            minor_to_adult=rule(m2a),
            adult_to_adult=rule(a2a),
            minor_to_minor=rule(m2m),
        ),
        restriction=msgspec.structs.replace(base.restriction, enabled=restriction),
        guardians=msgspec.structs.replace(
            base.guardians, lifts_pair_rules=guardian, approvals=approvals
        ),
        limits=msgspec.structs.replace(
            base.limits,
            contact_requests_per_day=per_day,
            contact_requests_to_minors_per_day=to_minors,
        ),
    )


# Hand-made policies: within each, the four pairs' (search, initiate) all differ, and
# adult_to_adult and minor_to_minor differ in both.
HAND_MADE = {
    "distinct": make(
        "distinct",
        a2m=("never", "refused"),
        m2a=("connected_only", "request"),
        a2a=("always", "direct"),
        m2m=("connected_only", "refused"),
        e2ee="never",
    ),
    "distinct_flipped": make(
        "distinct_flipped",
        a2m=("always", "request"),
        m2a=("never", "direct"),
        a2a=("connected_only", "refused"),
        m2m=("always", "direct"),
        e2ee="always",
        guardian=True,
        approvals="adults_only",
    ),
    "adults_never": make(
        "adults_never",
        a2m=("always", "request"),
        m2a=("connected_only", "refused"),
        a2a=("always", "never"),
        m2m=("connected_only", "direct"),
        restriction=False,
        approvals="adults_only",
    ),
    "minors_never": make(
        "minors_never",
        a2m=("connected_only", "direct"),
        m2a=("always", "refused"),
        a2a=("never", "request"),
        m2m=("always", "never"),
        guardian=True,
        per_day=2,
        to_minors=1,
    ),
    "never_one_way": make(
        "never_one_way",
        a2m=("always", "never"),
        m2a=("always", "direct"),
        a2a=("connected_only", "request"),
        m2m=("never", "direct"),
        e2ee="never",
    ),
}
POLICIES = {**PRESETS, **HAND_MADE}


def test_hand_made_policies_give_every_pair_its_own_rule():
    for policy in HAND_MADE.values():
        c = policy.contact
        pairs = [c.adult_to_minor, c.minor_to_adult, c.adult_to_adult, c.minor_to_minor]
        assert len(set(pairs)) == 4
        assert c.adult_to_adult.search != c.minor_to_minor.search
        assert c.adult_to_adult.initiate != c.minor_to_minor.initiate


# --- the rules, restated -----------------------------------------------------------------


def never_between(policy: Policy, a: str, b: str) -> bool:
    """`never`: "no contact at all, not even between existing contacts" — either way."""
    return "never" in (pair_rule(policy, a, b).initiate, pair_rule(policy, b, a).initiate)


def restricted(policy: Policy, f: Facts) -> bool:
    """Automatic restriction where the policy enables it; a moderator's under any policy."""
    return f.actor_restricted_by_moderator or (policy.restriction.enabled and f.actor_restricted)


def guardian(policy: Policy, f: Facts) -> bool:
    """The hook lifts the pair rule (never restriction) where the policy switches it on."""
    return f.guardian_approved and policy.guardians.lifts_pair_rules


def needs_approval(policy: Policy, f: Facts) -> bool:
    """POLICY.md `guardians.approvals`: with `adults_only`, a new contact between a minor
    who has a guardian and an adult (not that guardian) waits for the guardian."""
    return (
        f.supervised
        and not f.guardian_approved
        and policy.guardians.approvals == "adults_only"
        and group(f.actor) != group(f.target)
    )


def contact_refusal(policy: Policy, f: Facts, *, existing: bool) -> str | None:
    """The refusal the age rules give actor → target, for an existing contact or a new one."""
    # MODERATION.md `restrict`: no contact with any minor, existing contacts included;
    # POLICY.md `restriction.*`: every *new* contact with any minor is refused.
    if group(f.target) == "minor" and (
        f.actor_restricted_by_moderator or (restricted(policy, f) and not existing)
    ):
        return "sender_restricted"
    if group(f.actor) == "minor" and f.target_restricted_by_moderator:
        return "contact_not_allowed"  # "in both directions"
    if guardian(policy, f):
        return None
    if never_between(policy, f.actor, f.target):
        return "contact_not_allowed"
    if not existing and pair_rule(policy, f.actor, f.target).initiate == "refused":
        return "contact_not_allowed"
    return None


def capped(policy: Policy, f: Facts) -> bool:
    """`limits.contact_requests_per_day`, and `…_to_minors_per_day` for a minor target."""
    return f.requests_today >= policy.limits.contact_requests_per_day or (
        group(f.target) == "minor"
        and f.requests_to_minors_today >= policy.limits.contact_requests_to_minors_per_day
    )


def blocked(f: Facts, decision: tuple[str, str]) -> tuple[str, str]:
    """A block: the blocker can't write (`you_blocked`); what the blocked person sends that
    would have gone through is silently dropped, and a refusal stays that refusal."""
    if f.actor_blocked_target:
        return (R, "you_blocked")
    if f.target_blocked_actor and decision[0] in (A, Q):
        return (D, "blocked_by_target")
    return decision


def expected_message(policy: Policy, f: Facts) -> tuple[str, str]:
    return blocked(f, _message(policy, f))


def _message(policy: Policy, f: Facts) -> tuple[str, str]:
    rel = f.relationship
    if rel == "connected":
        refusal = contact_refusal(policy, f, existing=True)
        return (R, refusal) if refusal else (A, "connected")
    if rel == "declined":
        return (R, "request_declined")  # stays declined until the other reaches out
    if rel == "incoming_request":
        return (R, "request_awaiting_you")  # accept before writing back
    if rel == "awaiting_guardian":
        return (R, "guardian_approval_pending")  # nobody writes until the guardian answers
    if refusal := contact_refusal(policy, f, existing=False):
        return (R, refusal)  # a request's follow-ups too: decided under today's rules
    if guardian(policy, f):
        return (A, "guardian_approved")  # "treated as connected"
    if rel == "outgoing_request":
        return (Q, "request_pending")  # travels with the waiting request
    if capped(policy, f):
        return (R, "rate_limited")  # a new contact: "none" or "declined_by_actor"
    if pair_rule(policy, f.actor, f.target).initiate == "direct" and not needs_approval(policy, f):
        return (A, "direct")
    return (Q, "message_request")  # a supervised minor's new adult contact: always a request


def expected_request(policy: Policy, f: Facts) -> tuple[str, str]:
    return blocked(f, _request(policy, f))


def _request(policy: Policy, f: Facts) -> tuple[str, str]:
    by_state = {
        "connected": "already_connected",
        "outgoing_request": "request_pending",
        "declined": "request_declined",
        "incoming_request": "request_awaiting_you",
        "awaiting_guardian": "guardian_approval_pending",
    }
    if f.relationship in by_state:
        return (R, by_state[f.relationship])
    if refusal := contact_refusal(policy, f, existing=False):
        return (R, refusal)
    if capped(policy, f):
        return (R, "rate_limited")
    return (Q, "contact_request")


def expected_find(policy: Policy, f: Facts) -> tuple[str, str]:
    """`contact.<pair>.search`; the blocker disappears from the blocked person's search; a
    restricted account doesn't find minors it isn't connected with, and one a moderator
    restricted no minor at all (MODERATION.md `restrict`); `never` hides both."""
    hidden = (R, "hidden_from_search")
    if f.target_blocked_actor:
        return hidden
    if f.actor_restricted_by_moderator and group(f.target) == "minor":
        return hidden
    if restricted(policy, f) and group(f.target) == "minor" and f.relationship != "connected":
        return hidden
    if guardian(policy, f):
        return (A, "guardian_approved")
    if never_between(policy, f.actor, f.target):
        return hidden
    search = pair_rule(policy, f.actor, f.target).search
    if search == "always":
        return (A, "searchable")
    if search == "connected_only" and f.relationship == "connected":
        return (A, "connected")
    return hidden


def expected_accept(policy: Policy, f: Facts) -> tuple[str, str]:
    """Accepting re-checks the request as if the requester (target) made it now."""
    if f.relationship != "incoming_request":
        return (R, "no_pending_request")
    if restricted(policy, f) and group(f.target) == "minor":
        return (R, "sender_restricted")  # "accepting a minor's request included"
    requester = Facts(
        actor=f.target,
        target=f.actor,
        actor_restricted=f.target_restricted,
        actor_restricted_by_moderator=f.target_restricted_by_moderator,
        guardian_approved=f.guardian_approved,
    )
    refusal = contact_refusal(policy, requester, existing=False)
    if refusal:
        return (R, refusal)
    return (A, "awaiting_guardian") if needs_approval(policy, f) else (A, "accepted")


def variants(policy: Policy) -> list[dict[str, object]]:
    per_day = policy.limits.contact_requests_per_day
    to_minors = policy.limits.contact_requests_to_minors_per_day
    return [
        {},
        {"target_blocked_actor": True},
        {"actor_blocked_target": True},
        {"actor_blocked_target": True, "target_blocked_actor": True},
        {"actor_restricted": True},
        {"target_restricted": True},
        {"actor_restricted_by_moderator": True},
        {"target_restricted_by_moderator": True},
        {"guardian_approved": True},
        {"guardian_approved": True, "actor_restricted": True},
        {"guardian_approved": True, "target_blocked_actor": True},
        {"supervised": True},
        {"supervised": True, "guardian_approved": True},
        {"supervised": True, "target_blocked_actor": True},
        {"supervised": True, "actor_restricted": True},
        {"requests_today": per_day - 1, "requests_to_minors_today": min(per_day, to_minors) - 1},
        {"requests_today": per_day},
        {"requests_today": to_minors, "requests_to_minors_today": to_minors},
        {"requests_today": per_day, "target_blocked_actor": True},
    ]


def got(decision: Decision) -> tuple[str, str]:
    return (decision.outcome, decision.reason)


@pytest.mark.parametrize(
    ("name", "actor", "target"), list(itertools.product(POLICIES, BANDS, BANDS))
)
def test_every_pair_and_relationship_decides_as_the_rules_say(name, actor, target):
    policy = POLICIES[name]
    wrong = []
    for relationship, extra in itertools.product(RELATIONSHIPS, variants(policy)):
        f = Facts(actor=actor, target=target, relationship=relationship, **extra)
        checks = [
            ("may_message", rules.may_message, expected_message),
            ("may_request", rules.may_request, expected_request),
            ("may_accept", rules.may_accept, expected_accept),
            ("may_find", rules.may_find, expected_find),
        ]
        for what, decide, expect in checks:
            if got(decide(policy, f)) != expect(policy, f):
                wrong.append((what, relationship, extra, got(decide(policy, f)), expect(policy, f)))
    assert wrong == []


@pytest.mark.parametrize("name", ["default", "open"])
def test_a_moderator_restricted_adult_finds_no_minor_not_even_a_contact(name):
    f = Facts("adult", "teen_13_15", "connected", actor_restricted_by_moderator=True)
    assert got(rules.may_find(POLICIES[name], f)) == (R, "hidden_from_search")


# --- each refusal and acceptance of may_find, exactly -----------------------------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (Facts("adult", "adult"), (A, "searchable")),  # a2a search always
        (Facts("adult", "teen_13_15", "connected"), (A, "connected")),  # connected_only
        (Facts("adult", "teen_13_15"), (R, "hidden_from_search")),  # connected_only, stranger
        (Facts("adult", "adult", target_blocked_actor=True), (R, "hidden_from_search")),
        # The blocker still finds whom they blocked.
        (Facts("adult", "adult", actor_blocked_target=True), (A, "searchable")),
        # Restricted: no new minors, but connected ones and adults.
        (Facts("adult", "teen_16_17", actor_restricted=True), (R, "hidden_from_search")),
        (Facts("adult", "teen_16_17", "connected", actor_restricted=True), (A, "connected")),
        (Facts("adult", "adult", actor_restricted=True), (A, "searchable")),
        # A restricted teen (re-declared) doesn't find minors either.
        (Facts("teen_16_17", "teen_13_15", actor_restricted=True), (R, "hidden_from_search")),
        (Facts("teen_16_17", "teen_13_15", "connected", actor_restricted=True), (A, "searchable")),
        # The guardian hook is off in `default`.
        (Facts("adult", "teen_13_15", guardian_approved=True), (R, "hidden_from_search")),
    ],
)
def test_may_find_in_default(facts, expected):
    assert got(rules.may_find(PRESETS["default"], facts)) == expected


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (Facts("adult", "teen_13_15"), (R, "hidden_from_search")),  # never
        (Facts("teen_13_15", "adult", "connected"), (R, "hidden_from_search")),  # never
        (Facts("adult", "teen_13_15", guardian_approved=True), (A, "guardian_approved")),
        (
            Facts("adult", "teen_13_15", guardian_approved=True, actor_restricted=True),
            (R, "hidden_from_search"),  # the hook never lifts restriction
        ),
        (
            Facts("adult", "teen_13_15", guardian_approved=True, target_blocked_actor=True),
            (R, "hidden_from_search"),  # nor a block
        ),
        (Facts("teen_13_15", "teen_16_17"), (A, "searchable")),
    ],
)
def test_may_find_in_strict(facts, expected):
    assert got(rules.may_find(PRESETS["strict"], facts)) == expected


def test_restriction_off_in_the_policy_hides_nobody_but_a_moderators_does():
    open_ = PRESETS["open"]
    assert got(rules.may_find(open_, Facts("adult", "teen_13_15", actor_restricted=True))) == (
        A,
        "searchable",
    )
    by_moderator = Facts("adult", "teen_13_15", actor_restricted_by_moderator=True)
    assert got(rules.may_find(open_, by_moderator)) == (R, "hidden_from_search")


# --- restriction and accepting ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("flag", ["actor_restricted", "actor_restricted_by_moderator"])
def test_a_restricted_adult_may_accept_another_adults_request(name, flag):
    """Restriction is about minors: an adult's request to a restricted adult is answered
    as it would be otherwise; a minor's is refused (where the restriction applies)."""
    policy = POLICIES[name]
    adult = rules.may_accept(policy, Facts("adult", "adult", "incoming_request", **{flag: True}))
    unrestricted = rules.may_accept(policy, Facts("adult", "adult", "incoming_request"))
    assert got(adult) == got(unrestricted)
    if pair_rule(policy, "adult", "adult").initiate in ("request", "direct"):
        assert got(adult) == (A, "accepted")
    minor = rules.may_accept(
        policy, Facts("adult", "teen_16_17", "incoming_request", **{flag: True})
    )
    applies = flag == "actor_restricted_by_moderator" or policy.restriction.enabled
    if applies:
        assert got(minor) == (R, "sender_restricted")


def test_a_minor_accepting_a_restricted_adults_request_is_told_about_the_restriction():
    default = PRESETS["default"]
    for flag, sentence in [
        ("target_restricted", "This account has been restricted and can't have new contact"),
        ("target_restricted_by_moderator", "This account has been restricted by a moderator"),
    ]:
        decision = rules.may_accept(
            default, Facts("teen_13_15", "adult", "incoming_request", **{flag: True})
        )
        assert got(decision) == (R, "sender_restricted")
        assert decision.sentence.startswith(sentence)


# --- modes ----------------------------------------------------------------------------------

MEMBERS = [
    *itertools.product(BANDS, repeat=2),
    ("adult", "adult", "adult"),
    ("adult", "adult", "teen_16_17"),
    ("under_13", "under_13", "under_13"),
]


@pytest.mark.parametrize("e2ee", ["all_adults", "always", "never"])
@pytest.mark.parametrize("members", MEMBERS)
def test_conversation_mode_follows_encryption_e2ee(e2ee, members):
    """`all_adults`: E2EE only when every member is an adult; `always`; `never`."""
    base = PRESETS["default"]
    policy = msgspec.structs.replace(
        base, encryption=msgspec.structs.replace(base.encryption, e2ee=e2ee)
    )
    expected = {
        "always": "e2ee",
        "never": "visible",
        "all_adults": "e2ee" if all(b == "adult" for b in members) else "visible",
    }[e2ee]
    assert rules.conversation_mode(policy, list(members)) == expected


def test_a_policy_file_can_say_e2ee_never():
    text = policy_path("default").read_text().replace('e2ee = "all_adults"', 'e2ee = "never"')
    policy = rules.parse_policy(text)
    assert policy.encryption.e2ee == "never"
    assert rules.conversation_mode(policy, ["adult", "adult"]) == "visible"


# --- notices --------------------------------------------------------------------------------

SWITCHES = list(itertools.product((False, True), repeat=3))


@pytest.mark.parametrize(("new_adult", "restricted_", "message_request"), SWITCHES)
def test_each_notice_follows_its_own_switch(new_adult, restricted_, message_request):
    """`notices.*`: a minor gets `new_adult_contact` when an adult becomes a contact,
    `contact_restricted` when an adult contact is restricted, `message_request` when a
    stranger's message arrives as a request — each only if its switch is on; adults never."""
    base = PRESETS["default"]
    policy = msgspec.structs.replace(
        base,
        notices=rules.Notices(
            minor_new_adult_contact=new_adult,
            minor_contact_restricted=restricted_,
            minor_message_request=message_request,
        ),
    )
    for minor, other in itertools.product(BANDS, BANDS):
        is_minor = group(minor) == "minor"
        accepted = rules.minor_notice(policy, "contact_accepted", minor, other)
        assert accepted == (
            "new_adult_contact" if is_minor and other == "adult" and new_adult else None
        )
        request = rules.minor_notice(policy, "message_request", minor, other)
        assert request == ("message_request" if is_minor and message_request else None)
        if other == "adult":
            notice = rules.minor_notice(policy, "contact_restricted", minor, other)
            assert notice == ("contact_restricted" if is_minor and restricted_ else None)


# --- restriction thresholds ---------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_restriction_thresholds_are_reached_at_the_number(enabled):
    base = PRESETS["default"]
    policy = msgspec.structs.replace(
        base,
        restriction=rules.Restriction(
            enabled=enabled,
            window_days=30,
            minors_blocking_or_reporting=4,
            refused_or_declined_requests_to_minors=7,
        ),
    )
    assert rules.is_restricted(policy, 3, 6) is False
    assert rules.is_restricted(policy, 4, 0) is enabled
    assert rules.is_restricted(policy, 0, 7) is enabled
    assert rules.is_restricted(policy, 5, 8) is enabled


# --- registration, re-declaration, lookups ------------------------------------------------

TODAY = date(2026, 11, 23)


def years_before(years: int, days: int = 0) -> date:
    return TODAY.replace(year=TODAY.year - years) + timedelta(days=days)


@pytest.mark.parametrize("minimum", [0, 13, 16, 17])
def test_registration_at_the_minimum_age(minimum):
    base = PRESETS["default"]
    policy = msgspec.structs.replace(
        base, ages=rules.Ages(minimum_age=minimum, self_service_older_band=False)
    )
    assert rules.may_register(policy, years_before(minimum), TODAY) == Decision(A, "registered")
    assert rules.may_register(policy, TODAY, TODAY).outcome == (A if minimum == 0 else R)
    if minimum:
        assert rules.may_register(policy, years_before(minimum, days=1), TODAY) == Decision(
            R, "under_minimum_age"
        )
    tomorrow = TODAY + timedelta(days=1)
    assert rules.may_register(policy, tomorrow, TODAY) == Decision(R, "invalid_birthdate")


@pytest.mark.parametrize("older_allowed", [False, True])
def test_self_service_birthdate_changes(older_allowed):
    base = PRESETS["default"]
    policy = msgspec.structs.replace(
        base, ages=rules.Ages(minimum_age=13, self_service_older_band=older_allowed)
    )
    current = years_before(15)

    def change(new: date) -> Decision:
        return rules.may_change_birthdate(policy, current, new, TODAY)

    assert change(current) == Decision(A, "birthdate_changed")  # the same date
    assert change(current + timedelta(days=1)) == Decision(A, "birthdate_changed")  # younger
    older = (
        Decision(A, "birthdate_changed")
        if older_allowed
        else Decision(R, "age_change_requires_assurance")
    )
    assert change(current - timedelta(days=1)) == older  # one day older, same band
    assert change(years_before(30)) == older
    assert change(years_before(13)) == Decision(A, "birthdate_changed")
    assert change(years_before(13, days=1)) == Decision(R, "under_minimum_age")
    assert change(TODAY + timedelta(days=1)) == Decision(R, "invalid_birthdate")


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_lookups_of_strangers_are_limited_per_day(name):
    """`limits.lookups_per_day`: past it, every lookup of an account one has no contact or
    pending request with is `rate_limited`; contacts and pending requests aren't counted."""
    policy = POLICIES[name]
    limit = policy.limits.lookups_per_day
    assert rules.lookup_limited(policy, limit - 1) is None
    assert got(rules.lookup_limited(policy, limit)) == (R, "rate_limited")
    for relationship in RELATIONSHIPS:
        f = Facts("adult", "adult", relationship, lookups_today=limit)
        decision = rules.may_look_up(policy, f)
        if relationship in ("none", "declined_by_actor"):
            assert got(decision) == (R, "rate_limited")
        else:
            assert decision == rules.may_look_up(policy, Facts("adult", "adult", relationship))


@pytest.mark.parametrize(
    ("name", "actor", "target"), list(itertools.product(POLICIES, BANDS, BANDS))
)
def test_a_lookup_never_shows_a_block(name, actor, target):
    """The blocked person gets the bundle they would get without the block; the blocker's
    own block is no reason to refuse keys, nor a way around the pair rules."""
    policy = POLICIES[name]
    for relationship in RELATIONSHIPS:
        plain = Facts(actor, target, relationship)
        without = rules.may_look_up(policy, plain)
        assert without.outcome != D
        theirs = Facts(actor, target, relationship, target_blocked_actor=True)
        assert rules.may_look_up(policy, theirs) == without
        mine = rules.may_look_up(
            policy, Facts(actor, target, relationship, actor_blocked_target=True)
        )
        if without.outcome == R:
            assert mine == without
        else:
            assert got(mine) == (A, "you_blocked")
        # What a lookup answers is what a message would be answered, block aside.
        assert got(without) == _message(policy, plain)
