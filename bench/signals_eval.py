"""Grooming-risk signals (issue 14): precision, recall and F1 on the labelled corpus.

Runs every conversation of tests/data/signals_corpus/ through the signals engine with a
policy's thresholds and rules, and prints, overall and per split (one conversation in five
is held out: tune on `train`, report `heldout` separately):

- precision, recall and F1 at the notice and the finding threshold (a conversation counts
  as flagged if it raised at least one notice / a finding);
- the same for behaviour features only (every text dropped, as in an e2ee conversation)
  and for content rules only, to show what each half contributes;
- notices and findings on benign conversations, by category (family, coach, teacher and
  peer conversations must raise no notice);
- the median number of messages (both sides) until the first notice and the first finding
  in harmful conversations that got one.

Not a test: it prints figures. Where the events come from is swappable: `--runner engine`
(the scoring function, the default, seconds) or `--runner relay` (bench/signals_relay.py:
each conversation through its own real relay and real clients, a few minutes; its rows are
printed beside the engine's, so a difference between the two is visible). A runner
implements `Runner.run(conversation) -> Trace` (server/safety/signals/evaluation.py) and
registers itself in RUNNERS. `--smoke` runs a handful of conversations (no figures worth
quoting) so that `make test` notices a runner that no longer finishes.

    python bench/signals_eval.py [--runner engine|relay] [--policy default] [--rules PATH]
                                 [--split train] [--notice-at X] [--finding-at Y] [--list]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.policy import Policy, Signals  # noqa: E402
from server.policy.loader import load_policy  # noqa: E402
from server.safety.signals.evaluation import (  # noqa: E402
    NO_NOTICE,
    Conversation,
    EngineRunner,
    Runner,
    Trace,
    confusion,
    load_corpus,
    median,
)
from server.safety.signals.loader import load_rules  # noqa: E402
from server.safety.signals.rules import BehaviourSpec, RuleSet  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "signals_corpus"


def engine_runner(policy: Policy, rules: RuleSet, settings: Signals) -> dict[str, Runner]:
    return {
        "rules + behaviour": EngineRunner(rules, settings),
        "behaviour only (as e2ee)": EngineRunner(rules, settings, content=False),
        "content only": EngineRunner(
            dataclasses.replace(rules, behaviour=BehaviourSpec()), settings
        ),
    }


def relay_runner(policy: Policy, rules: RuleSet, settings: Signals) -> dict[str, Runner]:
    from bench.signals_relay import RelayRunner

    return {
        "relay: rules + behaviour": RelayRunner(policy, settings),
        "engine: rules + behaviour": EngineRunner(rules, settings),
    }


#: How to run the corpus: name → factory(policy, rules, settings) → the runs to print, by
#: name; the first is the one the benign table and the medians are about.
RUNNERS: dict[str, Callable[[Policy, RuleSet, Signals], dict[str, Runner]]] = {
    "engine": engine_runner,
    "relay": relay_runner,
}


def _run_all(name: str, runner: Runner, conversations: Sequence[Conversation]) -> dict[str, Trace]:
    """Every conversation through ``runner``, with progress on stderr (the relay is slow)."""
    traces = {}
    for n, c in enumerate(conversations, start=1):
        if sys.stderr.isatty():
            print(f"\r{name}: {n}/{len(conversations)} {c.id:<40}", end="", file=sys.stderr)
        traces[c.id] = runner.run(c)
    if sys.stderr.isatty():
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    return traces


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"


def table(label: str, conversations: Sequence[Conversation], traces: dict[str, Trace]) -> list[str]:
    rows = []
    for threshold, attr in (("notice", "first_notice"), ("finding", "first_finding")):
        s = confusion(
            (c.spec.label == "harmful", getattr(traces[c.id], attr) is not None)
            for c in conversations
        )
        rows.append(
            f"| {label} | {threshold} | {s.precision:.2f} | {s.recall:.2f} | {s.f1:.2f} "
            f"| {s.tp} | {s.fp} | {s.fn} | {s.tn} |"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="default", help="preset or PATH.toml for thresholds")
    ap.add_argument("--rules", help="rules name or PATH.toml (default: the policy's)")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--split", choices=("all", "train", "heldout"), default="all")
    ap.add_argument("--runner", choices=sorted(RUNNERS), default="engine")
    ap.add_argument("--notice-at", type=float)
    ap.add_argument("--finding-at", type=float)
    ap.add_argument("--list", action="store_true", help="one line per conversation (shown split)")
    ap.add_argument("--smoke", action="store_true", help="six conversations, to check it runs")
    args = ap.parse_args(argv)

    policy = load_policy(args.policy)
    settings = policy.signals
    overrides = {
        k: v
        for k, v in (("notice_at", args.notice_at), ("finding_at", args.finding_at))
        if v is not None
    }
    if overrides:
        settings = msgspec.structs.replace(settings, **overrides)
    settings = msgspec.structs.replace(settings, enabled=True)
    if args.rules:
        settings = msgspec.structs.replace(settings, rules=args.rules)
    rules = load_rules(settings.rules)
    corpus = load_corpus(args.corpus)
    if args.smoke:  # one of each category, the same ones every time
        corpus = list({c.spec.category: c for c in reversed(corpus)}.values())[:6]
    shown = [c for c in corpus if args.split == "all" or c.split == args.split]

    runs = RUNNERS[args.runner](policy, rules, settings)
    traces = {name: _run_all(name, r, shown) for name, r in runs.items()}
    main_traces = next(iter(traces.values()))

    harmful = sum(c.spec.label == "harmful" for c in shown)
    print(
        f"# signals_eval — {date.today()} — {platform.machine()}, {platform.node() or 'host'}, "
        f"Python {platform.python_version()}"
    )
    print(
        f"rules {rules.name!r} ({len(rules.content)} content rules), policy {args.policy!r}: "
        f"notice_at {settings.notice_at:g}, finding_at {settings.finding_at:g}, "
        f"decay_hours {settings.decay_hours:g}, "
        f"notice_min_hours_between {settings.notice_min_hours_between:g}"
    )
    splits = {"train": 0, "heldout": 0}
    for c in corpus:
        splits[c.split] += 1
    print(
        f"corpus: {len(corpus)} conversations ({splits['train']} train, {splits['heldout']} "
        f"held out); shown: {args.split}, {len(shown)} ({harmful} harmful, "
        f"{len(shown) - harmful} benign)\n"
    )

    print("| run | threshold | precision | recall | F1 | TP | FP | FN | TN |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = [("all", shown)]
    if args.split == "all":
        groups += [(s, [c for c in shown if c.split == s]) for s in ("train", "heldout")]
    for run_name, run_traces in traces.items():
        for split_name, group in groups:
            for row in table(f"{run_name}, {split_name}", group, run_traces):
                print(row)

    print(f"\nBenign conversations that raised a notice / a finding ({next(iter(traces))}):\n")
    print("| category | conversations | with a notice | with a finding | must be 0 |")
    print("|---|---|---|---|---|")
    categories = sorted({c.spec.category for c in shown if c.spec.label == "benign"})
    failures = 0
    for cat in categories:
        group = [c for c in shown if c.spec.label == "benign" and c.spec.category == cat]
        n = sum(main_traces[c.id].first_notice is not None for c in group)
        f = sum(main_traces[c.id].first_finding is not None for c in group)
        must = cat in NO_NOTICE
        failures += must and n
        print(f"| {cat} | {len(group)} | {n} | {f} | {'yes' if must else ''} |")

    hit = [main_traces[c.id] for c in shown if c.spec.label == "harmful"]
    mn = median(t.first_notice for t in hit)
    mf = median(t.first_finding for t in hit)
    ml = median(t.messages for t in hit)
    print(
        f"\nHarmful conversations: median messages until the first notice {_fmt(mn)}, until "
        f"the first finding {_fmt(mf)} (median length {_fmt(ml)})."
    )
    if args.list:
        print(
            "\n| conversation | split | label | category | msgs | notice at | finding at "
            "| max score | notices | fired |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for c in shown:
            t = main_traces[c.id]
            print(
                f"| {c.id} | {c.split} | {c.spec.label} | {c.spec.category} | {t.messages} "
                f"| {_fmt(t.first_notice)} | {_fmt(t.first_finding)} | {t.max_score:.1f} "
                f"| {', '.join(t.notice_rules)} | {', '.join(t.fired)} |"
            )
    if failures:
        print(f"\n{failures} family/coach/teacher/peer conversation(s) raised a notice.")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
