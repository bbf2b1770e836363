"""What the signals engine reads and what it records (docs/SIGNALS.md).

Inputs are plain frozen dataclasses the relay fills in: a :class:`MessageEvent` per message
(with ``text=None`` in `e2ee` conversations, which the relay can't read anyway) and a
:class:`ContactEvent` for what happens to the contact itself (a request, a decline, a
block). Every time is an aware ``datetime`` given by the caller: the engine reads no clock.

What it keeps per conversation is a :class:`ConversationRisk` (a msgspec struct: encode it
with :func:`encode_risk` and store the bytes); each contribution to the score is a
:class:`Firing` naming the event, the rule and the weight, so the score explains itself.
The state holds no message text, only rule names, weights, times and message ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Literal

import msgspec

from protocol.policy import Band, ConversationMode, is_minor

FiringKind = Literal["content", "behaviour", "provider"]
Pair = Literal["adult_minor", "adult_adult", "minor_minor"]


@dataclass(frozen=True, slots=True)
class Party:
    handle: str
    band: Band


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """What the relay knows about the two accounts, gathered before each event. None of it
    comes from message content."""

    #: When the two became contacts (a request accepted, or the first message that went
    #: through); None if they aren't contacts yet (a message request).
    since: datetime | None = None
    #: The handle of whoever reached out first (a request or a first message).
    initiator: str | None = None
    #: Distinct minors the adult in this conversation started new contact with recently (the
    #: policy's restriction window): mass outreach, not a coach's long-standing team.
    adult_recent_minor_contacts: int = 0
    #: Distinct minors who declined, blocked or reported the adult recently (same window).
    adult_pushback_from_minors: int = 0


def _aware(at: datetime, what: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (the engine reads no clock)")


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """One message, as the relay saw it. ``text`` is the `visible` text, or None; an `e2ee`
    message never carries text (constructing one with text raises)."""

    id: str
    sender: Party
    recipient: Party
    mode: ConversationMode
    at: datetime
    text: str | None = None
    facts: ContactFacts = field(default_factory=ContactFacts)
    #: The recipient's local wall-clock time when it arrived, if the relay knows it (for the
    #: time-of-night feature); None skips that feature.
    recipient_local_time: time | None = None

    def __post_init__(self) -> None:
        _aware(self.at, "MessageEvent.at")
        if self.mode == "e2ee" and self.text is not None:
            raise ValueError("an e2ee MessageEvent carries no text: the relay can't read it")


ContactEventKind = Literal["request", "accepted", "declined", "blocked", "reported"]


@dataclass(frozen=True, slots=True)
class ContactEvent:
    """Something that happened to the contact between ``actor`` and ``target``: ``actor``
    sent a request, accepted, declined, blocked or reported ``target``."""

    id: str
    kind: ContactEventKind
    actor: Party
    target: Party
    mode: ConversationMode
    at: datetime
    facts: ContactFacts = field(default_factory=ContactFacts)

    def __post_init__(self) -> None:
        _aware(self.at, "ContactEvent.at")


Event = MessageEvent | ContactEvent


def parties(event: Event) -> tuple[Party, Party]:
    if isinstance(event, MessageEvent):
        return event.sender, event.recipient
    return event.actor, event.target


def pair_of(a: Party, b: Party) -> Pair:
    minors = is_minor(a.band) + is_minor(b.band)
    return ("adult_adult", "adult_minor", "minor_minor")[minors]


def adult_and_minor(event: Event) -> tuple[Party, Party] | None:
    """(the adult, the minor) of an adult–minor conversation, else None."""
    a, b = parties(event)
    if pair_of(a, b) != "adult_minor":
        return None
    return (b, a) if is_minor(a.band) else (a, b)


# --- what is recorded -----------------------------------------------------------------------


class Firing(msgspec.Struct, frozen=True, kw_only=True):
    """One contribution to a conversation's score."""

    #: The rule or feature: a content stage (``secrecy``), a behaviour feature
    #: (``new_contact``) or ``provider:<name>/<signal>``.
    rule: str
    kind: FiringKind
    #: The weight when it fired; its contribution halves every ``decay_hours`` after
    #: ``until``.
    weight: float
    decay_hours: float
    #: The message or event id that made it fire, and when.
    event: str
    at: datetime
    #: The last time it still held (a feature that stays true, like a new contact, is
    #: refreshed by each event rather than recorded again); decay counts from here.
    until: datetime
    #: A plain sentence for moderators.
    explanation: str
    #: What exactly fired: the pattern number of a content rule, the figures of a feature.
    #: Never message text.
    detail: str = ""
    #: The most all firings of this rule add together (repeats refresh rather than stack
    #: beyond it); the weight unless the rule sets a cap.
    cap: float = 0.0
    #: A provider's own notice words (rules' words are read from the rules file).
    notice: str | None = None

    def value(self, now: datetime) -> float:
        """Its contribution at ``now``."""
        hours = max(0.0, (now - self.until).total_seconds() / 3600)
        return self.weight * 0.5 ** (hours / self.decay_hours)


