"""The signals engine: one event in, firings, a score and what to do out (sans-I/O).

``evaluate`` reads no clock and no database: the event carries its time and the facts the
relay gathered, the state comes from the caller and a new state goes back. Content rules
and content-reading providers see text only for a `visible` message from the adult to the
minor of an adult–minor conversation (:func:`content_allowed`); everything else, `e2ee`
included, gets behaviour features only, which read no text.

Score: every firing adds its weight, halving every ``decay_hours`` after it last held; the
firings of one rule add at most that rule's cap. Above ``notice_at`` (adult–minor
conversations only) the minor gets a notice, at most one per ``notice_min_hours_between``
and only when something new fired; above ``finding_at`` a finding is drafted, once per
crossing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import msgspec

from protocol.policy import Signals, is_minor
from server.safety.signals.model import (
    Contribution,
    ConversationRisk,
    Evaluation,
    Event,
    FindingDraft,
    Firing,
    FiringKind,
    MessageEvent,
    Notice,
    Party,
    adult_and_minor,
    pair_of,
    parties,
)
from server.safety.signals.rules import RuleSet

#: A firing whose contribution fell below this share of its weight is dropped from the state.
_NEGLIGIBLE = 0.01
#: Firings kept per rule (the newest): their sum is capped anyway.
_PER_RULE = 5
#: An event feature (velocity, night) that fires again within this long refreshes its firing
#: instead of recording another: one late night is one firing.
_EPISODE = timedelta(hours=12)
_PROVIDER_ID = re.compile(r"\A[a-z][a-z0-9_.-]{0,39}\Z")


# --- providers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderSignal:
    """What a provider reports about one event."""

    #: Its own name for the signal (``[a-z][a-z0-9_.-]*``); the firing's rule is
    #: ``provider:<provider name>/<signal>``.
    signal: str
    weight: float
    explanation: str
    #: Words for the minor if this signal raises a notice; None leaves the choice to the
    #: rules' own notices.
    notice: str | None = None
    decay_hours: float | None = None
    #: The most this signal adds however often it fires; the weight if None.
    cap: float | None = None


@runtime_checkable
class SignalProvider(Protocol):
    """A classifier beside the rules (docs/SIGNALS.md "Providers").

    ``observe`` is called once per event. A provider with ``reads_content`` gets the text
    only when the rules would read it (a `visible` message from the adult to a minor) and is
    not called at all otherwise; one without gets every event and ``text=None``. The event
    it is given never carries text either way. It must not block: the relay calls it on the
    message path.
    """

    name: str
    reads_content: bool

    def observe(self, event: Event, text: str | None) -> Iterable[ProviderSignal]: ...


def content_allowed(event: Event) -> bool:
    """May content rules read this event's text? Only a `visible` message, with text, from
    the adult to the minor of an adult–minor conversation."""
    if not isinstance(event, MessageEvent) or event.mode != "visible" or event.text is None:
        return False
    pair = adult_and_minor(event)
    return pair is not None and pair[0] == event.sender


# --- firings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hit:
    rule: str
    kind: FiringKind
    weight: float
    decay_hours: float
    explanation: str
    detail: str
    cap: float
    #: Refresh the rule's last firing instead of recording a new one when it still holds.
    persistent: bool = False
    episode: bool = False
    notice: str | None = None


def _behaviour(rules: RuleSet, event: Event, state: ConversationRisk, now: datetime) -> list[_Hit]:
    spec = rules.behaviour
    default_decay = rules.behaviour_decay_hours
    hits: list[_Hit] = []

    def hit(name: str, feature: object, weight: float, detail: str, **kw: bool) -> None:
        decay = getattr(feature, "decay_hours", None) or default_decay
        explanation = getattr(feature, "explanation", "")
        hits.append(_Hit(name, "behaviour", weight, decay, explanation, detail, weight, **kw))

    first, second = parties(event)
    pair = pair_of(first, second)
    am = adult_and_minor(event)
    facts = event.facts

    if am is not None and (f := spec.age_gap) is not None:
        weight = f.weights.get(am[1].band)  # type: ignore[call-overload]
        if weight:
            hit("age_gap", f, weight, f"adult and {am[1].band}", persistent=True)
    if (f := spec.new_contact) is not None:
        if facts.since is None:
            hit("new_contact", f, f.weight, "not a contact yet", persistent=True)
        else:
            days = (now - facts.since).total_seconds() / 86400
            if days < f.days:
                hit(
                    "new_contact",
                    f,
                    f.weight,
                    f"contact {max(days, 0):.1f} days old",
                    persistent=True,
                )
    if (
        am is not None
        and (f := spec.adult_initiated) is not None
        and facts.initiator is not None
        and facts.initiator == am[0].handle
    ):
        hit("adult_initiated", f, f.weight, "the adult reached out first", persistent=True)
    if am is not None and (f := spec.many_minors) is not None:
        n = facts.adult_recent_minor_contacts
        if n >= f.at_least:
            hit("many_minors", f, f.weight, f"{n} minors contacted recently", persistent=True)
    if am is not None and (f := spec.pushback_history) is not None:
        n = facts.adult_pushback_from_minors
        if n >= f.at_least:
            detail = f"{n} minors declined, blocked or reported"
            hit("pushback_history", f, f.weight, detail, persistent=True)

    if isinstance(event, MessageEvent):
        sender_is_adult = not is_minor(event.sender.band)
        scored_sender = sender_is_adult if pair == "adult_minor" else True
        if (f := spec.velocity) is not None and scored_sender:
            recent = state.recent.get(event.sender.handle, [])
            if len(recent) >= f.messages:
                hit(
                    "velocity",
                    f,
                    f.weight,
                    f"{len(recent)} messages within {f.minutes:g} minutes",
                    episode=True,
                )
        local = event.recipient_local_time
        if (f := spec.night) is not None and local is not None and sender_is_adult:
            h = local.hour
            at_night = (
                f.start_hour <= h or h < f.end_hour
                if f.start_hour > f.end_hour
                else f.start_hour <= h < f.end_hour
            )
            if at_night:
                hit(
                    "night",
                    f,
                    f.weight,
                    f"sent at {local:%H:%M} the recipient's time",
                    episode=True,
                )
    elif (
        am is not None
        and (f := spec.pushback_here) is not None
        and event.kind in ("declined", "blocked", "reported")
        and event.actor == am[1]
    ):
        hit("pushback_here", f, f.weight, f"the minor {event.kind} the adult")
    return hits


def _content(rules: RuleSet, settings: Signals, text: str) -> list[_Hit]:
    return [
        _Hit(
            rule.id,
            "content",
            rule.weight,
            rule.decay_hours or settings.decay_hours,
            rule.explanation,
            f"pattern {number}",
            rule.cap,
        )
        for rule, number in rules.content_matches(text)
    ]


def _provided(
    providers: Sequence[SignalProvider], event: Event, text: str | None, settings: Signals
) -> tuple[list[_Hit], bool]:
    """The providers' signals, and whether any of them was given text."""
    if not providers:
        return [], False
    allowed = text is not None
    blind = replace(event, text=None) if isinstance(event, MessageEvent) else event
    hits: list[_Hit] = []
    read = False
    for provider in providers:
        if provider.reads_content and not allowed:
            continue  # never called where content may not be read
        given = text if provider.reads_content else None
        read = read or given is not None
        for s in provider.observe(blind, given):
            if not _PROVIDER_ID.match(provider.name) or not _PROVIDER_ID.match(s.signal):
                raise ValueError(f"provider {provider.name!r}: bad signal name {s.signal!r}")
            if not 0 < s.weight <= 100 or (s.decay_hours is not None and s.decay_hours <= 0):
                raise ValueError(f"provider {provider.name!r}: signal {s.signal!r} out of range")
            hits.append(
                _Hit(
                    f"provider:{provider.name}/{s.signal}",
                    "provider",
                    s.weight,
                    s.decay_hours or settings.decay_hours,
                    s.explanation,
                    "",
                    max(s.cap or s.weight, s.weight),
                    notice=s.notice,
                )
            )
    return hits, read


