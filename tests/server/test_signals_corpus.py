"""The labelled signals corpus (tests/data/signals_corpus/) and the evaluation over it: the
corpus is well formed, non-explicit, large enough, and the default rules meet issue 14's
targets on it (bench/signals_eval.py prints the full table)."""

from __future__ import annotations

import functools
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.policy.loader import load_policy
from server.safety.signals.evaluation import (
    NO_NOTICE,
    CorpusError,
    EngineRunner,
    confusion,
    events,
    load_corpus,
    median,
    split_of,
)
from server.safety.signals.loader import load_rules
from server.safety.signals.model import MessageEvent

CORPUS = Path(__file__).resolve().parents[1] / "data" / "signals_corpus"
# Words that have no place in this corpus: it shows grooming without sexual content.
EXPLICIT = re.compile(
    r"\b(sex\w*|nude\w*|naked|porn\w*|explicit|underwear|lingerie|bra|kiss\w*|undress\w*)\b", re.I
)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(CORPUS)


@pytest.fixture(scope="module")
def traces(corpus):
    settings = load_policy("default").signals
    runner = EngineRunner(load_rules(settings.rules), settings)
    return {c.id: runner.run(c) for c in corpus}


def test_the_corpus_is_big_labelled_varied_and_split(corpus):
    assert len(corpus) >= 60
    labels = Counter(c.spec.label for c in corpus)
    assert labels["harmful"] >= 30 and labels["benign"] >= 30
    categories = Counter(c.spec.category for c in corpus)
    for cat in ("family", "coach", "teacher", "peer", "rude_stranger", "adult_e2ee"):
        assert categories[cat] >= 3, cat
    held = sum(c.split == "heldout" for c in corpus)
    assert 0.15 <= held / len(corpus) <= 0.3
    assert split_of("x") == split_of("x")
    for c in corpus:
        if c.spec.label == "harmful":
            assert {c.spec.a.band, c.spec.b.band} & {"adult"}, c.id


def test_the_corpus_is_not_explicit(corpus):
    for c in corpus:
        for _, _, text in c.spec.messages:
            assert not EXPLICIT.search(text), (c.id, text)


def test_events_follow_the_corpus_and_e2ee_carries_no_text(corpus):
    e2ee = [c for c in corpus if c.spec.mode == "e2ee"]
    assert e2ee
    for c in e2ee:
        assert all(getattr(e, "text", None) is None for e in events(c))
    visible = next(c for c in corpus if c.spec.mode == "visible")
    evs = list(events(visible))
    assert [e.at for e in evs] == sorted(e.at for e in evs)
    assert isinstance(evs[0], MessageEvent) and evs[0].text == visible.spec.messages[0][2]
    assert all(getattr(e, "text", None) is None for e in events(visible, content=False))


def test_a_broken_corpus_file_is_named(tmp_path):
    (tmp_path / "bad.toml").write_text(
        '[[conversation]]\nid = "x"\nlabel = "harmful"\ncategory = "grooming"\n'
        'start = 2025-01-01\ninitiator = "a"\na = { handle = "a", band = "adult" }\n'
        'b = { handle = "b", band = "teen_13_15" }\n'
        'messages = [["a", "d1 10:00", "hi"], ["b", "d0 10:00", "hi"]]\n'
    )
    with pytest.raises(CorpusError, match=r"bad\.toml: conversation 'x': b d0 10:00 goes back"):
        load_corpus(tmp_path)


def test_the_default_rules_meet_the_targets_on_the_corpus(corpus, traces):
    finding = confusion(
        (c.spec.label == "harmful", traces[c.id].first_finding is not None) for c in corpus
    )
    assert finding.precision >= 0.8 and finding.recall >= 0.8, finding
    for c in corpus:
        if c.spec.label == "benign" and c.spec.category in NO_NOTICE:
            assert traces[c.id].first_notice is None, c.id
    notice = confusion(
        (c.spec.label == "harmful", traces[c.id].first_notice is not None) for c in corpus
    )
    assert notice.recall >= 0.8
    assert median(traces[c.id].first_notice for c in corpus if c.spec.label == "harmful")


