"""Find, read and check a rules file (fail fast, naming the file and the rule)."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from server.policy.loader import PRESETS_DIR
from server.safety.signals.rules import (
    ContentRule,
    ContentSpec,
    Normalizer,
    RuleSet,
    RulesFile,
)

#: The rules files shipped in the repository: ``policies/signals/<name>.toml``.
RULES_DIR = PRESETS_DIR / "signals"


class SignalsError(Exception):
    """A rules file that can't be used; the message names the file and the rule."""


def rules_path(name_or_path: str) -> Path:
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return Path(name_or_path)
    return RULES_DIR / f"{name_or_path}.toml"


def rule_names() -> list[str]:
    return sorted(p.stem for p in RULES_DIR.glob("*.toml"))


def load_rules(name_or_path: str) -> RuleSet:
    """Load, validate and compile a rules file (the policy's ``signals.rules``)."""
    path = rules_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(rule_names()) or "none"
        raise SignalsError(
            f"no signal rules {name_or_path!r}: use one of {names} or a PATH.toml"
        ) from None
    except OSError as exc:
        raise SignalsError(f"cannot read signal rules {path}: {exc}") from None
    return parse_rules(text, name=path.stem, source=str(path))


def parse_rules(text: str, *, name: str = "rules", source: str = "<rules>") -> RuleSet:
    try:
        raw = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        raise SignalsError(f"signal rules {source} are not valid TOML: {exc}") from None
    # Each content rule on its own first, so an error names the rule (msgspec writes a dict
    # key as `[...]`): "Expected `float` > 0.0 - at `$.content.secrecy.weight`".
    content = raw.get("content") if isinstance(raw, dict) else None
    if isinstance(content, dict):
        for rule_id, entry in content.items():
            try:
                msgspec.convert(entry, ContentSpec)
            except msgspec.ValidationError as exc:
                where = str(exc).replace("`$", f"`$.content.{rule_id}")
                raise SignalsError(
                    f"invalid signal rules {source}: content rule {rule_id!r}: {where}"
                ) from None
    try:
        spec = msgspec.convert(raw, RulesFile)
    except msgspec.ValidationError as exc:
        raise SignalsError(f"invalid signal rules {source}: {exc}") from None
    normalizer = Normalizer.of(spec.normalize)
    content = tuple(
        _compile(source, rule_id, rule, normalizer) for rule_id, rule in spec.content.items()
    )
    return RuleSet(
        name=name,
        description=spec.description,
        normalizer=normalizer,
        content=content,
        behaviour=spec.behaviour,
        behaviour_decay_hours=spec.behaviour_decay_hours,
        familiar=spec.familiar,
    )


def _regex(source: str, rule_id: str, what: str, number: int, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise SignalsError(
            f"signal rules {source}: content rule {rule_id!r}, {what} {number} "
            f"({pattern!r}) is not a valid regular expression: {exc}"
        ) from None


def _compile(source: str, rule_id: str, spec: ContentSpec, normalizer: Normalizer) -> ContentRule:
    if spec.cap is not None and spec.cap < spec.weight:
        raise SignalsError(
            f"signal rules {source}: content rule {rule_id!r}: cap {spec.cap} is below its "
            f"weight {spec.weight}"
        )
    rule = ContentRule(
        id=rule_id,
        title=spec.title,
        weight=spec.weight,
        decay_hours=spec.decay_hours,
        cap=spec.cap if spec.cap is not None else spec.weight,
        explanation=spec.explanation,
        notice=spec.notice,
        patterns=tuple(
            _regex(source, rule_id, "pattern", n, p) for n, p in enumerate(spec.patterns, 1)
        ),
        unless=tuple(
            _regex(source, rule_id, "unless pattern", n, p) for n, p in enumerate(spec.unless, 1)
        ),
    )
    for example in spec.examples:
        if rule.match(normalizer.forms(example)) is None:
            raise SignalsError(
                f"signal rules {source}: content rule {rule_id!r}: its example {example!r} "
                "does not fire it"
            )
    for near_miss in spec.near_misses:
        number = rule.match(normalizer.forms(near_miss))
        if number is not None:
            raise SignalsError(
                f"signal rules {source}: content rule {rule_id!r}: its near miss "
                f"{near_miss!r} fires it (pattern {number})"
            )
    return rule