def _record(
    firings: list[Firing], hits: Iterable[_Hit], event_id: str, now: datetime
) -> list[Firing]:
    """Add the hits to ``firings`` (in place); return the firings that are new."""
    new: list[Firing] = []
    for h in hits:
        last = next((i for i in range(len(firings) - 1, -1, -1) if firings[i].rule == h.rule), None)
        if last is not None:
            prior = firings[last]
            if (h.persistent and prior.weight == h.weight) or (
                h.episode and now - prior.until < _EPISODE
            ):
                firings[last] = msgspec.structs.replace(prior, until=now, detail=h.detail)
                continue
        firing = Firing(
            rule=h.rule,
            kind=h.kind,
            weight=h.weight,
            decay_hours=h.decay_hours,
            event=event_id,
            at=now,
            until=now,
            explanation=h.explanation,
            detail=h.detail,
            cap=h.cap,
            notice=h.notice,
        )
        firings.append(firing)
        new.append(firing)
    return new


def _prune(firings: list[Firing], now: datetime) -> list[Firing]:
    live = [f for f in firings if f.value(now) >= _NEGLIGIBLE * f.weight]
    counts: dict[str, int] = {}
    kept: list[Firing] = []
    for f in reversed(live):
        counts[f.rule] = counts.get(f.rule, 0) + 1
        if counts[f.rule] <= _PER_RULE:
            kept.append(f)
    kept.reverse()
    return kept


