"""Mutation testing of agechat's safety-critical modules with mutmut (issue 17).

Each module is mutated on its own, in a scratch copy of the project (mutmut writes a
``mutants/`` tree, and a mutant must never reach the shared working tree), and each mutant
is run against the tests that should guard that module — not the whole suite:

    python tools/mutate.py                    # every module below, one after the other
    python tools/mutate.py policy ratchet     # some of them
    python tools/mutate.py policy --jobs 1 --timeout 300 --out /tmp/m

It prints one line per module (mutants, killed, survived, score) and writes, under
``--out``, ``scores.json`` and ``<module>-survivors.txt`` with the diff of every mutant
that survived, to be judged (docs/TESTING.md records the verdicts). The score is
(killed + timed out) ÷ generated: mutmut 3 mutates function and method bodies only, never
annotations, so there are no typing-only mutants to exclude. By default the scratch copy
is the working tree as it is (tracked and untracked files, not ignored ones); ``--ref``
takes a commit instead.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Module:
    path: str
    #: The tests that should guard it (pytest arguments).
    tests: tuple[str, ...]
    #: ``mutmut``, or ``declarative`` for a module that is mostly module-level
    #: declarations, which mutmut 3 (function bodies only) doesn't mutate.
    tool: str = "mutmut"


MODULES: dict[str, Module] = {
    "policy": Module(
        "protocol/policy.py",
        (
            "tests/protocol/test_policy.py",
            "tests/protocol/test_rules_table.py",
            "tests/protocol/test_mutants_policy.py",
            "tests/protocol/test_refusal_sentences.py",
        ),
    ),
    "ratchet": Module(
        "protocol/crypto/ratchet.py",
        (
            "tests/protocol/crypto/test_ratchet.py",
            "tests/protocol/crypto/test_mutants_ratchet.py",
            "tests/protocol/crypto/test_known_answers.py",
            "tests/protocol/crypto/test_interop.py",
        ),
    ),
    "codec": Module(
        "protocol/codec.py",
        ("tests/protocol/test_codec.py", "tests/protocol/test_mutants_codec.py"),
    ),
    "frames": Module(
        "protocol/frames.py",
        (
            "tests/protocol/test_codec.py",
            "tests/protocol/test_protocol_doc.py",
            "tests/protocol/test_mutants_codec.py",
        ),
        tool="declarative",
    ),
    "social": Module(
        "server/social/service.py",
        ("tests/server/test_mutants_social.py", "tests/server/test_mutants_social_service.py"),
    ),
}
#: What the tests read besides the packages (policy presets, docs they check).
ALSO_COPY = ("policies", "docs")
PACKAGES = ("protocol", "server", "client", "launcher")


def scratch_copy(dest: Path, ref: str | None) -> None:
    """The project's files, without .git, .venv or anything ignored."""
    if ref is not None:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
        ).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(dest, filter="data")
        return
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if not source.is_file():  # deleted in the working tree
            continue
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def write_config(work: Path, module: Module) -> None:
    def lines(values: tuple[str, ...] | list[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    tests = [t for t in module.tests if (work / t).exists()]
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths ={lines(PACKAGES)}\n"
        f"only_mutate = {module.path}\n"
        f"also_copy ={lines(ALSO_COPY)}\n"
        f"pytest_add_cli_args_test_selection ={lines(tests)}\n"
        # -x: a mutant is killed at its first failing test.
        f"pytest_add_cli_args ={lines(['-p', 'no:cacheprovider', '-q', '-x'])}\n"
    )
    # mutmut reads [tool.mutmut] from pyproject.toml first; the project keeps none.


def run_module(name: str, module: Module, args: argparse.Namespace, out: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"agechat-mutate-{name}-"))
    try:
        scratch_copy(work, args.ref)
        if module.tool == "declarative":
            return run_declarative(name, module, args, out, work)
        write_config(work, module)
        mutmut = str(BIN / "mutmut")
        started = time.monotonic()
        with open(out / f"{name}-run.log", "w") as log:
            proc = subprocess.Popen(
                [mutmut, "run", "--max-children", str(args.jobs)],
                cwd=work,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=args.timeout)
                finished = proc.returncode == 0
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                finished = False
        seconds = round(time.monotonic() - started)
        subprocess.run([mutmut, "export-cicd-stats"], cwd=work, capture_output=True, check=False)
        stats_file = work / "mutants" / "mutmut-cicd-stats.json"
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        survivors = survivors_of(work, mutmut)
        with open(out / f"{name}-survivors.txt", "w") as f:
            for mutant, diff in survivors:
                f.write(f"=== {mutant}\n{diff}\n")
        total = stats.get("total", 0)
        detected = stats.get("killed", 0) + stats.get("timeout", 0) + stats.get("segfault", 0)
        return {
            "module": module.path,
            "tests": list(module.tests),
            "finished": finished,
            "seconds": seconds,
            **stats,
            "score": round(100 * detected / total, 1) if total else None,
            "survivors": [m for m, _ in survivors],
        }
    finally:
        if args.keep:
            print(f"  kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


# --- declarative mutants (module-level code mutmut 3 leaves alone) --------------------------


def declarative_mutants(source: bytes) -> list[tuple[str, bytes]]:
    """One change each to what a module declares rather than computes: a member dropped
    from a ``|`` union, a set or a ``Literal[...]``; a wire tag or field name renamed; a
    size or range bound in ``msgspec.Meta`` moved by one; a field default or a module-level
    string constant changed."""
    tree = ast.parse(source)
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def span(node: ast.AST) -> tuple[int, int]:
        return (
            starts[node.lineno - 1] + node.col_offset,  # type: ignore[attr-defined]
            starts[node.end_lineno - 1] + node.end_col_offset,  # type: ignore[attr-defined]
        )

    def text(node: ast.AST) -> str:
        a, b = span(node)
        return source[a:b].decode()

    found: list[tuple[str, ast.AST, str]] = []

    def chain(node: ast.AST) -> list[ast.AST]:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return chain(node.left) + chain(node.right)
        return [node]

    for stmt in tree.body:
        value = getattr(stmt, "value", None)
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and value is not None:
            parts = chain(value)
            if len(parts) > 2 and all(isinstance(p, ast.Name) for p in parts):
                for i, part in enumerate(parts):
                    rest = " | ".join(text(p) for j, p in enumerate(parts) if j != i)
                    found.append((f"drop {text(part)} from a union", value, f"({rest})"))
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append((f"change {value.value!r}", value, repr(value.value + "_x")))
    for node in ast.walk(tree):
        if isinstance(node, ast.Set) and len(node.elts) > 1:
            for i, elt in enumerate(node.elts):
                rest = ", ".join(text(e) for j, e in enumerate(node.elts) if j != i)
                found.append((f"drop {text(elt)} from a set", node, "{" + rest + "}"))
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Literal"
            and isinstance(node.slice, ast.Tuple)
        ):
            elts = node.slice.elts
            for i, elt in enumerate(elts):
                rest = ", ".join(text(e) for j, e in enumerate(elts) if j != i)
                found.append((f"drop {text(elt)} from a Literal", node, f"Literal[{rest}]"))
        if isinstance(node, ast.ClassDef):
            for kw in node.keywords:
                if kw.arg == "tag" and isinstance(kw.value, ast.Constant):
                    found.append(
                        (f"rename tag {kw.value.value!r}", kw.value, repr(kw.value.value + "_x"))
                    )
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.value, ast.Constant):
                    v = item.value.value
                    target = text(item.target)
                    if isinstance(v, bool):
                        found.append(
                            (f"{node.name}.{target} default {not v}", item.value, repr(not v))
                        )
                    elif isinstance(v, str):
                        found.append(
                            (f"{node.name}.{target} default changed", item.value, repr(v + "_x"))
                        )
                    elif v is None:
                        found.append(
                            (
                                f"{node.name}.{target} default required",
                                item,
                                f"{target}: {text(item.annotation)}",
                            )
                        )
        if isinstance(node, ast.Call):
            callee = text(node.func)
            for kw in node.keywords:
                if not isinstance(kw.value, ast.Constant):
                    continue
                v = kw.value.value
                if callee.endswith("field") and kw.arg == "name" and isinstance(v, str):
                    found.append((f"rename wire field {v!r}", kw.value, repr(v + "_x")))
                if callee.endswith("Meta") and isinstance(v, int) and not isinstance(v, bool):
                    for delta in (-1, 1):
                        found.append((f"Meta {kw.arg}={v}{delta:+d}", kw.value, str(v + delta)))
    mutants = []
    for what, node, replacement in found:
        a, b = span(node)
        mutated = source[:a] + replacement.encode() + source[b:]
        try:
            ast.parse(mutated)
        except SyntaxError:
            continue
        line = node.lineno  # type: ignore[attr-defined]
        mutants.append((f"line {line}: {what}", mutated))
    return mutants


