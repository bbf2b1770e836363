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
import re._constants as sre_constants
import re._parser as sre_parser
import unicodedata
from collections.abc import Iterable, Sequence
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


#: The characters outside ASCII that IGNORECASE matches to an ASCII letter, as `re` does
#: it (İ ı ſ K; tests/server/test_signals_corpus.py works them out again from `re` itself).
_ASCII_LOOKALIKES = frozenset("\u0130\u0131\u017f\u212a")


def plain(form: str) -> bool:
    """Is ``form`` (case-folded) matched by ``_case_free`` copies exactly as by the
    originals? ASCII text is, and so is any text without an ASCII look-alike: accents,
    other scripts and emoji have no case relation to an ASCII letter."""
    return form.isascii() or _ASCII_LOOKALIKES.isdisjoint(form)


def _case_free(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """``pattern`` without IGNORECASE, if that matches exactly the same in case-folded
    `plain` text: every letter it names is a lower-case ASCII one (IGNORECASE lets a few non-ASCII
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


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)


def _needles(pattern: re.Pattern[str]) -> tuple[tuple[str, ...], ...] | None:
    """Sets of strings such that every match of ``pattern`` contains one string of each set,
    or None: read from the pattern's parse tree (the standard library's own parser), for a
    pattern that is case sensitive. ``needle in text`` is a necessary condition far cheaper
    than a search, and most text a rule reads lacks one of them."""
    if pattern.flags & re.IGNORECASE:
        return None
    try:
        tree = sre_parser.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError, ValueError):
        return None
    if tree.state.flags & re.IGNORECASE:  # an inline (?i) at the start
        return None
    found = _requirements(tree)
    found.sort(key=_selectivity, reverse=True)  # the likeliest to rule a text out first
    return tuple(found[:_MAX_NEEDLE_SETS]) or None


#: Needle sets kept per pattern: past a few, another `in` costs more than it saves.
_MAX_NEEDLE_SETS = 3


def _selectivity(needles: tuple[str, ...]) -> int:
    return min(len(n) for n in needles)


def _requirements(items: sre_parser.SubPattern | list) -> list[tuple[str, ...]]:
    """For a sequence of parse-tree nodes (in order), sets of strings any match contains
    one of each: each run of literal characters, and for a group, a branch or a repeat
    of at least once, the best set of what it requires (for a branch, the union over its
    branches of what each requires)."""
    candidates: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, av in items:
        if op is sre_constants.LITERAL:
            run.append(chr(av))
            continue
        if run:  # anything else ends the run of literals, zero-width nodes (\b) too
            candidates.append(("".join(run),))
            run = []
        found: tuple[str, ...] | None = None
        if op is sre_constants.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if not add_flags and not del_flags:  # (?i:…) and the like: not read
                found = _best(_requirements(sub))
        elif op is sre_constants.BRANCH:
            branches = [_best(_requirements(b)) for b in av[1]]
            if all(branches):
                found = tuple(n for b in branches for n in b)  # type: ignore[union-attr]
        elif op in _REPEATS and av[0] >= 1:  # repeated at least once: required once
            found = _best(_requirements(av[2]))
        if found:
            candidates.append(found)
    if run:
        candidates.append(("".join(run),))
    return candidates


def _best(candidates: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    return max(candidates, key=_selectivity, default=None)


_SQUEEZE = re.compile(r"([^\W\d_])\1{2,}")
_TOKEN = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Normalizer:
    """Makes the forms of a message that patterns are matched against."""

    leet: dict[str, str]
    words: dict[str, str]
    squeeze: bool
    #: Made once, from ``leet`` and ``words``: a look-alike character touching a letter; any
    #: look-alike character (most text has none, and then there is nothing to replace); a
    #: whole token that is a key of ``words`` (what `_TOKEN` would find and look up, but
    #: without calling back for every other token).
    _leet: re.Pattern[str] | None = field(init=False, default=None)
    _leet_any: re.Pattern[str] | None = field(init=False, default=None)
    _words: re.Pattern[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.leet:
            chars = "".join(re.escape(c) for c in self.leet)
            leet = re.compile(rf"(?<=[^\W\d_])[{chars}]|[{chars}](?=[^\W\d_])")
            object.__setattr__(self, "_leet", leet)
            object.__setattr__(self, "_leet_any", re.compile(f"[{chars}]"))
        # A key that isn't one whole token could never equal a token: left out.
        keys = sorted((k for k in self.words if _TOKEN.fullmatch(k)), key=len, reverse=True)
        if keys:
            alternatives = "|".join(re.escape(k) for k in keys)
            words = re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])")
            object.__setattr__(self, "_words", words)

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
        leet, leet_any = self._leet, self._leet_any
        if leet is not None and leet_any is not None and leet_any.search(text) is not None:
            # Twice: "h00k" needs its second 0 read once the first has become a letter (a
            # pass that replaced nothing would leave the next one nothing to do either).
            for _ in range(2):
                text, replaced = leet.subn(lambda m: self.leet[m.group()], text)
                if not replaced:
                    break
        if self.squeeze:
            text = _SQUEEZE.sub(r"\1\1", text)
        if self._words is not None:
            text = self._words.sub(lambda m: self.words[m.group()], text)
        return text

    def forms(self, text: str) -> tuple[str, ...]:
        basic = self.basic(text)
        full = self.full(basic)
        return (basic,) if full == basic else (basic, full)


def _has_needles(form: str | frozenset[str], wanted: tuple[tuple[str, ...], ...] | None) -> bool:
    """Does ``form`` (a form, or the set of needles it contains) contain a string of each
    set (or are there no sets)?"""
    if wanted is None:
        return True
    for needles in wanted:
        for needle in needles:
            if needle in form:
                break
        else:
            return False
    return True


def _trie(words: Sequence[str]) -> str:
    """A regular expression matching any of ``words`` (none empty), shaped as their trie:
    from each character only the branch the text takes is tried, and a longer word is tried
    before a shorter one it extends, so at a position it matches the longest word there."""
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def pattern(node: dict[str, dict]) -> str:
        branches = [re.escape(char) + pattern(child) for char, child in node.items() if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return pattern(root)


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
    #: The patterns for `plain` text: each compiled without IGNORECASE where that can't
    #: change what it matches there (forms are case-folded), which is faster; else the pattern.
    plain_patterns: tuple[re.Pattern[str], ...] = field(init=False, default=())
    #: For each pattern (and each plain one), the same without its leading ``\b``, or None:
    #: a necessary condition (dropping an assertion only allows more) that `re` checks about
    #: twice as fast, because a pattern that starts with literals skips ahead by them.
    quick: tuple[re.Pattern[str] | None, ...] = field(init=False, default=())
    plain_quick: tuple[re.Pattern[str] | None, ...] = field(init=False, default=())
    #: For each plain pattern, sets of strings of which any match contains one of each set
    #: (``_needles``), or None: looked for with ``in`` before any search.
    plain_needles: tuple[tuple[tuple[str, ...], ...] | None, ...] = field(init=False, default=())
    #: Each string of the plain patterns' first needle sets, with the patterns (their
    #: indexes) whose first set holds it: only a pattern one of whose strings a plain form
    #: contains can match it. None if a pattern has no needles.
    plain_by_needle: dict[str, tuple[int, ...]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        fast = tuple(_case_free(p) or p for p in self.patterns)
        object.__setattr__(self, "plain_patterns", fast)
        needles = tuple(_needles(p) for p in fast)
        object.__setattr__(self, "plain_needles", needles)
        if all(needles):
            by_needle: dict[str, list[int]] = {}
            for index, sets in enumerate(needles):
                for needle in sets[0]:  # type: ignore[index]
                    by_needle.setdefault(needle, []).append(index)
            indexes = {needle: tuple(found) for needle, found in by_needle.items()}
            object.__setattr__(self, "plain_by_needle", indexes)
        object.__setattr__(
            self, "quick", tuple(_without_leading_boundary(p) for p in self.patterns)
        )
        object.__setattr__(self, "plain_quick", tuple(_without_leading_boundary(p) for p in fast))

    def match(
        self,
        forms: Sequence[str],
        present: Sequence[frozenset[str]] | None = None,
        candidates: Sequence[int] | None = None,
    ) -> int | None:
        """The number (from 1) of the first pattern that matches any form, or None; None as
        well when an ``unless`` pattern matches. ``present``: for each (plain) form, the
        needles it contains (`RuleSet.present`), found once for all rules; without it each
        needle is looked for in the form. ``candidates``: the only patterns (indexes, in
        order) that can match, when the caller already knows them from ``present``."""
        # Plain loops: this runs for every rule on every adult-to-minor visible message.
        indexes: Iterable[int] = range(len(self.patterns)) if candidates is None else candidates
        by_needle = self.plain_by_needle
        if candidates is None and by_needle is not None and all(plain(f) for f in forms):
            candidates: set[int] = set()
            for number, form in enumerate(forms):
                if present is not None:
                    for needle in present[number]:
                        candidates.update(by_needle.get(needle, ()))
                else:
                    for needle in filter(form.__contains__, by_needle):
                        candidates.update(by_needle[needle])
            if not candidates:
                return None  # no form holds a string any pattern's matches all contain
            indexes = sorted(candidates)  # still the first pattern that matches, by number
        # Where a needle is looked for: the set of those a form holds, or the form itself
        # (``in`` answers the same question of either).
        per_form = [
            (
                f,
                self.plain_patterns,
                self.plain_quick,
                self.plain_needles,
                f if present is None else present[number],
            )
            if plain(f)
            else (f, self.patterns, self.quick, None, f)
            for number, f in enumerate(forms)
        ]
        for index in indexes:
            for form, patterns, quick, needles, holder in per_form:
                if needles is not None and not _has_needles(holder, needles[index]):
                    continue  # the pattern can't match this form
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
    #: Every needle of every rule in one regular expression, shaped as a trie (at each
    #: position, the longest needle that starts there), and for each needle the needles
    #: that are its prefixes: which needles a form holds, in one pass instead of one
    #: ``in`` per needle (`present`). None when no rule has needles.
    _finder: re.Pattern[str] | None = field(init=False, default=None)
    _prefixes: dict[str, tuple[str, ...]] = field(init=False, default_factory=dict)
    #: For each needle of a first needle set: the (rule number, pattern index) pairs whose
    #: first set holds it (see `ContentRule.plain_by_needle`).
    _owners: dict[str, tuple[tuple[int, int], ...]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        needles = sorted(
            {
                needle
                for rule in self.content
                for sets in rule.plain_needles
                if sets
                for one_of in sets
                for needle in one_of
            }
        )
        if needles:
            object.__setattr__(self, "_finder", re.compile(f"(?=({_trie(needles)}))"))
            prefixes = {n: tuple(m for m in needles if n.startswith(m)) for n in needles}
            object.__setattr__(self, "_prefixes", prefixes)
        owners: dict[str, list[tuple[int, int]]] = {}
        for number, rule in enumerate(self.content):
            for needle, indexes in (rule.plain_by_needle or {}).items():
                owners.setdefault(needle, []).extend((number, i) for i in indexes)
        object.__setattr__(self, "_owners", {n: tuple(o) for n, o in owners.items()})

    def present(self, form: str) -> frozenset[str]:
        """The needles (of any rule) that ``form`` contains. At each position the finder
        gives the longest needle starting there; every needle that starts there is one of
        its prefixes, so all are found."""
        finder = self._finder
        if finder is None:
            return frozenset()
        prefixes = self._prefixes
        found: set[str] = set()
        for longest in set(finder.findall(form)):
            found.update(prefixes[longest])
        return frozenset(found)

    def content_matches(self, text: str) -> list[tuple[ContentRule, int]]:
        """Each content rule the text fires, with the pattern number that fired it."""
        forms = self.normalizer.forms(text)
        found = []
        if self._finder is None or not all(plain(f) for f in forms):
            for rule in self.content:
                if (number := rule.match(forms)) is not None:
                    found.append((rule, number))
            return found
        # Which needles the text holds, once; from them, which patterns of which rules can
        # match at all (most text: few or none, and those rules aren't asked).
        present = [self.present(f) for f in forms]
        candidates: dict[int, set[int]] = {}
        for held in present:
            for needle in held:
                for rule_number, index in self._owners.get(needle, ()):
                    candidates.setdefault(rule_number, set()).add(index)
        for rule_number, rule in enumerate(self.content):
            if rule.plain_by_needle is None:  # a pattern without needles: asked every time
                number = rule.match(forms, present)
            elif rule_number in candidates:
                number = rule.match(forms, present, sorted(candidates[rule_number]))
            else:
                continue
            if number is not None:
                found.append((rule, number))
        return found

    def rule(self, rule_id: str) -> ContentRule | None:
        return next((r for r in self.content if r.id == rule_id), None)