def test_metrics():
    s = confusion([(True, True), (True, False), (False, True), (False, False), (True, True)])
    assert (s.tp, s.fn, s.fp, s.tn) == (2, 1, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    assert confusion([]).f1 == 0
    assert median([None, 3, 1, None]) == 2 and median([None]) is None


def test_the_plain_patterns_match_exactly_what_the_rules_patterns_match(corpus):
    """The faster case-sensitive copies of the patterns (for `plain` text: ASCII, or
    without an ASCII look-alike) must find what the IGNORECASE originals find, on every
    corpus line and on some near misses."""
    from server.safety.signals.rules import plain

    rules = load_rules(load_policy("default").signals.rules)
    texts = [t for c in corpus for _who, _when, t in c.spec.messages]
    texts += ["", "ok", "S3CR3T!!!", "Don't TELL your MUM", "meet me after SCHOOL", "ᴋeep it"]
    texts += ["¿dónde vives? 🙂 how old are you", "what school do you go to, café 😂"]
    for text in texts:
        for form in rules.normalizer.forms(text):
            for rule in rules.content:
                for slow, fast in zip(rule.patterns, rule.plain_patterns, strict=True):
                    if plain(form):
                        assert bool(slow.search(form)) == bool(fast.search(form)), (rule.id, form)


def _full_as_written(normalizer, basic: str) -> str:
    """The normaliser's full form as docs/SIGNALS.md describes it, step by step."""
    text = basic
    chars = "".join(re.escape(c) for c in normalizer.leet)
    leet = re.compile(rf"(?<=[^\W\d_])[{chars}]|[{chars}](?=[^\W\d_])")
    for _ in range(2):
        text = leet.sub(lambda m: normalizer.leet[m.group()], text)
    text = re.sub(r"([^\W\d_])\1{2,}", r"\1\1", text)
    return re.sub(r"[^\W_]+", lambda m: normalizer.words.get(m.group(), m.group()), text)


@functools.cache
def _default_rules():
    return load_rules(load_policy("default").signals.rules)


def _default_normalizer():
    return _default_rules().normalizer


_SPEAK = "u ur r n im pls plz bc 2 4 0 1 3 5 @ $ h00k s3cret soooo gr8 you are x_u u_x é ü 😂"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*_SPEAK.split(" "), " ", " ", ".", "'", "-"]), max_size=16))
def test_the_full_form_is_what_the_steps_as_written_give(pieces: list[str]) -> None:
    normalizer = _default_normalizer()
    basic = normalizer.basic("".join(pieces))
    assert normalizer.full(basic) == _full_as_written(normalizer, basic)


def test_the_full_form_of_every_corpus_line_is_what_the_steps_give(corpus):
    normalizer = load_rules(load_policy("default").signals.rules).normalizer
    for c in corpus:
        for _who, _when, text in c.spec.messages:
            basic = normalizer.basic(text)
            assert normalizer.full(basic) == _full_as_written(normalizer, basic), text


def _all_needles(rules) -> set[str]:
    return {n for r in rules.content for sets in r.plain_needles if sets for s in sets for n in s}


def test_present_finds_every_needle_a_corpus_line_holds(corpus):
    """The trie-shaped finder gives, for each form, exactly the needles ``in`` would find."""
    rules = load_rules(load_policy("default").signals.rules)
    needles = _all_needles(rules)
    texts = [t for c in corpus for _who, _when, t in c.spec.messages]
    for text in texts:
        for form in rules.normalizer.forms(text):
            assert rules.present(form) == {n for n in needles if n in form}, form


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*_SPEAK.split(" "), " ", "me", "you", "your", "the", "secret"]),
        max_size=20,
    )
)
def test_present_is_what_looking_for_each_needle_gives(pieces: list[str]) -> None:
    rules = _default_rules()
    form = rules.normalizer.basic(" ".join(pieces))
    assert rules.present(form) == {n for n in _all_needles(rules) if n in form}


def test_the_trie_prefers_the_longest_word_at_a_position():
    from server.safety.signals.rules import _trie

    finder = re.compile(f"(?=({_trie(['ab', 'abcd', 'abx', 'b'])}))")
    assert finder.findall("abcd abx abc b") == ["abcd", "b", "abx", "b", "ab", "b", "b"]