def run_declarative(
    name: str, module: Module, args: argparse.Namespace, out: Path, work: Path
) -> dict:
    """Each mutant written into the scratch copy in turn, the module's tests run (stopping
    at the first failure), the file restored."""
    target = work / module.path
    original = target.read_bytes()
    mutants = declarative_mutants(original)
    tests = [t for t in module.tests if (work / t).exists()]
    command = [str(BIN / "pytest"), "-q", "-x", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    killed, survived, finished = 0, [], True
    clean = subprocess.run(command, cwd=work, capture_output=True, check=False)
    if clean.returncode != 0:
        raise SystemExit(f"{name}: its tests fail without any mutant:\n{clean.stdout.decode()}")
    try:
        for what, mutated in mutants:
            if time.monotonic() - started > args.timeout:
                finished = False
                break
            target.write_bytes(mutated)
            result = subprocess.run(command, cwd=work, capture_output=True, check=False)
            if result.returncode == 0:
                survived.append(what)
            else:
                killed += 1
    finally:
        target.write_bytes(original)
    with open(out / f"{name}-survivors.txt", "w") as f:
        f.writelines(f"=== {what}\n" for what in survived)
    total = len(mutants)
    return {
        "module": module.path,
        "tests": list(module.tests),
        "tool": "declarative",
        "finished": finished,
        "seconds": round(time.monotonic() - started),
        "killed": killed,
        "survived": len(survived),
        "total": total,
        "not_run": total - killed - len(survived),
        "score": round(100 * killed / total, 1) if total else None,
        "survivors": survived,
    }


def survivors_of(work: Path, mutmut: str) -> list[tuple[str, str]]:
    listed = subprocess.run(
        [mutmut, "results"], cwd=work, capture_output=True, text=True, check=False
    ).stdout
    names = [
        line.split(":")[0].strip()
        for line in listed.splitlines()
        if line.strip().endswith(("survived", "no tests"))
    ]
    found = []
    for mutant in names:
        shown = subprocess.run(
            [mutmut, "show", mutant], cwd=work, capture_output=True, text=True, check=False
        ).stdout
        diff = "\n".join(line for line in shown.splitlines() if line.startswith(("-", "+", "@@")))
        found.append((mutant, diff))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(MODULES)} (all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument(
        "--timeout", type=int, default=600, help="seconds per module before stopping (600)"
    )
    parser.add_argument("--ref", help="mutate this commit instead of the working tree")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "agechat-mutate")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument(
        "--tests",
        action="append",
        help="run these tests instead of the module's own (repeatable; e.g. to compare)",
    )
    args = parser.parse_args()
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s) {', '.join(sorted(unknown))}: use {', '.join(MODULES)}")
    args.modules = args.modules or list(MODULES)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    print(f"{'module':<28} {'mutants':>7} {'killed':>7} {'survived':>8} {'score':>6}  time")
    for name in args.modules:
        module = MODULES[name]
        if args.tests:
            module = Module(module.path, tuple(args.tests), module.tool)
        result = run_module(name, module, args, args.out)
        results[name] = result
        score = f"{result['score']}%" if result["score"] is not None else "-"
        note = "" if result["finished"] else "  (stopped: partial)"
        print(
            f"{result['module']:<28} {result.get('total', 0):>7} "
            f"{result.get('killed', 0) + result.get('timeout', 0):>7} "
            f"{result.get('survived', 0) + result.get('no_tests', 0):>8} {score:>6}  "
            f"{result['seconds']}s{note}",
            flush=True,
        )
    (args.out / "scores.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"survivors and logs: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
