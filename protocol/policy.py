"""The age policy: bands, modes, and who may find, request and message whom.

Pure functions over facts the caller gathers (bands, relationship, counters); no I/O and no
clock (``today`` is passed in). Every rule's value comes from a ``Policy`` loaded from a
preset in ``policies/*.toml``, so a product team changes behaviour by editing data, and
every decision carries a reason code (docs/POLICY.md lists them all).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Final, Literal

import msgspec

from protocol.errors import wire_message

Band = Literal["under_13", "teen_13_15", "teen_16_17", "adult"]
BANDS: tuple[Band, ...] = ("under_13", "teen_13_15", "teen_16_17", "adult")
ConversationMode = Literal["visible", "e2ee"]

#: End-to-end encryption is built (issue #4): the policy's `e2ee` rule decides the mode.
#: (Set to False to run the relay as if no client could encrypt: every chat `visible`.)
E2EE_AVAILABLE: Final = True

# --- bands ----------------------------------------------------------------------------------


def age_on(birthdate: date, today: date) -> int:
    """Whole years completed on ``today`` (a 29 February birthday counts on 1 March)."""
    years = today.year - birthdate.year
    if (today.month, today.day) < (birthdate.month, birthdate.day):
        years -= 1
    return years


def band(birthdate: date, today: date) -> Band:
    """The age band of someone born on ``birthdate``, as of ``today``."""
    age = age_on(birthdate, today)
    if age < 13:
        return "under_13"
    if age < 16:
        return "teen_13_15"
    if age < 18:
        return "teen_16_17"
    return "adult"


def is_minor(b: Band) -> bool:
    """Every band but ``adult`` is a minor."""
    return b != "adult"


# --- the policy as data ---------------------------------------------------------------------

Search = Literal["never", "connected_only", "always"]
Initiate = Literal["never", "refused", "request", "direct"]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Policy tables reject unknown keys, so a typo stops the relay instead of being ignored."""


class Ages(_Section):
    #: Registration below this age is refused (`under_minimum_age`). COPPA sets 13.
    minimum_age: Annotated[int, msgspec.Meta(ge=0, le=17)]
    #: May an account re-declare itself into an older band without age assurance?
    self_service_older_band: bool


class Encryption(_Section):
    #: `all_adults`: E2EE only when every member is an adult (NCMEC principle 1).
    e2ee: Literal["all_adults", "always", "never"]


class PairRule(_Section):
    #: Who may find whom in directory search (prefix or exact handle).
    search: Search
    #: How contact goes: `never` (none at all, even between existing contacts), `refused`
    #: (can't be started this way; existing contacts go on), `request` (a request the
    #: recipient accepts or declines), or `direct`.
    initiate: Initiate


class Contact(_Section):
    adult_to_minor: PairRule
    minor_to_adult: PairRule
    adult_to_adult: PairRule
    minor_to_minor: PairRule


class Limits(_Section):
    #: New contacts (contact requests and message requests) an account may start per day.
    contact_requests_per_day: Count
    #: Of those, how many may go to minors.
    contact_requests_to_minors_per_day: Count
    #: Lookups of accounts one isn't in contact with (a key bundle, a safety number, a
    #: handle that doesn't exist) per day: each answer says whether the account exists and
    #: whether it may be written to, so unlimited lookups would be an age oracle.
    lookups_per_day: Count
    #: The largest attachment one message may carry (bytes; an e2ee blob counts its
    #: ciphertext). Optional in a policy file.
    attachment_max_bytes: Annotated[int, msgspec.Meta(ge=1, le=2**31)] = 16 * 1024 * 1024
    #: Bytes of attachments one account may have on the relay at once (uploaded and not yet
    #: delivered, or kept by retention).
    attachment_quota_bytes: Annotated[int, msgspec.Meta(ge=1, le=2**40)] = 256 * 1024 * 1024
    # Abuse limits (issue #10), each with its own code; optional in a policy file.
    #: Registrations from one network address per hour (`registration_limited`).
    registrations_per_address_per_hour: Annotated[int, msgspec.Meta(ge=1, le=10**6)] = 20
    #: Directory searches per account per minute (`search_limited`).
    searches_per_minute: Annotated[int, msgspec.Meta(ge=1, le=10**6)] = 30
    #: Key-bundle fetches per account per minute (`bundle_limited`); lookups of strangers
    #: are also counted per day (`lookups_per_day`).
    bundle_fetches_per_minute: Annotated[int, msgspec.Meta(ge=1, le=10**6)] = 120
    #: The most accounts one search answers with.
    max_search_results: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    #: Messages and bytes waiting (stored, not yet acknowledged) for one recipient, and
    #: from one sender to one recipient (`quota_exceeded`; nothing accepted is dropped).
    messages_waiting_per_recipient: Annotated[int, msgspec.Meta(ge=1, le=10**9)] = 10_000
    bytes_waiting_per_recipient: Annotated[int, msgspec.Meta(ge=1, le=2**40)] = 100 * 2**20
    messages_waiting_per_pair: Annotated[int, msgspec.Meta(ge=1, le=10**9)] = 1_000
    bytes_waiting_per_pair: Annotated[int, msgspec.Meta(ge=1, le=2**40)] = 10 * 2**20