def test_the_ascii_look_alikes_are_what_re_says_they_are():
    """`plain` relies on knowing every non-ASCII character IGNORECASE matches to an ASCII
    letter: worked out again here from `re` itself, over all of Unicode."""
    from server.safety.signals.rules import _ASCII_LOOKALIKES

    letter = re.compile("[a-z]", re.IGNORECASE)
    found = {c for c in map(chr, range(0x80, sys.maxunicode + 1)) if letter.fullmatch(c)}
    assert found == _ASCII_LOOKALIKES


def test_needles_are_what_every_match_contains():
    from server.safety.signals.rules import _needles

    def needles(source: str) -> tuple[tuple[str, ...], ...] | None:
        return _needles(re.compile(source))

    # Which sets come out depends on how `re` parses (it factors out common prefixes); what
    # must hold is that each is required, and that the obvious ones are found.
    assert ("how old ",) in needles(r"\bhow old (are you|you are)\b")
    assert (" me",) in needles(r"\b(send|show) me")
    assert needles(r"(x|)yz") == (("yz",),)  # a branch that can be empty requires nothing
    assert ("go",) in needles(r"(?:go)+ away")
    assert needles(r"(?:go)* away") == ((" away",),)
    assert needles(r"[abc]\d+") is None
    assert needles(r"(?i:secret) chat") == ((" chat",),)  # a scoped flag: not read
    assert _needles(re.compile("secret", re.IGNORECASE)) is None
    assert needles("(?i)secret") is None


_PIECES = "how old are you me send show pic photo a bc d e x yz y w ab cd ef g meet see park"


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            r"\bhow old (are you|you are)\b",
            r"(a|bc)+d?e",
            r"x(?:yz|y)*w",
            r"(ab|cd)(ef|g)",
            r"\b(meet|see) (me|you)\b.{0,5}\bpark\b",
            r"(x|)yz",
            r"a[bc]d",
            r"(send|show) me( \w+){0,3} (pic|photo)",
        ]
    ),
    # Pieces of those patterns, so that many texts do match.
    st.lists(
        st.sampled_from([*_PIECES.split(" "), " ", " ", "."]),
        max_size=14,
    ).map("".join),
)
def test_a_text_without_a_needle_never_matches(source: str, text: str) -> None:
    from server.safety.signals.rules import _has_needles, _needles

    pattern = re.compile(source)
    if pattern.search(text):
        assert _has_needles(text, _needles(pattern)), (source, text)


def test_a_pattern_that_could_match_differently_keeps_ignorecase():
    from server.safety.signals.rules import _case_free

    assert _case_free(re.compile(r"\bsecret\b", re.I)) is not None
    for source in (r"Secret", r"\x53ecret", r"(s)\1", "ſecret", r"\N{LATIN SMALL LETTER S}"):
        assert _case_free(re.compile(source, re.I)) is None, source


def test_content_matches_finds_what_the_plain_rules_find(corpus):
    """content_matches' shortcuts (case-sensitive ASCII patterns, the check without the
    leading \\b first, unless-patterns last) give exactly what the rules as written give."""
    rules = load_rules(load_policy("default").signals.rules)

    def plainly(text: str) -> list[tuple[str, int]]:
        forms = rules.normalizer.forms(text)
        found = []
        for rule in rules.content:
            if any(u.search(f) for u in rule.unless for f in forms):
                continue
            for number, pattern in enumerate(rule.patterns, start=1):
                if any(pattern.search(f) for f in forms):
                    found.append((rule.id, number))
                    break
        return found

    texts = [t for c in corpus for _who, _when, t in c.spec.messages]
    texts += ["", "ok", "S3CR3T!!!", "Don't TELL your MUM", "meet me after SCHOOL", "ᴋeep it"]
    texts += ["xsecret", "secretly", "a photo of you", "aphoto of you", "send me a pic"]
    # Not ASCII: plain ones (accents, emoji) and ones with an ASCII look-alike (ſ, K, ı).
    texts += ["¿dónde vives? 🙂 how old are you", "seſret between us", "\u212aeep it secret"]
    texts += ["how old are you ı", "what school do you go to, café 😂", "send me a pıc"]
    for text in texts:
        assert [(r.id, n) for r, n in rules.content_matches(text)] == plainly(text), text
