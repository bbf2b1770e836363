"""Grooming-risk signals (issue 14): the rules file, the engine's scoring, notices,
findings, decay, the provider interface, and that no content rule ever reads e2ee text."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import msgspec
import pytest

from protocol.policy import Signals, parse_policy
from server.policy.loader import PRESET_NAMES, load_policy
from server.safety.signals import (
    FEATURES,
    ContactEvent,
    ContactFacts,
    ConversationRisk,
    MessageEvent,
    Party,
    ProviderSignal,
    RuleSet,
    SignalEngine,
    SignalProvider,
    SignalsError,
    content_allowed,
    decode_risk,
    encode_risk,
    evaluate,
    load_rules,
    parse_rules,
    score_at,
)
from server.safety.signals.loader import RULES_DIR, rule_names

T0 = datetime(2025, 3, 4, 18, 0, tzinfo=UTC)
ADULT = Party("dan", "adult")
ADULT2 = Party("erin", "adult")
TEEN = Party("mia", "teen_13_15")
TEEN2 = Party("leo", "teen_13_15")
KID = Party("tom", "under_13")
OLDER = Party("ava", "teen_16_17")
SETTINGS = Signals()
DEFAULT = load_rules("default")

# A small rule set for the mechanics, so these tests don't move when the default weights do.
MINI = """
version = 1
description = "test rules"
behaviour_decay_hours = 24
[normalize]
leet = { "3" = "e" }
words = { u = "you" }
[content.secrecy]
title = "Secrecy"
weight = 4.0
decay_hours = 10
explanation = "asked for secrecy"
notice = "This person asked you to keep your chat a secret."
patterns = ['\\bour secret\\b']
[content.meet]
title = "Meeting"
weight = 3.0
cap = 4.5
decay_hours = 10
explanation = "asked to meet"
notice = "This person wants to meet you."
patterns = ['\\bmeet up\\b']
[behaviour.night]
weight = 1.0
start_hour = 22
end_hour = 5
explanation = "late"
notice = "It's late."
"""


def mini(**changes: float) -> tuple[RuleSet, Signals]:
    values = {"notice_at": 5.0, "finding_at": 8.0, "notice_min_hours_between": 24.0, **changes}
    settings = msgspec.structs.replace(Signals(), **values)
    return parse_rules(MINI, name="mini"), settings


_ids = iter(range(10**6))


def msg(
    text: str | None,
    *,
    sender: Party = ADULT,
    recipient: Party = TEEN,
    at: datetime = T0,
    mode: str = "visible",
    facts: ContactFacts | None = None,
    local: time | None = None,
) -> MessageEvent:
    return MessageEvent(
        id=f"m{next(_ids)}",
        sender=sender,
        recipient=recipient,
        mode=mode,  # type: ignore[arg-type]
        at=at,
        text=text,
        facts=facts or ContactFacts(since=at - timedelta(days=400)),
        recipient_local_time=local,
    )


def run(rules, settings, events, state=None, providers=()):
    state = state or ConversationRisk()
    results = []
    for event in events:
        result = evaluate(rules, settings, state, event, providers)
        state = result.state
        results.append(result)
    return results


# --- the rules file ---------------------------------------------------------------------------


def test_every_shipped_rules_file_and_every_presets_rules_load():
    assert "default" in rule_names()
    for name in rule_names():
        assert load_rules(name).content
    for preset in PRESET_NAMES:
        policy = load_policy(preset)
        assert load_rules(policy.signals.rules).name == policy.signals.rules


def test_default_rules_cover_every_stage_and_feature_with_notice_words():
    stages = {r.id for r in DEFAULT.content}
    assert stages >= {
        "personal_info",
        "secrecy",
        "platform_move",
        "photo_request",
        "gifts_money",
        "flattery",
        "meet_offline",
        "isolation",
    }
    for rule in DEFAULT.content:
        assert rule.notice.endswith("You can block or report them.") or "block or report" in (
            rule.notice
        )
        assert rule.explanation and rule.weight > 0
    for name in FEATURES:
        feature = getattr(DEFAULT.behaviour, name)
        assert feature is not None, name
        assert feature.notice and feature.explanation


def _rules_with(**replace: str) -> str:
    text = MINI
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_rules_with(**{"weight = 4.0": "wieght = 4.0"}), "unknown field `wieght`"),
        (
            _rules_with(**{"weight = 4.0": "weight = -1"}),
            "rule 'secrecy': Expected `float` > 0.0 - at `$.content.secrecy.weight`",
        ),
        (_rules_with(**{"[behaviour.night]": "[behaviour.nite]"}), "unknown field `nite`"),
        (_rules_with(**{"version = 1": "version = 2"}), "$.version"),
        (_rules_with(**{"[content.secrecy]": "[content.Secrecy-1]"}), "$.content"),
        (_rules_with(**{"patterns = ['\\bour secret\\b']": "patterns = []"}), "patterns"),
        ("version = 1\ndescription = 'x'\n[content", "not valid TOML"),
    ],
)
def test_invalid_rules_name_the_file_and_key(text, needle):
    with pytest.raises(SignalsError) as err:
        parse_rules(text, source="lab/rules.toml")
    assert "lab/rules.toml" in str(err.value)
    assert needle in str(err.value)


def test_a_bad_regex_names_the_rule_and_pattern_number():
    text = _rules_with(**{"'\\bmeet up\\b'": "'\\bmeet up\\b', '(unclosed'"})
    with pytest.raises(SignalsError, match=r"content rule 'meet', pattern 2 \('\(unclosed'\)"):
        parse_rules(text, source="r.toml")


def test_examples_must_fire_and_near_misses_must_not():
    broken = _rules_with(
        **{
            "patterns = ['\\bmeet up\\b']": "patterns = ['\\bmeet up\\b']\n"
            "examples = ['lets hang out']"
        }
    )
    with pytest.raises(SignalsError, match="'meet': its example 'lets hang out' does not fire"):
        parse_rules(broken, source="r.toml")
    broken = _rules_with(
        **{
            "patterns = ['\\bmeet up\\b']": "patterns = ['\\bmeet up\\b']\n"
            "near_misses = ['the team will meet up at 5']"
        }
    )
    with pytest.raises(
        SignalsError, match=r"near miss 'the team will meet up at 5' fires it \(pattern 1\)"
    ):
        parse_rules(broken, source="r.toml")


def test_cap_below_weight_and_missing_file_are_refused(tmp_path: Path):
    with pytest.raises(SignalsError, match=r"cap 1\.0 is below its weight 3\.0"):
        parse_rules(_rules_with(**{"cap = 4.5": "cap = 1.0"}), source="r.toml")
    with pytest.raises(SignalsError, match=r"no signal rules 'nope': use one of .*default"):
        load_rules("nope")
    path = tmp_path / "mine.toml"
    path.write_text(MINI)
    assert load_rules(str(path)).name == "mine"
    assert RULES_DIR.name == "signals"


def test_policy_signals_table_defaults_and_validation():
    policy = load_policy("default")
    assert policy.signals.rules == "default"
    assert policy.signals.notice_at < policy.signals.finding_at
    assert load_policy("open").signals.enabled is False
    text = (Path(__file__).resolve().parents[2] / "policies" / "default.toml").read_text()
    without = text.split("\n[signals]")[0]
    assert parse_policy(without).signals == Signals()
    with pytest.raises(msgspec.ValidationError, match="signals"):
        parse_policy(text.replace("notice_at = 5.5", "notice_at = 0"))
    with pytest.raises(msgspec.ValidationError, match="unknown field `notice_after`"):
        parse_policy(text.replace("notice_at = 5.5", "notice_after = 5"))


# --- each stage on a representative line, not on near misses ----------------------------------

FIRES = {
    "personal_info": [
        "how old are you anyway?",
        "wat school do u go to",
        "which part of town do you live in",
    ],
    "risk_check": [
        "r u alone right now",
        "do your parents look at your phone?",
        "is anybody home with you",
    ],
    "secrecy": [
        "keep this a secret ok",
        "don't tell anyone we talk",
        "this stays just between you and me",
        "delete our chat when you're done",
        "no one has to know",
    ],
    "platform_move": [
        "text me on whatsapp instead",
        "give me your snap",
        "let's move to another app",
        "download telegram and find me there",
    ],
    "photo_request": [
        "can you send me a pic?",
        "I want to see a photo of you",
        "show me what you look like",
    ],
    "gifts_money": [
        "I'll buy you a new phone",
        "want me to send you money?",
        "i could get you some robux",
    ],
    "flattery": [
        "you are so beautiful",
        "you're so mature for your age",
        "do you have a boyfriend?",
    ],
    "meet_offline": [
        "we should meet in person",
        "can you sneak out tonight",
        "come over to my place on saturday",
    ],
    "isolation": [
        "your parents don't understand you",
        "only I really understand you",
        "you don't need your friends",
    ],
}
NEAR_MISSES = {
    "personal_info": ["how old is your grandma now", "school starts at 8"],
    "risk_check": ["I was home alone all weekend", "your mom says hi"],
    "secrecy": [
        "don't tell your sister about the surprise party",
        "the secret to a good serve is the toss",
    ],
    "platform_move": ["text me when practice ends", "the schedule is on the club website"],
    "photo_request": [
        "send a photo of the permission slip",
        "I'll send pictures of the trip tonight",
        "great photos from the match",
    ],
    "gifts_money": ["bring 5 dollars for the bus", "I bought a new car"],
    "flattery": ["the sunset is so pretty", "what a cute puppy"],
    "meet_offline": ["see you at practice", "we meet at the pool at 6 for training"],
    "isolation": ["your friends are here", "I understand this is hard"],
}


@pytest.mark.parametrize(
    ("stage", "line"), [(s, line) for s, lines in FIRES.items() for line in lines]
)
def test_each_stage_fires_on_a_representative_line(stage, line):
    assert stage in {rule.id for rule, _ in DEFAULT.content_matches(line)}


@pytest.mark.parametrize(
    ("stage", "line"), [(s, line) for s, lines in NEAR_MISSES.items() for line in lines]
)
def test_each_stage_stays_quiet_on_near_misses(stage, line):
    assert stage not in {rule.id for rule, _ in DEFAULT.content_matches(line)}


def test_normalising_reads_leetspeak_text_speak_runs_and_curly_apostrophes():
    n = DEFAULT.normalizer
    assert n.forms("K33P it S3CRET") == ("k33p it s3cret", "keep it secret")
    assert n.full(n.basic("r u sooooo bored")) == "are you so bored"
    assert n.basic("Don’t tell") == "dont tell"
    # Digits that don't touch a letter stay digits ("are you 14").
    assert n.full(n.basic("are you 14?")) == "are you 14?"
    assert {r.id for r, _ in DEFAULT.content_matches("d0nt t3ll ur m0m")} == {"secrecy"}


# --- what content rules may read ----------------------------------------------------------------


def test_content_is_read_only_from_the_adult_in_a_visible_adult_minor_conversation():
    assert content_allowed(msg("hi"))
    assert not content_allowed(msg("hi", sender=TEEN, recipient=ADULT))  # the minor's words
    assert not content_allowed(msg("hi", sender=ADULT, recipient=ADULT2))
    assert not content_allowed(msg("hi", sender=TEEN, recipient=TEEN2))
    assert not content_allowed(msg(None, mode="e2ee"))
    assert not content_allowed(ContactEvent("c1", "blocked", TEEN, ADULT, "visible", T0))
    (r,) = run(DEFAULT, SETTINGS, [msg("keep this our secret", sender=TEEN, recipient=ADULT)])
    assert r.content_read is False
    assert not [f for f in r.firings if f.kind == "content"]


def test_an_e2ee_message_cannot_carry_text():
    with pytest.raises(ValueError, match="e2ee MessageEvent carries no text"):
        msg("our secret", mode="e2ee")
    with pytest.raises(ValueError, match="aware datetime"):
        msg("hi", at=datetime(2025, 1, 1))


class SpyProvider:
    """A content-reading provider that records every call."""

    name = "spy"
    reads_content = True

    def __init__(self) -> None:
        self.calls: list[tuple[object, str | None]] = []

    def observe(self, event, text):
        self.calls.append((event, text))
        return ()


class MetaProvider:
    """A provider that reads no content: it counts events."""

    name = "meta"
    reads_content = False

    def __init__(self) -> None:
        self.texts: list[str | None] = []

    def observe(self, event, text):
        self.texts.append(text)
        assert getattr(event, "text", None) is None
        return ()


@pytest.mark.parametrize("pair", [(ADULT, ADULT2), (ADULT, TEEN), (TEEN, ADULT)])
def test_no_content_rule_or_content_provider_runs_on_an_e2ee_conversation(monkeypatch, pair):
    """The proof for issue 14: rules and providers spied on, an e2ee conversation in full."""
    matched: list[str] = []
    real = RuleSet.content_matches

    def spy(self, text):
        matched.append(text)
        return real(self, text)

    monkeypatch.setattr(RuleSet, "content_matches", spy)
    content_spy, meta = SpyProvider(), MetaProvider()
    sender, recipient = pair
    new = ContactFacts(since=T0, initiator=sender.handle, adult_recent_minor_contacts=9)
    events = [
        msg(
            None,
            sender=sender if i % 2 == 0 else recipient,
            recipient=recipient if i % 2 == 0 else sender,
            mode="e2ee",
            at=T0 + timedelta(minutes=i),
            facts=new,
            local=time(23, i % 60),
        )
        for i in range(30)
    ]
    results = run(DEFAULT, SETTINGS, events, providers=[content_spy, meta])
    assert matched == []
    assert content_spy.calls == []
    assert meta.texts == [None] * 30
    assert all(not r.content_read for r in results)
    kinds = {f.kind for r in results for f in r.state.firings}
    assert kinds == {"behaviour"}  # metadata features do run
    fired = {f.rule for r in results for f in r.state.firings}
    assert {"new_contact", "night", "velocity"} <= fired

    # The spies do see a visible adult → minor message: they are wired where content runs.
    run(DEFAULT, SETTINGS, [msg("our secret")], providers=[content_spy])
    assert matched == ["our secret"]
    assert [t for _, t in content_spy.calls] == ["our secret"]
    assert content_spy.calls[0][0].text is None  # the event itself never carries text


# --- scoring, decay, caps -----------------------------------------------------------------------


def test_a_firing_halves_every_decay_hours_and_the_score_decays_between_events():
    rules, settings = mini()
    (r,) = run(rules, settings, [msg("it's our secret")])
    (f,) = r.firings
    assert (f.rule, f.kind, f.weight, f.decay_hours, f.detail) == (
        "secrecy",
        "content",
        4.0,
        10,
        "pattern 1",
    )
    assert r.score == pytest.approx(4.0)
    assert score_at(r.state, T0 + timedelta(hours=10)) == pytest.approx(2.0)
    assert score_at(r.state, T0 + timedelta(hours=20)) == pytest.approx(1.0)
    # Events are never scored backwards in time.
    (r2,) = run(rules, settings, [msg("hello", at=T0 - timedelta(hours=5))], state=r.state)
    assert r2.score == pytest.approx(4.0)
    # A firing that has decayed to nothing leaves the state.
    (r3,) = run(rules, settings, [msg("hello", at=T0 + timedelta(days=10))], state=r.state)
    assert r3.state.firings == [] and r3.score == 0


def test_repeats_refresh_up_to_the_rules_cap_instead_of_stacking():
    rules, settings = mini(notice_at=100, finding_at=100)
    results = run(
        rules, settings, [msg("our secret", at=T0 + timedelta(minutes=i)) for i in range(4)]
    )
    assert results[-1].score == pytest.approx(4.0, abs=0.01)  # cap = weight
    results = run(
        rules, settings, [msg("meet up?", at=T0 + timedelta(minutes=i)) for i in range(4)]
    )
    assert results[-1].score == pytest.approx(4.5, abs=0.01)  # its own cap
    assert len(results[-1].state.firings) == 4


def test_persistent_features_are_refreshed_not_recorded_again():
    facts = ContactFacts(since=T0, initiator="dan", adult_recent_minor_contacts=20)
    results = run(
        DEFAULT, SETTINGS, [msg("hi", at=T0 + timedelta(hours=i), facts=facts) for i in range(5)]
    )
    rules_fired = [f.rule for f in results[-1].state.firings]
    assert sorted(rules_fired) == sorted(
        ["age_gap", "new_contact", "adult_initiated", "many_minors"]
    )
    assert results[1].firings == ()  # nothing new on the second message
    assert all(f.until == T0 + timedelta(hours=4) for f in results[-1].state.firings)


def test_behaviour_features_read_only_facts_and_times():
    b = DEFAULT.behaviour
    old = ContactFacts(since=T0 - timedelta(days=400))

    def fired(events):
        return {f.rule: f for r in run(DEFAULT, SETTINGS, events) for f in r.state.firings}

    assert (
        fired([msg("hi", recipient=KID, facts=old)])["age_gap"].weight
        == b.age_gap.weights["under_13"]
    )
    assert (
        fired([msg("hi", recipient=OLDER, facts=old)])["age_gap"].weight
        == b.age_gap.weights["teen_16_17"]
    )
    assert "new_contact" not in fired([msg("hi", facts=old)])
    assert "new_contact" in fired([msg("hi", facts=ContactFacts(since=T0 - timedelta(days=2)))])
    assert "new_contact" in fired([msg("hi", facts=ContactFacts(since=None))])
    assert "adult_initiated" in fired([msg("hi", facts=ContactFacts(since=T0, initiator="dan"))])
    assert "adult_initiated" not in fired(
        [msg("hi", facts=ContactFacts(since=T0, initiator="mia"))]
    )
    many = ContactFacts(since=T0, adult_recent_minor_contacts=b.many_minors.at_least)
    assert "many_minors" in fired([msg("hi", facts=many)])
    pushed = ContactFacts(since=T0, adult_pushback_from_minors=b.pushback_history.at_least)
    assert "pushback_history" in fired([msg("hi", facts=pushed)])
    # Night wraps midnight, in the recipient's local time; only the adult's messages count.
    assert "night" in fired([msg("hi", facts=old, local=time(23, 30))])
    assert "night" in fired([msg("hi", facts=old, local=time(2, 0))])
    assert "night" not in fired([msg("hi", facts=old, local=time(21, 59))])
    assert "night" not in fired(
        [msg("hi", sender=TEEN, recipient=ADULT, facts=old, local=time(23))]
    )
    burst = [msg("hi", facts=old, at=T0 + timedelta(seconds=i)) for i in range(b.velocity.messages)]
    assert "velocity" in fired(burst)
    slow = [msg("hi", facts=old, at=T0 + timedelta(hours=i)) for i in range(b.velocity.messages)]
    assert "velocity" not in fired(slow)
    blocked = ContactEvent("c1", "blocked", TEEN, ADULT, "visible", T0, old)
    assert "pushback_here" in fired([blocked])
    assert "pushback_here" not in fired(
        [ContactEvent("c2", "blocked", ADULT, TEEN, "visible", T0, old)]
    )


# --- notices, findings, explanations ----------------------------------------------------------


def test_a_notice_names_what_happened_and_is_rate_limited():
    rules, settings = mini(notice_at=3.5, finding_at=100)
    new = ContactFacts(since=T0)
    r1, r2, r3, r4 = run(
        rules,
        settings,
        [
            msg("it's our secret", facts=new),
            msg("meet up later?", facts=new, at=T0 + timedelta(hours=1)),
            msg("meet up?", facts=new, at=T0 + timedelta(hours=23)),
            msg("meet up??", facts=new, at=T0 + timedelta(hours=25)),
        ],
    )
    assert r1.notice is not None
    assert (r1.notice.code, r1.notice.rule, r1.notice.to, r1.notice.about) == (
        "risk_secrecy",
        "secrecy",
        "mia",
        "dan",
    )
    assert r1.notice.text == "This person asked you to keep your chat a secret."
    assert r2.above_notice and r2.notice is None  # within 24 hours of the last notice
    assert r3.notice is None
    assert r4.notice is not None and r4.notice.rule == "meet"  # a stage not told about yet
    assert r4.state.noticed == ["secrecy", "meet"]


def test_no_notice_without_something_new():
    rules, settings = mini(notice_at=3.5, finding_at=100, notice_min_hours_between=0)
    r1, r2 = run(rules, settings, [msg("our secret"), msg("ok", sender=TEEN, recipient=ADULT)])
    assert r1.notice is not None
    assert r2.above_notice and r2.notice is None


def test_a_finding_comes_once_per_crossing_with_every_firing_explained():
    rules, settings = mini(notice_at=100, finding_at=6.9)
    events = [
        msg("our secret", at=T0),
        msg("meet up?", at=T0 + timedelta(minutes=1)),
        msg("our secret", at=T0 + timedelta(minutes=2)),
    ]
    r1, r2, r3 = run(rules, settings, events)
    assert r1.finding is None
    assert r2.finding is not None and r3.finding is None  # one finding per crossing
    f = r2.finding
    assert (f.subject, f.minor) == ("dan", "mia")
    assert f.score == pytest.approx(7.0, abs=0.01)  # 4 + 3, a minute's decay
    assert f.message_ids == (events[0].id, events[1].id)
    assert "secrecy (content) adds 4.00 of weight 4: asked for secrecy" in f.explanation
    assert f"[{events[1].id} at 2025-03-04 18:01Z, pattern 1]" in f.explanation
    assert {c.firing.rule for c in f.contributions} == {"secrecy", "meet"}
    # After decaying below the threshold, a new crossing files a new finding.
    later = [
        msg("our secret", at=T0 + timedelta(hours=40)),
        msg("meet up", at=T0 + timedelta(hours=40)),
    ]
    r4, r5 = run(rules, settings, later, state=r3.state)
    assert r4.finding is None and r5.finding is not None
    assert r5.state.findings == 2


def test_only_adult_minor_conversations_get_notices_and_findings():
    rules, settings = mini(notice_at=0.5, finding_at=0.5)
    night = [
        msg(None, sender=ADULT, recipient=ADULT2, mode="e2ee", local=time(23)),
        msg("x", sender=TEEN, recipient=TEEN2, local=time(23)),
    ]
    for r in run(rules, settings, night):
        assert r.score > 0
        assert r.notice is None and r.finding is None and not r.above_notice


def test_familiar_contacts_count_content_less_for_notices_only():
    text = MINI.replace(
        "[content.secrecy]", "[familiar]\ndays = 90\nnotice_factor = 0.5\n[content.secrecy]"
    )
    rules = parse_rules(text)
    settings = msgspec.structs.replace(Signals(), notice_at=3.5, finding_at=3.5)
    (known,) = run(
        rules, settings, [msg("our secret", facts=ContactFacts(since=T0 - timedelta(days=400)))]
    )
    (new,) = run(
        rules, settings, [msg("our secret", facts=ContactFacts(since=T0 - timedelta(days=3)))]
    )
    assert known.score == new.score == pytest.approx(4.0)
    assert known.notice_score == pytest.approx(2.0) and known.notice is None
    assert known.finding is not None  # moderators still see a trusted adult's pattern
    assert new.notice is not None


def test_disabled_signals_do_nothing():
    rules, settings = mini(enabled=False)
    (r,) = run(rules, settings, [msg("our secret")])
    assert r.firings == () and r.notice is None and r.state == ConversationRisk()


def test_state_round_trips_holds_no_text_and_the_input_is_not_changed():
    rules, settings = mini(notice_at=1)
    state = ConversationRisk()
    r = evaluate(rules, settings, state, msg("zebra-words our secret", local=time(23)))
    assert state == ConversationRisk()
    data = encode_risk(r.state)
    assert b"zebra" not in data
    again = decode_risk(data)
    assert again == r.state
    assert decode_risk(None) == ConversationRisk()
    assert score_at(again, T0) == pytest.approx(r.score)


def test_the_engine_object_binds_rules_settings_and_providers():
    rules, settings = mini()
    engine = SignalEngine(rules, settings)
    assert engine.evaluate(ConversationRisk(), msg("our secret")).score == pytest.approx(4.0)


# --- providers ----------------------------------------------------------------------------------


class KeywordClassifier:
    """The example provider: a stand-in for a trained classifier that scores a message. A
    real one would load a model at start and return a calibrated score; the interface is the
    same."""

    name = "keywords"
    reads_content = True

    def __init__(self, words: dict[str, float]) -> None:
        self.words = words

    def observe(self, event, text):
        score = sum(w for word, w in self.words.items() if text and word in text.lower())
        if score:
            yield ProviderSignal(
                signal="grooming_prob",
                weight=min(score, 10),
                explanation=f"the keyword classifier scored the message {score:g}",
                notice="Something this person wrote looks like how people try to trick "
                "young people. You can block or report them.",
                decay_hours=48,
            )


def test_a_provider_plugs_in_beside_the_rules():
    provider = KeywordClassifier({"hoverboard": 6.0})
    assert isinstance(provider, SignalProvider)
    rules, settings = mini()
    engine = SignalEngine(rules, settings, [provider])
    r = engine.evaluate(ConversationRisk(), msg("want a HOVERBOARD? it's our secret"))
    by_rule = {f.rule: f for f in r.firings}
    assert set(by_rule) == {"secrecy", "provider:keywords/grooming_prob"}
    p = by_rule["provider:keywords/grooming_prob"]
    assert (p.kind, p.weight, p.decay_hours) == ("provider", 6.0, 48)
    assert r.score == pytest.approx(10.0)
    assert r.notice is not None and r.notice.code == "risk_provider_keywords"
    assert r.notice.text.startswith("Something this person wrote")
    assert r.finding is not None
    assert "provider:keywords/grooming_prob (provider) adds 6.00" in r.finding.explanation
    # Not called on the minor's words.
    r = engine.evaluate(ConversationRisk(), msg("hoverboard", sender=TEEN, recipient=ADULT))
    assert r.firings == ()


def test_a_misbehaving_provider_is_refused_by_name():
    class Bad:
        name = "bad"
        reads_content = False

        def observe(self, event, text):
            return [ProviderSignal("x", weight=0, explanation="?")]

    with pytest.raises(ValueError, match="provider 'bad': signal 'x' out of range"):
        run(*mini(), [msg("hi")], providers=[Bad()])


def test_dataclass_events_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg("hi").text = "changed"  # type: ignore[misc]


def test_signals_md_lists_every_rule_and_feature_with_its_weight():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "SIGNALS.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| `")}
    for rule in DEFAULT.content:
        row = rows[f"`{rule.id}`"]
        assert f"| {rule.weight:g} |" in row, rule.id
    for name in FEATURES:
        feature = getattr(DEFAULT.behaviour, name)
        row = rows[f"`{name}`"]
        weights = feature.weights.values() if name == "age_gap" else [feature.weight]
        for w in weights:
            assert f"{w:g}" in row, name