class Restriction(_Section):
    enabled: bool
    window_days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    #: Distinct minors who blocked or reported an adult within the window.
    minors_blocking_or_reporting: Annotated[int, msgspec.Meta(ge=1)]
    #: Requests to minors that were refused by policy or declined, within the window.
    refused_or_declined_requests_to_minors: Annotated[int, msgspec.Meta(ge=1)]


class Exceptions(_Section):
    """Superseded by ``[guardians]``; still read so that policy files written before guardian
    links existed load: ``guardian_approved_links = true`` is ``guardians.lifts_pair_rules =
    true``."""

    guardian_approved_links: bool


GuardianVisibility = Literal["none", "contacts"]
GuardianApprovals = Literal["never", "adults_only"]


class Guardians(_Section):
    """Guardian links between an adult (the guardian) and someone under 18 (the ward), made
    only when both confirm (docs/POLICY.md "Guardians"). Optional in a policy file: without
    the table, links are possible and give the guardian nothing but the link itself."""

    #: How many guardians one account under 18 may have; 0 turns guardian links off.
    max_guardians: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    #: A confirmed link counts as an approved link under the pair rules: guardian and ward
    #: find and message each other whatever `contact.*` says (never past a restriction or a
    #: block).
    lifts_pair_rules: bool = False
    #: What a guardian sees of the ward: `none` (only the link), `contacts` (the ward's
    #: contacts, each with its age band and when it started; never a message).
    visibility: GuardianVisibility = "none"
    #: `adults_only`: a new contact between the ward and an adult waits for a guardian's
    #: approval once the request is accepted.
    approvals: GuardianApprovals = "never"
    #: The guardian is told when the ward blocks or reports someone (whom, never why); the
    #: ward sees what the guardian was told.
    notify_blocks_and_reports: bool = False


class Groups(_Section):
    """Group conversations (docs/POLICY.md "Groups"): who may add whom is the pair rules'
    business (an invitation obeys what a contact request would); these are the group's own
    rules. Optional in a policy file."""

    #: Members and pending invitations together, the creator included.
    max_members: Annotated[int, msgspec.Meta(ge=2, le=256)] = 64
    #: A minor would join a group that is `e2ee` (every member an adult): `refuse` the add
    #: (`group_encrypted`), or `visible` — the group switches mode, with a line to every
    #: member, before the minor sees anything.
    minor_joins_e2ee: Literal["refuse", "visible"] = "visible"


class Notices(_Section):
    minor_new_adult_contact: bool
    minor_contact_restricted: bool
    minor_message_request: bool


ModeratorRole = Literal["moderator", "child_safety_moderator", "admin"]
QueueKey = Annotated[str, msgspec.Meta(pattern=r"\A[a-z_]{1,32}\Z")]


class Queue(_Section):
    #: 1 is reviewed first.
    priority: Annotated[int, msgspec.Meta(ge=1, le=100)]
    #: Who sees this queue and its cases.
    roles: list[ModeratorRole]