def contributions(state: ConversationRisk, now: datetime) -> list[Contribution]:
    """What each firing adds at ``now`` (decayed, each rule capped), strongest first."""
    by_rule: dict[str, list[Firing]] = {}
    for f in state.firings:
        by_rule.setdefault(f.rule, []).append(f)
    out: list[Contribution] = []
    for rule_firings in by_rule.values():
        room = max(f.cap or f.weight for f in rule_firings)
        for f in sorted(rule_firings, key=lambda f: f.value(now), reverse=True):
            v = min(f.value(now), room)
            room -= v
            if v > 0:
                out.append(Contribution(f, v))
    out.sort(key=lambda c: c.value, reverse=True)
    return out


def score_at(state: ConversationRisk, now: datetime) -> float:
    """The conversation's score at ``now`` (it only decays between events)."""
    return sum(c.value for c in contributions(state, now))


def explain(contribs: Sequence[Contribution]) -> str:
    """One line per contribution, for moderators."""
    lines = []
    for c in contribs:
        f = c.firing
        detail = f", {f.detail}" if f.detail else ""
        lines.append(
            f"- {f.rule} ({f.kind}) adds {c.value:.2f} of weight {f.weight:g}: {f.explanation} "
            f"[{f.event} at {f.at:%Y-%m-%d %H:%M}Z{detail}]"
        )
    return "\n".join(lines)


# --- notices --------------------------------------------------------------------------------


def _notice_words(rules: RuleSet, firing: Firing) -> str | None:
    if firing.kind == "provider":
        return firing.notice
    if firing.kind == "content":
        rule = rules.rule(firing.rule)
        return rule.notice if rule else None
    feature = getattr(rules.behaviour, firing.rule, None)
    return getattr(feature, "notice", None)


def _pick_notice(
    rules: RuleSet, state: ConversationRisk, new: Sequence[Firing], contribs: Sequence[Contribution]
) -> tuple[str, str] | None:
    """(rule, words) for a notice: the most specific new firing, one the minor hasn't been
    told about first; else the strongest contribution with words."""

    def rank(f: Firing) -> tuple[bool, bool, float]:
        return (f.rule not in state.noticed, f.kind != "behaviour", f.weight)

    for f in sorted(new, key=rank, reverse=True):
        if words := _notice_words(rules, f):
            return f.rule, words
    for c in sorted(contribs, key=lambda c: rank(c.firing), reverse=True):
        if words := _notice_words(rules, c.firing):
            return c.firing.rule, words
    return None


def _code(rule: str) -> str:
    return "risk_" + (rule.split("/")[0].replace("provider:", "provider_") if "/" in rule else rule)


# --- evaluate -------------------------------------------------------------------------------


