"""Benchmarks are not tests, but a benchmark that no longer finishes should fail the suite:
each one's `--smoke` mode (seconds, tiny sizes, no figures worth quoting) runs here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def smoke(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_signals_eval_runs_the_corpus_through_a_real_relay():
    out = smoke("signals_eval.py", "--runner", "relay")
    assert "| relay: rules + behaviour, all | finding |" in out
    assert "| engine: rules + behaviour, all | finding |" in out
    assert "median messages until the first notice" in out


def test_relay_throughput_smoke():
    """The realistic load under `default` and `open` and the bare forwarder, at tiny sizes,
    closed loop and then on a fixed schedule at half the relay's rate: any frame the
    scenario doesn't expect, or a stall, fails the script (and so this test)."""
    out = smoke("relay_throughput.py")
    lines = out.strip().splitlines()
    for policy in ("open", "default"):
        assert re.search(rf"^  round 1 {policy} +bare ", out, re.M), out
        assert re.search(rf"^  round 1 {policy} +agechat ", out, re.M), out
        assert re.search(rf"^  fixed-rate round 1 {policy} +agechat ", out, re.M), out
        p99 = rf"p99 at half saturation \({policy}\) = \d+\.\d ms"
        assert any(re.fullmatch(p99, ln) for ln in lines), out
    assert any(re.fullmatch(r"ratio agechat/bare \(open\) = \d+\.\d\d", ln) for ln in lines), out
    assert re.fullmatch(r"ratio agechat/bare = \d+\.\d\d", lines[-1]), out


def test_relay_search_smoke():
    """Search over a seeded relay at two sizes and sends under pipelined searches, small: a
    wrong answer, an error frame or a stall fails the script (and so this test)."""
    out = smoke("relay_search.py")
    lines = out.strip().splitlines()
    assert re.search(r"round 1 +\d+ accounts: relay listening", out), out
    assert re.fullmatch(r"search p50 at \d+ accounts = \d+\.\d\d ms", lines[-2]), out
    assert re.fullmatch(
        r"send p50 increase under 10 pipelined searches = -?\d+\.\d\d ms", lines[-1]
    ), out


def test_relay_memory_smoke():
    """A real relay with 20 sockets opened, logged in and held idle, and the bare server: a
    frame the clients don't expect, a closed socket or a stall fails the script."""
    out = smoke("relay_memory.py")
    lines = out.strip().splitlines()
    assert re.search(r"round 1: bare +-?\d+\.\d KB, relay before login .* logged in and idle", out)
    assert re.fullmatch(r"memory per idle connection = -?\d+\.\d KB", lines[-1]), out