class Routes(_Section):
    """Where a new case goes, checked in this order: a hash match, then anything involving
    a minor (the subject, or the other party of a finding), then everything else."""

    hash_match: QueueKey
    involves_minor: QueueKey
    otherwise: QueueKey


class Moderation(_Section):
    queues: dict[QueueKey, Queue]
    routes: Routes
    #: Refused attempts on minors (within the restriction window) that open a case about an
    #: adult before restriction would; 0 = only restriction opens one.
    refusals_to_minors_finding: Annotated[int, msgspec.Meta(ge=0, le=1000)]

    def __post_init__(self) -> None:
        for route in (self.routes.hash_match, self.routes.involves_minor, self.routes.otherwise):
            if route not in self.queues:
                raise ValueError(f"moderation.routes names queue {route!r}, which isn't declared")


Days = Annotated[int, msgspec.Meta(ge=0, le=3650)]


class Retention(_Section):
    """How long the relay keeps what it holds (docs/POLICY.md "Retention"). A sweep deletes
    what is past its time, except what a preservation request holds."""

    #: A closed case's evidence and its CyberTipline drafts, counted from the case's closing.
    #: 365: the REPORT Act's preservation period for providers' reports.
    evidence_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365
    #: A delivered `visible` message's text, counted from delivery. 0: deleted when the
    #: recipient acknowledges it.
    visible_days: Days = 0
    #: Delivery metadata — sender, recipient, time, size — of delivered messages in either
    #: mode (for `e2ee` messages the only record there is), and the addresses accounts log in
    #: from, counted from delivery or login.
    metadata_days: Days = 90


class HashMatching(_Section):
    """Matching attachments the relay can read (`visible` conversations) against hash banks
    of known material (docs/POLICY.md "Hash matching", docs/MODERATION.md)."""

    #: PDQ: the largest Hamming distance, of 256 bits, that counts as a match. 31: Meta's
    #: recommendation (HMA, threatexchange). Higher catches more altered copies and more
    #: unrelated images.
    pdq_max_distance: Annotated[int, msgspec.Meta(ge=0, le=256)] = 31
    #: PDQ quality (0–100) below which an image is not PDQ-matched (flat or featureless
    #: images hash alike); its exact hashes are still checked. 50: Meta's recommendation.
    pdq_min_quality: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50
    #: Exact hashes checked for every file, image or not.
    exact: list[Literal["sha256", "md5"]] = msgspec.field(default_factory=lambda: ["sha256", "md5"])
    #: A match restricts the sender pending a moderator's review.
    restrict_on_match: bool = True


class Signals(_Section):
    """Grooming-risk signals (docs/SIGNALS.md): rules read from ``policies/signals/`` score
    each adult–minor conversation; above ``notice_at`` the minor gets a notice, above
    ``finding_at`` a finding goes to the moderators. Content rules read only `visible`
    messages from the adult; `e2ee` conversations get only behaviour features."""

    #: Off: nothing is scored, no notice, no finding.
    enabled: bool = True
    #: The rules file: ``policies/signals/<rules>.toml``, or a path ending in ``.toml``.
    rules: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "default"
    #: The score at which the minor gets a notice in the chat.
    notice_at: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 5.5
    #: The score at which a finding goes to the moderation queue, with every firing listed.
    finding_at: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 8.5
    #: At most one notice per conversation in this many hours.
    notice_min_hours_between: Annotated[float, msgspec.Meta(ge=0, le=8760)] = 24.0
    #: A firing's weight halves every this many hours, unless its rule sets its own.
    decay_hours: Annotated[float, msgspec.Meta(gt=0, le=87600)] = 336.0