def evaluate(
    rules: RuleSet,
    settings: Signals,
    state: ConversationRisk,
    event: Event,
    providers: Sequence[SignalProvider] = (),
) -> Evaluation:
    """Score one event of a conversation; ``state`` is not modified (the answer carries the
    state to store)."""
    if not settings.enabled:
        return Evaluation(state, (), state.score, state.score, False, False, None, None, False)
    now = event.at if state.last_at is None else max(event.at, state.last_at)
    firings = list(state.firings)
    recent = {k: list(v) for k, v in state.recent.items()}
    messages = state.messages
    if isinstance(event, MessageEvent):
        messages += 1
        window = rules.behaviour.velocity
        if window is not None:
            since = now - timedelta(minutes=window.minutes)
            times = [t for t in recent.get(event.sender.handle, []) if t > since]
            times.append(now)
            recent[event.sender.handle] = times[-(window.messages + 1) :]
            recent = {k: v for k, v in recent.items() if v and v[-1] > since}
    interim = ConversationRisk(firings=firings, recent=recent)
    hits = _behaviour(rules, event, interim, now)

    text = None
    if content_allowed(event):
        assert isinstance(event, MessageEvent)
        text = event.text
    content_read = text is not None
    if text is not None and rules.content:
        hits.extend(_content(rules, settings, text))
    provided, provider_read = _provided(providers, event, text, settings)
    hits.extend(provided)

    event_id = event.id
    new = _record(firings, hits, event_id, now)
    firings = _prune(firings, now)
    next_state = ConversationRisk(
        firings=firings,
        recent=recent,
        messages=messages,
        last_at=now,
        last_notice_at=state.last_notice_at,
        noticed=list(state.noticed),
        finding_open=state.finding_open,
        findings=state.findings,
    )
    contribs = contributions(next_state, now)
    score = sum(c.value for c in contribs)
    next_state.score = score

    since = event.facts.since
    familiar = since is not None and (now - since).total_seconds() >= rules.familiar.days * 86400
    notice_score = score
    if familiar:
        notice_score = sum(
            c.value * (rules.familiar.notice_factor if c.firing.kind != "behaviour" else 1.0)
            for c in contribs
        )

    am = adult_and_minor(event)
    above_notice = am is not None and notice_score >= settings.notice_at
    above_finding = am is not None and score >= settings.finding_at
    notice = finding = None
    if am is not None:
        adult, minor = am
        notice = None
        if above_notice:
            notice = _notice(
                rules, settings, next_state, new, contribs, adult, minor, event_id, now
            )
        if above_finding and not next_state.finding_open:
            next_state.finding_open = True
            next_state.findings += 1
            head = (
                f"Grooming-risk score {score:.2f} (finding at {settings.finding_at:g}) between "
                f"adult {adult.handle} and minor {minor.handle} ({minor.band}), "
                f"{messages} messages seen; what fired:"
            )
            finding = FindingDraft(
                subject=adult.handle,
                minor=minor.handle,
                score=score,
                explanation=f"{head}\n{explain(contribs)}",
                contributions=tuple(contribs),
                event=event_id,
                at=now,
            )
        elif not above_finding:
            next_state.finding_open = False
    return Evaluation(
        state=next_state,
        firings=tuple(new),
        score=score,
        notice_score=notice_score,
        above_notice=above_notice,
        above_finding=above_finding,
        notice=notice,
        finding=finding,
        content_read=content_read or provider_read,
    )


def _notice(
    rules: RuleSet,
    settings: Signals,
    state: ConversationRisk,
    new: Sequence[Firing],
    contribs: Sequence[Contribution],
    adult: Party,
    minor: Party,
    event_id: str,
    now: datetime,
) -> Notice | None:
    """Over the notice threshold: a notice if something new fired and the last notice is
    old enough (``state`` is updated when one is given)."""
    if not new:
        return None
    last = state.last_notice_at
    if last is not None and now - last < timedelta(hours=settings.notice_min_hours_between):
        return None
    picked = _pick_notice(rules, state, new, contribs)
    if picked is None:
        return None
    rule, words = picked
    state.last_notice_at = now
    if rule not in state.noticed:
        state.noticed.append(rule)
    return Notice(
        code=_code(rule),
        rule=rule,
        text=words,
        to=minor.handle,
        about=adult.handle,
        event=event_id,
        at=now,
    )


class SignalEngine:
    """The rules, the policy's thresholds and the providers, bound together:
    ``engine.evaluate(state, event)``."""

    def __init__(
        self, rules: RuleSet, settings: Signals, providers: Sequence[SignalProvider] = ()
    ) -> None:
        self.rules = rules
        self.settings = settings
        self.providers = tuple(providers)

    def evaluate(self, state: ConversationRisk, event: Event) -> Evaluation:
        return evaluate(self.rules, self.settings, state, event, self.providers)
