"""The rules file's schema and its compiled form (docs/SIGNALS.md "The rules file").

A rules file is data: content rules, one per grooming stage, each with case-insensitive
regular expressions, a weight, a decay, an explanation for moderators and the words of the
notice a minor reads; and behaviour features, implemented in code (server/safety/signals/
engine.py) with their weights and parameters here. Each content rule may list ``examples``
that must fire and ``near_misses`` that must not: loading checks them, so a change that
breaks a rule's own examples stops the relay at start instead of silently missing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec

Weight = Annotated[float, msgspec.Meta(gt=0, le=100)]
Hours = Annotated[float, msgspec.Meta(gt=0, le=87600)]
RuleId = Annotated[str, msgspec.Meta(pattern=r"\A[a-z][a-z0-9_]{0,39}\Z")]
Sentence = Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
MinorBand = Literal["under_13", "teen_13_15", "teen_16_17"]
Hour = Annotated[int, msgspec.Meta(ge=0, le=23)]

#: The longest text content rules read; the rest of a longer message is not matched (the
#: relay's own message limit is far below this).
MAX_TEXT = 8000


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Unknown keys are errors, so a typo in a rules file stops the relay."""


class NormalizeSpec(_Spec, kw_only=True):
    #: Digits and symbols read as letters when they touch a letter (``s3cret``, ``pr0mise``).
    leet: dict[Annotated[str, msgspec.Meta(min_length=1, max_length=1)], str] = msgspec.field(
        default_factory=dict
    )
    #: Whole words replaced before matching (``u`` → ``you``).
    words: dict[str, str] = msgspec.field(default_factory=dict)
    #: Runs of three or more of the same letter become two (``soooo`` → ``soo``).
    squeeze: bool = True


class ContentSpec(_Spec, kw_only=True):
    title: Sentence
    weight: Weight
    #: Half-life of a firing in hours; the policy's ``signals.decay_hours`` if absent.
    decay_hours: Hours | None = None
    #: The most this rule adds however often it fires; its weight if absent (repeats refresh).
    cap: Weight | None = None
    explanation: Sentence
    notice: Sentence
    patterns: Annotated[list[str], msgspec.Meta(min_length=1)]
    #: A message matching any of these doesn't fire the rule.
    unless: list[str] = msgspec.field(default_factory=list)
    examples: list[str] = msgspec.field(default_factory=list)
    near_misses: list[str] = msgspec.field(default_factory=list)


class _Feature(_Spec, kw_only=True):
    explanation: Sentence
    notice: Sentence
    decay_hours: Hours | None = None


class AgeGap(_Feature, kw_only=True):
    """An adult and a minor: weight by the minor's band."""

    weights: dict[MinorBand, Weight]


class NewContact(_Feature, kw_only=True):
    """The two became contacts less than ``days`` ago (or aren't contacts yet)."""

    weight: Weight
    days: Annotated[float, msgspec.Meta(gt=0, le=3650)]


class AdultInitiated(_Feature, kw_only=True):
    """The adult reached out first."""

    weight: Weight


class ManyMinors(_Feature, kw_only=True):
    """The adult started contact with at least ``at_least`` minors recently."""

    weight: Weight
    at_least: Annotated[int, msgspec.Meta(ge=1, le=100000)]


class Velocity(_Feature, kw_only=True):
    """The sender sent at least ``messages`` messages within ``minutes``."""

    weight: Weight
    messages: Annotated[int, msgspec.Meta(ge=2, le=10000)]
    minutes: Annotated[float, msgspec.Meta(gt=0, le=1440)]


class Night(_Feature, kw_only=True):
    """The adult wrote during the recipient's night: from ``start_hour`` to ``end_hour``."""

    weight: Weight
    start_hour: Hour
    end_hour: Hour


class PushbackHistory(_Feature, kw_only=True):
    """At least ``at_least`` other minors declined, blocked or reported the adult recently."""

    weight: Weight
    at_least: Annotated[int, msgspec.Meta(ge=1, le=100000)]


class PushbackHere(_Feature, kw_only=True):
    """The minor in this conversation declined or blocked the adult."""

    weight: Weight


class BehaviourSpec(_Spec, kw_only=True):
    """Features that never read content; an absent table turns that feature off."""

    age_gap: AgeGap | None = None
    new_contact: NewContact | None = None
    adult_initiated: AdultInitiated | None = None
    many_minors: ManyMinors | None = None
    velocity: Velocity | None = None
    night: Night | None = None
    pushback_history: PushbackHistory | None = None
    pushback_here: PushbackHere | None = None


class Familiar(_Spec, kw_only=True):
    """A contact at least ``days`` old is someone the minor knows: for the notice decision
    only, content and provider firings count ``notice_factor`` of their weight (family and
    coaches ask for photos and pay compliments). Findings always use the full score."""

    days: Annotated[float, msgspec.Meta(gt=0, le=3650)] = 90.0
    notice_factor: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0


class RulesFile(_Spec, kw_only=True):
    version: Literal[1]
    description: str
    #: Behaviour features' default half-life in hours (content rules default to the policy's).
    behaviour_decay_hours: Hours = 72.0
    normalize: NormalizeSpec = msgspec.field(default_factory=NormalizeSpec)
    familiar: Familiar = msgspec.field(default_factory=Familiar)
    content: dict[RuleId, ContentSpec]
    behaviour: BehaviourSpec = msgspec.field(default_factory=BehaviourSpec)


FEATURES: tuple[str, ...] = tuple(BehaviourSpec.__struct_fields__)


