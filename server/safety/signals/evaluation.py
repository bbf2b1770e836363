"""Evaluating rules on a labelled corpus (bench/signals_eval.py, docs/SIGNALS.md).

A corpus is a directory of TOML files, each a list of ``[[conversation]]`` tables: two
parties, the mode, the contact's facts (how old it is, who reached out, the adult's recent
contacts with minors and pushback from them) and messages ``[who, "dN HH:MM", text]`` in
the minor's local time (a text starting with ``!`` is a contact event: ``!blocked``,
``!declined``, ``!reported``). Each conversation is labelled ``harmful`` or ``benign`` and
has a category. One conversation in five (by a hash of its id) is held out: tune on the
rest, report both.

Running a conversation gives a :class:`Trace`: after how many messages the first notice
and the first finding came, if ever. :class:`EngineRunner` gets it from the engine; a run
through a real relay only has to produce the same trace.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from protocol.policy import Band, ConversationMode, Signals
from server.safety.signals.engine import SignalEngine, SignalProvider
from server.safety.signals.model import (
    ContactEvent,
    ContactFacts,
    ConversationRisk,
    Event,
    MessageEvent,
    Party,
)
from server.safety.signals.rules import RuleSet

Label = Literal["harmful", "benign"]
Category = Literal[
    "grooming",
    "family",
    "coach",
    "teacher",
    "peer",
    "rude_stranger",
    "other_adult",
    "adult_e2ee",
]
#: Benign categories that must raise no notice at all.
NO_NOTICE: tuple[str, ...] = ("family", "coach", "teacher", "peer")
_WHEN = re.compile(r"\Ad(\d{1,3}) ([01]\d|2[0-3]):([0-5]\d)\Z")
CONTACT_EVENTS = ("!blocked", "!declined", "!reported")


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class PartySpec(_Spec, kw_only=True):
    handle: str
    band: Band


class ConversationSpec(_Spec, kw_only=True):
    id: str
    label: Label
    category: Category
    mode: ConversationMode = "visible"
    #: The first day of the conversation, and the minor's (else b's) UTC offset in hours.
    start: date
    tz: float = 0.0
    #: How old the contact is at the first message, in days.
    contact_days: float = 0.0
    initiator: Literal["a", "b"]
    a: PartySpec
    b: PartySpec
    a_recent_minor_contacts: int = 0
    a_pushback: int = 0
    b_recent_minor_contacts: int = 0
    b_pushback: int = 0
    note: str = ""
    messages: list[tuple[Literal["a", "b"], str, str]]


class CorpusFile(_Spec, kw_only=True):
    conversation: list[ConversationSpec]


@dataclass(frozen=True, slots=True)
class Conversation:
    spec: ConversationSpec
    source: str

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def split(self) -> Literal["train", "heldout"]:
        return split_of(self.spec.id)


def split_of(conversation_id: str) -> Literal["train", "heldout"]:
    """One in five, by a hash of the id: stable whatever the corpus order."""
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return "heldout" if digest[0] % 5 == 0 else "train"


class CorpusError(Exception):
    pass


def load_corpus(directory: Path) -> list[Conversation]:
    conversations: list[Conversation] = []
    seen: set[str] = set()
    for path in sorted(directory.glob("*.toml")):
        try:
            data = msgspec.toml.decode(path.read_bytes(), type=CorpusFile)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise CorpusError(f"{path}: {exc}") from None
        for spec in data.conversation:
            if spec.id in seen:
                raise CorpusError(f"{path}: conversation id {spec.id!r} used twice")
            seen.add(spec.id)
            _check(path, spec)
            conversations.append(Conversation(spec, path.name))
    return conversations


def _when(spec: ConversationSpec, stamp: str) -> tuple[datetime, time]:
    m = _WHEN.match(stamp)
    if m is None:
        raise CorpusError(f"conversation {spec.id!r}: time {stamp!r} is not 'dN HH:MM'")
    day, hour, minute = int(m[1]), int(m[2]), int(m[3])
    local = datetime.combine(spec.start + timedelta(days=day), time(hour, minute))
    utc = (local - timedelta(hours=spec.tz)).replace(tzinfo=UTC)
    return utc, time(hour, minute)


def _check(path: Path, spec: ConversationSpec) -> None:
    if not spec.messages:
        raise CorpusError(f"{path}: conversation {spec.id!r} has no messages")
    last = None
    for who, stamp, _text in spec.messages:
        at, _ = _when(spec, stamp)
        if last is not None and at < last:
            raise CorpusError(f"{path}: conversation {spec.id!r}: {who} {stamp} goes back in time")
        last = at


def message_times(spec: ConversationSpec) -> list[datetime]:
    """When each line of ``spec`` happened (UTC)."""
    return [_when(spec, stamp)[0] for _who, stamp, _text in spec.messages]


def _party(p: PartySpec) -> Party:
    return Party(p.handle, p.band)


def events(conversation: Conversation, *, content: bool = True) -> Iterator[Event]:
    """The conversation as the relay would see it. ``content=False`` drops all text (as if
    the conversation were e2ee, for a behaviour-only run)."""
    spec = conversation.spec
    parties = {"a": _party(spec.a), "b": _party(spec.b)}
    first, _ = _when(spec, spec.messages[0][1])
    since = first - timedelta(days=spec.contact_days)
    initiator = parties[spec.initiator].handle
    adult_side = "a" if spec.a.band == "adult" else "b"
    recent = spec.a_recent_minor_contacts if adult_side == "a" else spec.b_recent_minor_contacts
    pushback = spec.a_pushback if adult_side == "a" else spec.b_pushback
    facts = ContactFacts(
        since=since,
        initiator=initiator,
        adult_recent_minor_contacts=recent,
        adult_pushback_from_minors=pushback,
    )
    for n, (who, stamp, text) in enumerate(spec.messages, start=1):
        at, local = _when(spec, stamp)
        sender = parties[who]
        other = parties["b" if who == "a" else "a"]
        if text in CONTACT_EVENTS:
            kind = text[1:]
            yield ContactEvent(f"{spec.id}:{n}", kind, sender, other, spec.mode, at, facts)  # type: ignore[arg-type]
            continue
        readable = text if (content and spec.mode == "visible") else None
        yield MessageEvent(
            id=f"{spec.id}:{n}",
            sender=sender,
            recipient=other,
            mode=spec.mode,
            at=at,
            text=readable,
            facts=facts,
            recipient_local_time=local,
        )


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trace:
    """What a run of one conversation produced."""

    conversation: str
    messages: int
    #: The number of messages seen (both sides) when the first notice / finding came.
    first_notice: int | None
    first_finding: int | None
    notices: int = 0
    max_score: float = 0.0
    notice_rules: tuple[str, ...] = ()
    fired: tuple[str, ...] = field(default=())


class Runner(Protocol):
    """Runs a conversation and reports what came of it (the engine here; a real relay in
    the end-to-end run)."""

    def run(self, conversation: Conversation) -> Trace: ...


class EngineRunner:
    def __init__(
        self,
        rules: RuleSet,
        settings: Signals,
        providers: Sequence[SignalProvider] = (),
        *,
        content: bool = True,
    ) -> None:
        self.engine = SignalEngine(rules, settings, providers)
        self.content = content

    def run(self, conversation: Conversation) -> Trace:
        state = ConversationRisk()
        first_notice = first_finding = None
        notices = 0
        max_score = 0.0
        rules: list[str] = []
        fired: dict[str, None] = {}
        for event in events(conversation, content=self.content):
            result = self.engine.evaluate(state, event)
            state = result.state
            max_score = max(max_score, result.score)
            for f in result.firings:
                fired.setdefault(f.rule)
            if result.notice is not None:
                notices += 1
                rules.append(result.notice.rule)
                if first_notice is None:
                    first_notice = state.messages
            if result.finding is not None and first_finding is None:
                first_finding = state.messages
        return Trace(
            conversation=conversation.id,
            messages=state.messages,
            first_notice=first_notice,
            first_finding=first_finding,
            notices=notices,
            max_score=max_score,
            notice_rules=tuple(rules),
            fired=tuple(fired),
        )


# --- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scores:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def confusion(pairs: Iterable[tuple[bool, bool]]) -> Scores:
    """From (harmful, flagged) pairs."""
    tp = fp = fn = tn = 0
    for harmful, flagged in pairs:
        if harmful and flagged:
            tp += 1
        elif flagged:
            fp += 1
        elif harmful:
            fn += 1
        else:
            tn += 1
    return Scores(tp, fp, fn, tn)


def median(values: Iterable[int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