class Policy(_Section):
    name: str
    description: str
    ages: Ages
    encryption: Encryption
    contact: Contact
    limits: Limits
    restriction: Restriction
    notices: Notices
    moderation: Moderation
    #: Optional in a policy file: a policy written before retention existed keeps the
    #: defaults.
    retention: Retention = msgspec.field(default_factory=Retention)
    #: Optional too: a policy written before hash matching existed keeps the defaults.
    hash_matching: HashMatching = msgspec.field(default_factory=HashMatching)
    #: Optional too: a policy written before signals existed gets the defaults.
    signals: Signals = msgspec.field(default_factory=Signals)
    #: Optional too: without it, guardian links give the guardian only the link.
    guardians: Guardians = msgspec.field(default_factory=Guardians)
    #: Optional too: a policy written before groups existed gets the defaults.
    groups: Groups = msgspec.field(default_factory=Groups)
    #: Superseded by ``guardians.lifts_pair_rules``: read from older files and folded into
    #: ``guardians`` on load (then unset, so the policy encodes one way only).
    exceptions: Exceptions | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.exceptions, Exceptions):
            if self.exceptions.guardian_approved_links and not self.guardians.lifts_pair_rules:
                lifted = msgspec.structs.replace(self.guardians, lifts_pair_rules=True)
                msgspec.structs.force_setattr(self, "guardians", lifted)
            msgspec.structs.force_setattr(self, "exceptions", msgspec.UNSET)

    def pair(self, actor: Band, target: Band) -> PairRule:
        a, t = is_minor(actor), is_minor(target)
        if not a and t:
            return self.contact.adult_to_minor
        if a and not t:
            return self.contact.minor_to_adult
        return self.contact.minor_to_minor if a else self.contact.adult_to_adult


def parse_policy(toml_text: str) -> Policy:
    """Parse and validate a preset; raises msgspec.ValidationError naming the bad key."""
    return msgspec.toml.decode(toml_text, type=Policy)


# --- facts and decisions --------------------------------------------------------------------

Relationship = Literal[
    "none",  # strangers
    "outgoing_request",  # the actor asked the target; not answered yet
    "incoming_request",  # the target asked the actor; not answered yet
    "connected",
    "declined",  # the target declined the actor's request
    "declined_by_actor",  # the actor declined the target's request
    "awaiting_guardian",  # accepted, and waiting for the minor's guardian to approve it
]
RELATIONSHIPS: tuple[Relationship, ...] = (
    "none",
    "outgoing_request",
    "incoming_request",
    "connected",
    "declined",
    "declined_by_actor",
    "awaiting_guardian",
)
Outcome = Literal["allow", "request", "refuse", "drop"]


class Facts(msgspec.Struct, frozen=True):
    """What the relay knows about an actor reaching a target, gathered before deciding."""

    actor: Band
    target: Band
    relationship: Relationship = "none"
    actor_blocked_target: bool = False
    target_blocked_actor: bool = False
    actor_restricted: bool = False
    target_restricted: bool = False
    #: Restricted by a moderator's decision: applies whatever the policy's automatic
    #: restriction says (docs/MODERATION.md).
    actor_restricted_by_moderator: bool = False
    target_restricted_by_moderator: bool = False
    requests_today: int = 0
    requests_to_minors_today: int = 0
    lookups_today: int = 0
    #: The two are a confirmed guardian link (guardian and ward, either way round).
    guardian_approved: bool = False
    #: The minor of this adult–minor pair has a guardian (who isn't the adult): under
    #: `guardians.approvals = "adults_only"` a new contact between them waits for that
    #: guardian's approval.
    supervised: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """``allow``: go ahead. ``request``: goes as a request the target accepts or declines.
    ``refuse``: refused with ``reason`` (a stable code). ``drop``: the actor is told it
    went through, but nothing reaches the target (a block, which the blocked never learn)."""

    outcome: Outcome
    reason: str
    #: The sentence for this refusal when the code's own sentence would not fit the rule or
    #: the direction that refused (who is told what); not part of equality.
    why: str | None = field(default=None, compare=False)

    @property
    def allowed(self) -> bool:
        return self.outcome in ("allow", "request")

    @property
    def sentence(self) -> str:
        """What to tell the actor: the specific sentence, or the code's own."""
        return self.why or wire_message(self.reason)


def _refuse(reason: str, why: str | None = None) -> Decision:
    return Decision("refuse", reason, why)


def _who(b: Band) -> str:
    return "people under 18" if is_minor(b) else "adults"


def _never(actor: Band, target: Band) -> str:
    """The sentence for a pair the policy keeps apart entirely (`never`)."""
    groups = {_who(actor), _who(target)}
    between = "adults and people under 18" if len(groups) == 2 else groups.pop()
    return f"This relay's policy doesn't allow contact between {between}."