# --- normalising text -----------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "ʼ": "'"})
#: Escapes that can spell a letter (hex, Unicode, names, octal) or refer to a group.
_LETTER_ESCAPE = re.compile(r"\\[xuUN0-9]")
_ANY_ESCAPE = re.compile(r"\\.")


def _case_free(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """``pattern`` without IGNORECASE, if that matches exactly the same in case-folded ASCII
    text: every letter it names is a lower-case ASCII one (IGNORECASE lets a few non-ASCII
    letters, such as the Kelvin sign, match ASCII ones, and upper-case letters match lower
    case), and no escape spells a letter."""
    source = pattern.pattern
    if not pattern.flags & re.IGNORECASE or _LETTER_ESCAPE.search(source):
        return None
    letters = _ANY_ESCAPE.sub("", source)  # \b, \w, \. and the like name no letter
    if not letters.isascii() or letters != letters.lower():
        return None
    return re.compile(source, pattern.flags & ~re.IGNORECASE)


def _without_leading_boundary(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """``pattern`` without the ``\\b`` it starts with, or None if it starts otherwise."""
    if not pattern.pattern.startswith("\\b"):
        return None
    try:
        return re.compile(pattern.pattern[2:], pattern.flags)
    except re.error:
        return None


_SQUEEZE = re.compile(r"([^\W\d_])\1{2,}")
_TOKEN = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Normalizer:
    """Makes the forms of a message that patterns are matched against."""

    leet: dict[str, str]
    words: dict[str, str]
    squeeze: bool

    @classmethod
    def of(cls, spec: NormalizeSpec) -> Normalizer:
        return cls(
            leet={k.casefold(): v.casefold() for k, v in spec.leet.items()},
            words={k.casefold(): v.casefold() for k, v in spec.words.items()},
            squeeze=spec.squeeze,
        )

    def basic(self, text: str) -> str:
        """Case-folded, NFKC, apostrophes dropped (``don't`` → ``dont``), spaces collapsed."""
        text = unicodedata.normalize("NFKC", text[:MAX_TEXT]).casefold()
        text = text.translate(_APOSTROPHES).replace("'", "")
        return _SPACE.sub(" ", text).strip()

    def full(self, basic: str) -> str:
        """The basic form with look-alike characters read as letters, long runs of a letter
        shortened and text-speak words spelt out."""
        text = basic
        if self.leet:
            chars = "".join(re.escape(c) for c in self.leet)
            leet = re.compile(rf"(?<=[^\W\d_])[{chars}]|[{chars}](?=[^\W\d_])")
            # Twice: "h00k" needs its second 0 read once the first has become a letter.
            for _ in range(2):
                text = leet.sub(lambda m: self.leet[m.group()], text)
        if self.squeeze:
            text = _SQUEEZE.sub(r"\1\1", text)
        if self.words:
            text = _TOKEN.sub(lambda m: self.words.get(m.group(), m.group()), text)
        return text

    def forms(self, text: str) -> tuple[str, ...]:
        basic = self.basic(text)
        full = self.full(basic)
        return (basic,) if full == basic else (basic, full)


# --- compiled rules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentRule:
    id: str
    title: str
    weight: float
    decay_hours: float | None
    cap: float
    explanation: str
    notice: str
    patterns: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]
    #: The patterns for ASCII text: each compiled without IGNORECASE where that can't change
    #: what it matches there (forms are case-folded), which is faster; else the pattern.
    ascii_patterns: tuple[re.Pattern[str], ...] = field(init=False, default=())
    #: For each pattern (and each ASCII one), the same without its leading ``\b``, or None:
    #: a necessary condition (dropping an assertion only allows more) that `re` checks about
    #: twice as fast, because a pattern that starts with literals skips ahead by them.
    quick: tuple[re.Pattern[str] | None, ...] = field(init=False, default=())
    ascii_quick: tuple[re.Pattern[str] | None, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        fast = tuple(_case_free(p) or p for p in self.patterns)
        object.__setattr__(self, "ascii_patterns", fast)
        object.__setattr__(
            self, "quick", tuple(_without_leading_boundary(p) for p in self.patterns)
        )
        object.__setattr__(self, "ascii_quick", tuple(_without_leading_boundary(p) for p in fast))

    def match(self, forms: Sequence[str]) -> int | None:
        """The number (from 1) of the first pattern that matches any form, or None; None as
        well when an ``unless`` pattern matches."""
        # Plain loops: this runs for every rule on every adult-to-minor visible message.
        per_form = [
            (f, self.ascii_patterns, self.ascii_quick)
            if f.isascii()
            else (f, self.patterns, self.quick)
            for f in forms
        ]
        for index in range(len(self.patterns)):
            for form, patterns, quick in per_form:
                first = quick[index]
                if first is not None and first.search(form) is None:
                    continue
                if patterns[index].search(form) is None:
                    continue
                # ``unless`` only now: most text matches no pattern, and then it is moot.
                if any(u.search(f) for u in self.unless for f in forms):
                    return None
                return index + 1
        return None


@dataclass(frozen=True, slots=True)
class RuleSet:
    name: str
    description: str
    normalizer: Normalizer
    content: tuple[ContentRule, ...]
    behaviour: BehaviourSpec
    behaviour_decay_hours: float
    familiar: Familiar = field(default_factory=Familiar)

    def content_matches(self, text: str) -> list[tuple[ContentRule, int]]:
        """Each content rule the text fires, with the pattern number that fired it."""
        forms = self.normalizer.forms(text)
        found = []
        for rule in self.content:
            number = rule.match(forms)
            if number is not None:
                found.append((rule, number))
        return found

    def rule(self, rule_id: str) -> ContentRule | None:
        return next((r for r in self.content if r.id == rule_id), None)