class ConversationRisk(msgspec.Struct, kw_only=True):
    """The state the relay keeps per conversation between events (:func:`encode_risk`)."""

    firings: list[Firing] = msgspec.field(default_factory=list)
    #: Recent message times per sender, for message velocity (pruned to its window).
    recent: dict[str, list[datetime]] = msgspec.field(default_factory=dict)
    #: Messages seen (both directions).
    messages: int = 0
    last_at: datetime | None = None
    #: The score after the last event, at ``last_at``.
    score: float = 0.0
    last_notice_at: datetime | None = None
    #: Rules the minor was already told about, in order.
    noticed: list[str] = msgspec.field(default_factory=list)
    #: True while the score stays at or above the finding threshold since the last finding
    #: (one finding per crossing).
    finding_open: bool = False
    findings: int = 0


def encode_risk(risk: ConversationRisk) -> bytes:
    return msgspec.json.encode(risk)


def decode_risk(data: bytes | None) -> ConversationRisk:
    """The stored state, or a fresh one for None (a conversation never scored)."""
    if data is None:
        return ConversationRisk()
    return msgspec.json.decode(data, type=ConversationRisk)


# --- what the engine answers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contribution:
    firing: Firing
    #: What it adds to the score now (decayed, and capped per rule).
    value: float


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice for the minor, shown in the chat with block and report one key away."""

    #: ``risk_<rule>`` (``risk_secrecy``), the notice's code on the wire.
    code: str
    rule: str
    text: str
    #: The minor who is told, and the adult it is about.
    to: str
    about: str
    #: The event that raised it.
    event: str
    at: datetime


@dataclass(frozen=True, slots=True)
class FindingDraft:
    """A finding for the `child_safety` queue: the adult is the subject."""

    subject: str
    minor: str
    score: float
    #: One line per contributing firing, strongest first.
    explanation: str
    contributions: tuple[Contribution, ...]
    event: str
    at: datetime

    @property
    def message_ids(self) -> tuple[str, ...]:
        """The messages whose content fired a rule (evidence to seal), oldest first."""
        seen: dict[str, None] = {}
        for c in sorted(self.contributions, key=lambda c: c.firing.at):
            if c.firing.kind != "behaviour":
                seen.setdefault(c.firing.event)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The engine's answer to one event."""

    #: The state to store for the conversation (a new object; the one passed in is unchanged).
    state: ConversationRisk
    #: Firings recorded by this event (refreshes of a feature that still holds aren't new).
    firings: tuple[Firing, ...]
    score: float
    #: The score the notice threshold is compared with: the score, except that in a familiar
    #: contact (rules' ``[familiar]``) content and provider firings count less.
    notice_score: float
    #: True when the scores are at or above the thresholds (adult–minor conversations only).
    above_notice: bool
    above_finding: bool
    notice: Notice | None
    finding: FindingDraft | None
    #: Whether any content rule or content-reading provider looked at text for this event.
    content_read: bool