def _not_started(actor: Band, target: Band) -> str:
    """The sentence for a pair rule `refused`, read as actor → target."""
    if not is_minor(actor) and is_minor(target):
        return "Adults can't start conversations with accounts under 18."
    if is_minor(actor) and not is_minor(target):
        return "Accounts under 18 can't start conversations with adults under this relay's policy."
    if is_minor(actor):
        return (
            "Accounts under 18 can't start conversations with each other under this relay's policy."
        )
    return "Adults can't start conversations with other adults under this relay's policy."


_OWN_RESTRICTION = (
    "Your account can't start new contact with people under 18: it was restricted after "
    "blocks, reports or refused requests."
)
_THEIR_RESTRICTION = (
    "This account has been restricted and can't have new contact with people under 18."
)
_OWN_MODERATOR_RESTRICTION = (
    "Your account can't contact people under 18, including existing contacts: a moderator "
    "restricted it."
)
_THEIR_MODERATOR_RESTRICTION = (
    "This account has been restricted by a moderator and can't contact people under 18."
)


def _own_restriction(f: Facts) -> str:
    return _OWN_MODERATOR_RESTRICTION if f.actor_restricted_by_moderator else _OWN_RESTRICTION


def _restricted(policy: Policy, f: Facts) -> bool:
    """Restriction follows the account, not its current band: a restricted adult who
    re-declares as a minor stays restricted. Automatic restriction only where the policy
    enables it; a moderator's restriction always."""
    return f.actor_restricted_by_moderator or (policy.restriction.enabled and f.actor_restricted)


def _guardian(policy: Policy, f: Facts) -> bool:
    return f.guardian_approved and policy.guardians.lifts_pair_rules


def _needs_approval(policy: Policy, f: Facts) -> bool:
    """A new contact between a supervised minor and an adult waits for a guardian."""
    return (
        f.supervised
        and not f.guardian_approved
        and policy.guardians.approvals == "adults_only"
        and is_minor(f.actor) != is_minor(f.target)
    )


def _pair_refusal(policy: Policy, f: Facts, *, connected: bool) -> Decision | None:
    """The age rules for this pair, in both directions: `never` forbids any contact (even
    an existing one: a band change can create such a pair), `refused` forbids starting it.
    Restriction applies to any contact that involves a minor. The guardian hook lifts the
    pair rule, never restriction."""
    rules = (policy.pair(f.actor, f.target).initiate, policy.pair(f.target, f.actor).initiate)
    # Automatic restriction stops new contact with minors; a moderator's stops all of it,
    # both ways.
    if is_minor(f.target) and (
        f.actor_restricted_by_moderator or (_restricted(policy, f) and not connected)
    ):
        return _refuse("sender_restricted", _own_restriction(f))
    if is_minor(f.actor) and f.target_restricted_by_moderator:
        return _refuse("contact_not_allowed", _THEIR_MODERATOR_RESTRICTION)
    if _guardian(policy, f):
        return None
    if "never" in rules:
        return _refuse("contact_not_allowed", _never(f.actor, f.target))
    if not connected and rules[0] == "refused":
        return _refuse("contact_not_allowed", _not_started(f.actor, f.target))
    return None


def _rate_limit(policy: Policy, f: Facts) -> Decision | None:
    if f.requests_today >= policy.limits.contact_requests_per_day:
        return _refuse("rate_limited")
    if is_minor(f.target) and (
        f.requests_to_minors_today >= policy.limits.contact_requests_to_minors_per_day
    ):
        return _refuse(
            "rate_limited",
            "You've started too many new contacts with people under 18 today. Try again tomorrow.",
        )
    return None


def _unless_blocked(f: Facts, decision: Decision) -> Decision:
    """A block by the target turns what would have gone through into a silent drop; a
    refusal stays the same refusal, so the answer never reveals the block."""
    if f.target_blocked_actor and decision.allowed:
        return Decision("drop", "blocked_by_target")
    return decision


