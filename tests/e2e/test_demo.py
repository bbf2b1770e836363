"""The demo as a reader runs it: the README's `make demo` commands, what make really runs for
them, and that command in a real terminal; then the demo's world under other policies.

`make -n` prints the commands without running them, so nothing here creates or reinstalls
the virtualenv.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.errors import error_message
from client.tui.screens.main import MainScreen
from client.tui.widgets.notice_banner import NoticeBanner
from launcher.cli import cli
from launcher.demo import demo_app, demo_command, free_port, seed, start_relay
from server.policy.loader import PRESETS_DIR, load_policy

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
COLUMNS, ROWS = 120, 40

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def readme_demo_commands() -> list[str]:
    """Every `make demo …` command the README tells its reader to run, as written."""
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"^(make demo\b[^#\n]*)", text, re.MULTILINE)  # in code blocks
    found += re.findall(r"`(make demo\b[^`]*)`", text)  # in prose
    commands = list(dict.fromkeys(" ".join(c.split()) for c in found))
    assert commands, "the README shows no `make demo` command"
    return commands


def make_dry_run(command: str) -> list[str]:
    """The `agechat demo` command line that `make` really runs for a README command."""
    argv = shlex.split(command)
    assert argv[:2] == ["make", "demo"], argv
    env = {
        k: v
        for k, v in os.environ.items()
        # as on a reader's machine: nothing inherited from a make that runs these tests
        if k not in ("PERSONA", "POLICY", "AS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", *argv[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    runs = [shlex.split(line) for line in done.stdout.splitlines() if " demo" in line]
    runs = [r for r in runs if r and r[0].endswith("agechat")]
    assert len(runs) == 1, done.stdout
    return runs[0]


ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, modes
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)


def visible_text(raw: bytes) -> str:
    """What a terminal shows, roughly: the output without its escape sequences."""
    return ESCAPES.sub("", raw.decode("utf-8", errors="replace"))


@contextlib.contextmanager
def in_terminal(argv: list[str], env: dict[str, str]) -> Iterator[TerminalRun]:
    """Run ``argv`` in a pseudo-terminal of COLUMNS×ROWS, as a person would."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    run = TerminalRun(proc, master)
    try:
        yield run
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        os.close(master)


