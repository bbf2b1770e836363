"""Grooming-risk signals (issue 14, docs/SIGNALS.md): rules as data over message and contact
events, a per-conversation score that explains itself, notices for minors and findings for
moderators. Sans-I/O: the relay passes events (with their time) and the stored state in,
and stores the state that comes back.

    rules = load_rules(policy.signals.rules)
    engine = SignalEngine(rules, policy.signals)
    result = engine.evaluate(decode_risk(stored), MessageEvent(...))
    store(encode_risk(result.state)); result.notice; result.finding
"""

from server.safety.signals.engine import (
    ProviderSignal,
    SignalEngine,
    SignalProvider,
    content_allowed,
    contributions,
    evaluate,
    explain,
    score_at,
)
from server.safety.signals.loader import RULES_DIR, SignalsError, load_rules, parse_rules
from server.safety.signals.model import (
    ContactEvent,
    ContactFacts,
    Contribution,
    ConversationRisk,
    Evaluation,
    Event,
    FindingDraft,
    Firing,
    MessageEvent,
    Notice,
    Party,
    decode_risk,
    encode_risk,
)
from server.safety.signals.rules import FEATURES, ContentRule, RuleSet

__all__ = [
    "FEATURES",
    "RULES_DIR",
    "ContactEvent",
    "ContactFacts",
    "ContentRule",
    "Contribution",
    "ConversationRisk",
    "Evaluation",
    "Event",
    "FindingDraft",
    "Firing",
    "MessageEvent",
    "Notice",
    "Party",
    "ProviderSignal",
    "RuleSet",
    "SignalEngine",
    "SignalProvider",
    "SignalsError",
    "content_allowed",
    "contributions",
    "decode_risk",
    "encode_risk",
    "evaluate",
    "explain",
    "load_rules",
    "parse_rules",
    "score_at",
]