def may_find(policy: Policy, f: Facts) -> Decision:
    """May the actor see the target in directory search (prefix or exact handle)?"""
    if f.target_blocked_actor:
        return _refuse("hidden_from_search")
    if f.actor_restricted_by_moderator and is_minor(f.target):
        return _refuse("hidden_from_search")  # a moderator's restriction: no minor at all
    if _restricted(policy, f) and is_minor(f.target) and f.relationship != "connected":
        return _refuse("hidden_from_search")  # a restricted account finds no new minors
    if _guardian(policy, f):
        return Decision("allow", "guardian_approved")
    if "never" in (
        policy.pair(f.actor, f.target).initiate,
        policy.pair(f.target, f.actor).initiate,
    ):
        return _refuse("hidden_from_search")
    rule = policy.pair(f.actor, f.target).search
    if rule == "always":
        return Decision("allow", "searchable")
    if rule == "connected_only" and f.relationship == "connected":
        return Decision("allow", "connected")
    return _refuse("hidden_from_search")


def may_request(policy: Policy, f: Facts) -> Decision:
    """May the actor send the target a contact request?"""
    return _unless_blocked(f, _request(policy, f))


def _request(policy: Policy, f: Facts) -> Decision:
    if f.actor_blocked_target:
        return _refuse("you_blocked")
    if f.relationship == "connected":
        return _refuse("already_connected")
    if f.relationship == "outgoing_request":
        return _refuse("request_pending")
    if f.relationship == "declined":
        return _refuse("request_declined")
    if f.relationship == "incoming_request":
        return _refuse("request_awaiting_you")
    if f.relationship == "awaiting_guardian":
        return _refuse("guardian_approval_pending")
    # "none" and "declined_by_actor" (changing one's mind) are new contacts.
    refusal = _pair_refusal(policy, f, connected=False) or _rate_limit(policy, f)
    return refusal or Decision("request", "contact_request")


def may_message(policy: Policy, f: Facts) -> Decision:
    """May the actor send the target a message, and does it arrive directly or as a request?"""
    return _unless_blocked(f, _message(policy, f))


def _message(policy: Policy, f: Facts) -> Decision:
    if f.actor_blocked_target:
        return _refuse("you_blocked")
    if f.relationship == "connected":
        refusal = _pair_refusal(policy, f, connected=True)
        return refusal or Decision("allow", "connected")
    if f.relationship == "declined":
        return _refuse("request_declined")
    if f.relationship == "incoming_request":
        return _refuse("request_awaiting_you")
    if f.relationship == "awaiting_guardian":
        return _refuse("guardian_approval_pending")
    refusal = _pair_refusal(policy, f, connected=False)
    if refusal is not None:
        return refusal
    if _guardian(policy, f):
        return Decision("allow", "guardian_approved")
    if f.relationship == "outgoing_request":
        # More messages while the request waits travel with it, if the rules still allow
        # the request (a band may have changed since it was made).
        return Decision("request", "request_pending")
    if (limited := _rate_limit(policy, f)) is not None:
        return limited
    if policy.pair(f.actor, f.target).initiate == "direct" and not _needs_approval(policy, f):
        return Decision("allow", "direct")
    # A supervised minor's new adult contact goes as a request even where the rule is
    # `direct`: accepting it is where the guardian's approval comes in.
    return Decision("request", "message_request")


def is_stranger(relationship: Relationship) -> bool:
    """No contact and no pending request between the two (a declined request counts as
    contact: its answer is already known)."""
    return relationship in ("none", "declined_by_actor")


def lookup_limited(policy: Policy, lookups_today: int) -> Decision | None:
    """Past the daily lookup limit every lookup of a stranger gets the same answer, whether
    the account exists or not, so the limit hides existence as well as age."""
    if lookups_today >= policy.limits.lookups_per_day:
        return _refuse(
            "rate_limited",
            "You've looked up too many accounts you aren't in contact with today. "
            "Try again tomorrow.",
        )
    return None