class TerminalRun:
    def __init__(self, proc: subprocess.Popen[bytes], master: int) -> None:
        self.proc, self.master = proc, master
        self.output = bytearray()

    def read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the process closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, shown: Callable[[str], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if shown(self.text):
                return True
            if not self.read(0.2) and self.proc.poll() is not None:
                return shown(self.text)
        return False

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read(0.2)  # keep draining, or the app blocks writing its last frames
        return self.proc.poll()

    @property
    def text(self) -> str:
        return visible_text(bytes(self.output))


@needs_make
def test_the_readme_demo_command_opens_the_app_as_maya(tmp_path):
    """`make demo` as the README writes it: the app comes up as Maya with her intro, in a
    real terminal, and Ctrl+Q leaves cleanly."""
    command = readme_demo_commands()[0]
    assert command == "make demo"
    argv = make_dry_run(command)
    env = dict(os.environ, TMPDIR=str(tmp_path), TERM="xterm-256color", COLUMNS="", LINES="")
    with in_terminal(argv, env) as run:
        opened = run.wait_for(lambda t: "agechat — @maya" in t and "You are Maya" in t, 60)
        assert opened, f"`{shlex.join(argv)}` did not open the app as Maya:\n{run.text[-2000:]}"
        run.type(b"\x11")  # Ctrl+Q
        assert run.wait_exit(30) == 0, run.text[-2000:]
    assert not list(tmp_path.glob("agechat-demo-*")), "the demo left its data behind"


@needs_make
def test_every_documented_make_demo_variant_reaches_the_launcher():
    """`make demo PERSONA=dana` and the like: make passes them on, and `agechat demo`
    accepts what it gets (GNU make predefines AS, so `AS ?= maya` gave it `--as as`)."""
    for command in readme_demo_commands():
        settings = dict(arg.split("=", 1) for arg in shlex.split(command)[2:] if "=" in arg)
        argv = make_dry_run(command)
        assert argv[1] == "demo", argv
        with demo_command.make_context("demo", argv[2:]) as ctx:
            assert ctx.params["persona"] == settings.get("PERSONA", "maya"), command
            assert ctx.params["policy"] == settings.get("POLICY", "default"), command


def test_an_unknown_policy_is_a_usage_error_before_anything_starts(tmp_path):
    result = CliRunner().invoke(
        cli, ["demo", "--policy", "nonsense"], env={"TMPDIR": str(tmp_path)}
    )
    assert result.exit_code == 2, result.output
    assert "no policy 'nonsense'" in result.output
    assert not list(tmp_path.glob("agechat-demo-*"))


# --- the demo's world, in the app (Pilot), under a policy ---------------------------------


def screen_text(app) -> str:
    """Every line on the app's screen, as a user sees it (dialogs included)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def footer_text(app) -> str:
    return screen_text(app).splitlines()[-1]


def log_text(app) -> str:
    return "\n".join(str(s.render()) for s in app.screen.query("#log Static"))


async def settle(pilot, until: Callable[[], object], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        await pilot.pause(0.05)
        with contextlib.suppress(Exception):  # a screen may still be switching
            if until():
                return


@contextlib.asynccontextmanager
async def demo_world(base: Path, policy: str):
    """The demo's relay (a subprocess, started with ``policy``) and its seeded personas."""
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    relay = await asyncio.to_thread(start_relay, base, port, policy)
    try:
        await seed(base / "profiles", server)
        yield server
    finally:
        relay.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            relay.wait(10)


async def test_the_intro_is_shown_in_the_app_and_comes_back_with_f1(tmp_path):
    async with demo_world(tmp_path, "default") as server:
        app = demo_app(tmp_path / "profiles", "maya", server, load_policy("default"))
        async with app.run_test(size=(COLUMNS, ROWS)) as pilot:
            await settle(pilot, lambda: "You are Maya" in screen_text(app))
            intro = screen_text(app)
            assert "You are Maya (@maya), 14 years old" in intro
            assert "@rex — adult stranger" in intro  # who else is here
            assert "Policy: default" in intro
            await pilot.press("escape")
            await settle(pilot, lambda: "You are Maya" not in screen_text(app))
            assert isinstance(app.screen, MainScreen)
            await settle(pilot, lambda: "Dana @dana" in screen_text(app))  # her chats
            await settle(pilot, lambda: "F1 Help" in footer_text(app))  # (it recomposes)
            assert "F1 Help" in footer_text(app)  # it says how to see the intro again
            await pilot.press("f1")
            await settle(pilot, lambda: "You are Maya" in screen_text(app))
            assert "You are Maya (@maya)" in screen_text(app)
            await pilot.press("escape")
            await settle(pilot, lambda: "You are Maya" not in screen_text(app))
            # The seeded grooming pattern: a notice in Maya's chat with Jay.
            screen = app.screen
            jay = next(c for c in screen._conversations if c.handle == "jay")
            await screen.open_conversation(jay)
            await settle(pilot, lambda: screen.query(NoticeBanner))
            assert "risk_secrecy" in [b.code for b in screen.query(NoticeBanner)]


async def test_the_demo_under_another_policy_refuses_what_default_allows(tmp_path):
    """A product team's own preset, given as a PATH: no adult–minor contact at all. Maya's
    chat with her mum, connected under `default`, is refused, and the app says why."""
    custom = tmp_path / "no_adult_minor.toml"
    strict = (PRESETS_DIR / "strict.toml").read_text(encoding="utf-8")
    custom.write_text(strict.replace('name = "strict"', 'name = "no_adult_minor"'))
    async with demo_world(tmp_path, str(custom)) as server:
        app = demo_app(tmp_path / "profiles", "maya", server, load_policy(str(custom)))
        async with app.run_test(size=(COLUMNS, ROWS)) as pilot:
            await settle(pilot, lambda: "Policy: no_adult_minor" in screen_text(app))
            await pilot.press("escape")
            await settle(pilot, lambda: isinstance(app.screen, MainScreen))
            screen = app.screen
            dana = next(c for c in screen._conversations if c.handle == "dana")
            assert dana.state != "connected"
            await screen.open_conversation(dana)
            await settle(pilot, lambda: "not sent" in log_text(app))
            shown = log_text(app)
            assert "you: Almost! Can Leo come over on Saturday?" in shown
            # The sentence for this rule and direction, not the adult-to-minor one.
            assert "doesn't allow contact between adults and people under 18" in shown
            assert error_message("contact_not_allowed") not in shown
            assert "Did you finish your homework?" not in shown  # Dana's never arrived


async def test_the_demo_as_mia_opens_the_console_on_the_cases_reports_opened(tmp_path):
    """The moderator persona: a child-safety case about the stranger (Maya's report, joined
    by Dana's with his message as evidence) and a general one to dismiss."""
    from client.tui.moderation import ModerationConsole
    from launcher.demo import MODERATORS, _Clients
    from server.admin.roles import change_role

    async with demo_world(tmp_path, "default"):
        await change_role(tmp_path / "relay", "mia", MODERATORS["mia"], grant=True)
        async with _Clients(tmp_path / "profiles") as clients:
            mia = await clients.open("mia")
            for _ in range(30):  # the relay picks the role up within a second
                try:
                    queues = {q.name: q.pending for q in await mia.moderation.queues()}
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            assert queues == {"child_safety": 1, "general": 1}
            (case,) = await mia.moderation.queue("child_safety")
            assert case.subject == "rex" and case.findings == 2
            app = ModerationConsole(mia.moderation, moderator="mia")
            async with app.run_test(size=(COLUMNS, ROWS)) as pilot:
                await settle(pilot, lambda: "child_safety" in screen_text(app))
                assert "general" in screen_text(app)