def may_look_up(policy: Policy, f: Facts) -> Decision:
    """May the actor fetch the target's key bundle (its keys, mode and declaration)?

    Only someone who may write to the account may; a stranger's lookup is also limited per
    day. Blocks are not revealed: a blocked actor still gets the bundle (its messages are
    dropped later), and the actor's own block is no reason to refuse keys.
    """
    if is_stranger(f.relationship) and (limited := lookup_limited(policy, f.lookups_today)):
        return limited
    # Decided as if the actor had blocked nobody: their own block is no reason to refuse
    # keys, and must not be a way around the pair rules either.
    decision = _message(policy, msgspec.structs.replace(f, actor_blocked_target=False))
    if decision.outcome == "refuse":
        return decision
    return Decision("allow", "you_blocked") if f.actor_blocked_target else decision


def may_accept(policy: Policy, f: Facts) -> Decision:
    """May the actor accept the target's pending request (actor = the one accepting)?

    The request is checked again as if the requester made it now: bands change, and an
    adult may have been restricted since.
    """
    if f.relationship != "incoming_request":
        return _refuse("no_pending_request")
    reverse = Facts(
        actor=f.target,
        target=f.actor,
        guardian_approved=f.guardian_approved,
        actor_restricted=f.target_restricted,
        actor_restricted_by_moderator=f.target_restricted_by_moderator,
    )
    if _restricted(policy, f) and is_minor(f.target):
        return _refuse("sender_restricted", _own_restriction(f))
    refusal = _pair_refusal(policy, reverse, connected=False)
    if refusal is None:
        if _needs_approval(policy, f):
            return Decision("allow", "awaiting_guardian")
        return Decision("allow", "accepted")
    # Told to the one accepting, about a request the other made.
    if refusal.reason == "sender_restricted":
        their = (
            _THEIR_MODERATOR_RESTRICTION if f.target_restricted_by_moderator else _THEIR_RESTRICTION
        )
        return _refuse("sender_restricted", their)
    return _refuse(refusal.reason, f"This request is no longer allowed. {refusal.sentence}")


# --- guardian links -------------------------------------------------------------------------

LinkState = Literal["none", "invite_sent", "invite_received", "linked"]


@dataclass(frozen=True, slots=True)
class LinkFacts:
    """What the relay knows when an actor asks to link with a target as guardian and ward
    (either may be the one asking: the adult is the guardian, the minor the ward)."""

    #: The two as contacts, actor → target (bands, relationship, blocks, restriction,
    #: counters).
    pair: Facts
    #: The link between them: an invitation either way, or a confirmed link.
    link: LinkState = "none"
    #: Guardians the would-be ward has already (confirmed links with others).
    ward_guardians: int = 0


def _link_shape(policy: Policy, lf: LinkFacts) -> Decision | None:
    """Links exist where the policy allows them, between one adult and one minor, up to the
    policy's number of guardians per minor."""
    f = lf.pair
    if policy.guardians.max_guardians == 0:
        return _refuse("guardian_links_off")
    if is_minor(f.actor) == is_minor(f.target):
        return _refuse("guardian_pair_invalid")
    return None


def _link_restriction(policy: Policy, f: Facts) -> Decision | None:
    """A restricted adult can't become anyone's guardian, whoever asks and whether or not
    the two are connected already: a link is more than a contact."""
    if not is_minor(f.actor):
        if _restricted(policy, f):
            return _refuse("sender_restricted", _own_restriction(f))
        return None
    if f.target_restricted_by_moderator:
        return _refuse("sender_restricted", _THEIR_MODERATOR_RESTRICTION)
    if policy.restriction.enabled and f.target_restricted:
        return _refuse("sender_restricted", _THEIR_RESTRICTION)
    return None


def may_invite_guardian(policy: Policy, lf: LinkFacts) -> Decision:
    """May the actor invite the target to a guardian link (``request``: the target confirms)?

    Linking is contact between an adult and a minor: the adult may start it only where the
    pair rule (or an existing connection) would let them start contact; the minor may
    always start it, since the minor chooses their own guardian. Restriction stops it either
    way; a block by the target drops it silently, as a request.
    """
    return _unless_blocked(lf.pair, _invite(policy, lf))


def _invite(policy: Policy, lf: LinkFacts) -> Decision:
    f = lf.pair
    if (refusal := _link_shape(policy, lf)) is not None:
        return refusal
    if f.actor_blocked_target:
        return _refuse("you_blocked")
    if lf.link == "linked":
        return _refuse("already_linked")
    if lf.link == "invite_sent":
        return _refuse("guardian_invite_pending")
    if lf.link == "invite_received":
        return _refuse("guardian_invite_awaiting_you")
    if lf.ward_guardians >= policy.guardians.max_guardians:
        return _refuse("too_many_guardians")
    if (refusal := _link_restriction(policy, f)) is not None:
        return refusal
    if not is_minor(f.actor):
        # The adult starts it: as they could start contact (the guardian hook isn't on yet).
        unlinked = msgspec.structs.replace(f, guardian_approved=False)
        refusal = _pair_refusal(policy, unlinked, connected=f.relationship == "connected")
        if refusal is not None:
            return refusal
    if is_stranger(f.relationship) and (limited := _rate_limit(policy, f)) is not None:
        return limited
    return Decision("request", "guardian_invite")


def may_accept_guardian(policy: Policy, lf: LinkFacts) -> Decision:
    """May the actor accept the target's invitation? Checked again now: a band, the number
    of guardians or a restriction may have changed since it was made. An invitation from
    someone the actor blocked is hidden from them, so there is none to accept."""
    f = lf.pair
    if lf.link != "invite_received" or f.actor_blocked_target:
        return _refuse("no_pending_invite")
    if (refusal := _link_shape(policy, lf)) is not None:
        return refusal
    if lf.ward_guardians >= policy.guardians.max_guardians:
        return _refuse("too_many_guardians")
    if (refusal := _link_restriction(policy, f)) is not None:
        return refusal
    return Decision("allow", "linked")


def conversation_mode(policy: Policy, member_bands: Iterable[Band]) -> ConversationMode:
    """The mode a conversation with these members has (PROTOCOL.md §6.4)."""
    if not E2EE_AVAILABLE:
        return "visible"
    rule = policy.encryption.e2ee
    if rule == "always":
        return "e2ee"
    if rule == "never":
        return "visible"
    return "e2ee" if all(b == "adult" for b in member_bands) else "visible"


def is_restricted(
    policy: Policy, minors_blocking_or_reporting: int, refused_or_declined: int
) -> bool:
    """Has an adult crossed a restriction threshold (counts are within the policy's window)?"""
    r = policy.restriction
    return r.enabled and (
        minors_blocking_or_reporting >= r.minors_blocking_or_reporting
        or refused_or_declined >= r.refused_or_declined_requests_to_minors
    )


def may_register(policy: Policy, birthdate: date, today: date) -> Decision:
    if birthdate > today:
        return _refuse("invalid_birthdate")
    if age_on(birthdate, today) < policy.ages.minimum_age:
        return _refuse("under_minimum_age")
    return Decision("allow", "registered")


def may_change_birthdate(policy: Policy, current: date, new: date, today: date) -> Decision:
    """Self-service: only to a later birth date (younger) unless the policy allows more.

    Comparing dates, not today's bands: an older date inside the same band would otherwise
    let a 14-year-old become an adult in a few steps as the bands roll over.
    """
    if new > today:
        return _refuse("invalid_birthdate")
    if age_on(new, today) < policy.ages.minimum_age:
        return _refuse("under_minimum_age")
    if new < current and not policy.ages.self_service_older_band:
        return _refuse("age_change_requires_assurance")
    return Decision("allow", "birthdate_changed")


# --- notices --------------------------------------------------------------------------------

NoticeEvent = Literal["contact_accepted", "contact_restricted", "message_request"]


def minor_notice(policy: Policy, event: NoticeEvent, minor: Band, other: Band) -> str | None:
    """The notice code a minor gets for an event involving ``other``, or None."""
    if not is_minor(minor):
        return None
    n = policy.notices
    if event == "contact_accepted" and not is_minor(other) and n.minor_new_adult_contact:
        return "new_adult_contact"
    if event == "contact_restricted" and n.minor_contact_restricted:
        return "contact_restricted"
    if event == "message_request" and n.minor_message_request:
        return "message_request"
    return None
