"""`agechat demo`: a throwaway relay, six personas with history, small bots that answer,
and the app opened as one of them — every rule visible in a couple of minutes. As `mia`,
agechat's child-safety moderator, it opens the moderator console on the cases the
others' reports opened.

`--policy` starts the relay under another preset (or a PATH.toml), so the same people and
the same attempts show what that policy allows and refuses.

This is the one place besides tests that starts the relay and drives clients together
(docs/ARCHITECTURE.md). The relay runs as a subprocess, the bots in another, so the app's
event loop stays the app's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from client.account import create_account
from client.errors import ClientError
from client.events import MessageReceived
from client.history import History
from client.keystore import MINIMUM
from client.profile import Profile
from client.relay import RelayClient
from protocol.policy import Policy
from server.admin.roles import change_role
from server.policy.loader import PRESETS_DIR, PolicyError, load_policy, policy_path

if TYPE_CHECKING:
    from client.tui.app import AgechatApp
    from client.tui.screens.dialogs import Intro

PASSPHRASE = "demo"


def born_years_and_days_ago(years: int, days: int = 0) -> date:
    """A birth date ``years`` years and ``days`` days before today (tests/support.py's
    ``years_ago`` counts its days the other way: towards today)."""
    today = date.today()
    try:
        anniversary = today.replace(year=today.year - years)
    except ValueError:  # 29 February in a common year
        anniversary = today.replace(year=today.year - years, day=28)
    return anniversary - timedelta(days=days)


@dataclass(frozen=True)
class Persona:
    handle: str
    name: str
    birthdate: date
    about: str
    replies: tuple[str, ...]


PERSONAS = {
    p.handle: p
    for p in (
        Persona(
            "maya",
            "Maya",
            born_years_and_days_ago(14, 40),
            "14 years old; Dana's daughter",
            (
                "ok!",
                "haha",
                "can't talk now, at practice",
                "sure 🙂",
            ),
        ),
        Persona(
            "leo",
            "Leo",
            born_years_and_days_ago(16, 100),
            "16 years old; Maya's friend from school",
            (
                "nice",
                "see you at robotics club",
                "lol",
                "did you do the maths homework?",
            ),
        ),
        Persona(
            "dana",
            "Dana",
            born_years_and_days_ago(44, 10),
            "adult; Maya's mum",
            (
                "Love you! Home by 6.",
                "Got it, thanks.",
                "Ask me again after dinner.",
            ),
        ),
        Persona(
            "sam",
            "Sam",
            born_years_and_days_ago(36, 200),
            "adult; Dana's colleague, a product manager",
            (
                "Works for me.",
                "Let's discuss in the review.",
                "Thanks — noted.",
            ),
        ),
        Persona(
            "jay",
            "Jay",
            born_years_and_days_ago(31, 75),
            "adult; met Maya in an online game last week — she added him",
            (
                "haha nice",
                "what are you up to?",
            ),
        ),
        Persona(
            "rex",
            "Rex",
            born_years_and_days_ago(29, 50),
            "adult stranger; nobody's contact",
            (
                "hey, who is this?",
                "cool",
            ),
        ),
        Persona(
            "mia",
            "Mia",
            born_years_and_days_ago(39, 120),
            "agechat's child-safety moderator; reviews the cases reports open",
            (),
        ),
    )
}
#: Who opens the moderator console instead of the chat app, with the role they hold.
MODERATORS = {"mia": "child_safety_moderator"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relay_policy_arg(policy: str) -> str:
    """A preset's name as it is; a path made absolute (the relay may run elsewhere)."""
    path = policy_path(policy)
    return policy if path.parent == PRESETS_DIR else str(path.resolve())


def start_relay(data_dir: Path, port: int, policy: str = "default") -> subprocess.Popen[bytes]:
    log = (data_dir / "relay.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launcher",
            "server",
            "--data-dir",
            str(data_dir / "relay"),
            "--port",
            str(port),
            "--policy",
            relay_policy_arg(policy),
        ],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        health = f"http://127.0.0.1:{port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=1):
            return proc
        if proc.poll() is not None:
            raise click.ClickException(f"the relay did not start; see {data_dir / 'relay.log'}")
        time.sleep(0.1)
    proc.kill()
    raise click.ClickException("the relay did not start in time")


class _Clients(contextlib.AsyncExitStack):
    """Open RelayClients for several personas at once."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base
        self.clients: dict[str, RelayClient] = {}

    async def open(self, handle: str) -> RelayClient:
        profile = Profile.load(self.base / handle)
        history = History(profile.history_path)
        await history.open()
        self.push_async_callback(history.close)
        client = RelayClient(profile, profile.unlock(PASSPHRASE), history, reconnect=True)
        await self.enter_async_context(client)
        await client.wait_connected()
        self.clients[handle] = client
        return client


async def say(client: RelayClient, to: str, text: str) -> None:
    message = await client.send(to, text)
    with contextlib.suppress(ClientError):
        await client.wait_accepted(message.msg_id)


async def attempt(step: Awaitable[object]) -> None:
    """One step of the story; under a stricter policy the relay may refuse it, and the
    refusal (kept in the history of whoever tried) is part of what the demo shows."""
    with contextlib.suppress(ClientError):
        await step


async def seed(base: Path, server: str) -> None:
    """Accounts, connections and a little history, all through the real client library.

    The same attempts under every policy: what the policy refuses simply doesn't happen.
    """
    for p in PERSONAS.values():
        await create_account(
            base / p.handle,
            server=server,
            handle=p.handle,
            display_name=p.name,
            birthdate=p.birthdate,
            passphrase=PASSPHRASE,
            kdf=MINIMUM,
        )
    async with _Clients(base) as c:
        handles = ("maya", "leo", "dana", "sam", "rex", "jay")
        maya, leo, dana, sam, rex, jay = [await c.open(h) for h in handles]
        # Maya asked her mum to connect (a minor may ask an adult); Dana accepted.
        await attempt(maya.contact_request("dana"))
        await attempt(dana.respond("maya", accept=True))
        await attempt(say(dana, "maya", "Did you finish your homework?"))
        await attempt(say(maya, "dana", "Almost! Can Leo come over on Saturday?"))
        await attempt(say(dana, "maya", "Sure, if his parents say it's ok."))
        # Two teens: Leo's first message arrived as a message request; Maya accepted.
        await attempt(say(leo, "maya", "hey, it's Leo from robotics club"))
        await attempt(maya.respond("leo", accept=True))
        await attempt(say(maya, "leo", "hi Leo! mum says Saturday is fine"))
        await attempt(say(leo, "maya", "great, I'll bring the kit"))
        # Two adults.
        await attempt(
            say(sam, "dana", "Hi Dana, it's Sam — are we still on for the design review?")
        )
        await attempt(dana.respond("sam", accept=True))
        await attempt(say(dana, "sam", "Yes, Thursday 10:00. I'll bring the teen-safety mocks."))
        # A grooming pattern (invented, non-explicit): Maya added an adult she met in a game;
        # he asks personal things, then for secrecy. The relay's signals send her a notice in
        # that chat (docs/SIGNALS.md); under `open` (e2ee, signals off) nothing can.
        await attempt(maya.contact_request("jay"))
        await attempt(jay.respond("maya", accept=True))
        await attempt(
            say(jay, "maya", "gg earlier! how old are you btw? what school do you go to?")
        )
        await attempt(say(maya, "jay", "14 lol"))
        await attempt(
            say(jay, "maya", "cool. let's keep our chats between us ok? don't tell your mum")
        )
        # The stranger: refused with minors (by default), a mere request with an adult.
        for teen in ("maya", "leo"):
            await attempt(say(rex, teen, "hey, want to chat?"))
        await attempt(say(rex, "dana", "Hello, I saw your talk on online safety."))
        await asyncio.sleep(0.5)  # let every client store and acknowledge what it got
        # Reports open cases for the moderator: Maya (14) about the stranger who keeps
        # trying (child safety); Dana about his message (it joins the same case); and Dana
        # reporting Sam by mistake (a general case to dismiss).
        await attempt(maya.report("rex", "a stranger keeps trying to message me", last=0))
        await attempt(dana.report("rex", "unsolicited message from a stranger", last=1))
        await attempt(dana.report("sam", "pressed report by mistake", last=1))


async def run_bots(base: Path, handles: list[str]) -> None:
    """Each persona answers what it receives after a short pause; runs until stdin closes."""
    async with _Clients(base) as c:
        for handle in handles:
            await c.open(handle)

        async def bot(handle: str, client: RelayClient) -> None:
            persona = PERSONAS[handle]
            async for event in client.events():
                if (
                    isinstance(event, MessageReceived)
                    and event.message.kind == "message"
                    and event.message.sender in PERSONAS
                ):
                    await asyncio.sleep(random.uniform(1.0, 2.5))
                    with contextlib.suppress(ClientError):
                        await client.send(event.message.sender, random.choice(persona.replies))

        tasks = [asyncio.create_task(bot(h, cl)) for h, cl in c.clients.items()]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # the demo closes our stdin to stop us
        for t in tasks:
            t.cancel()


def intro(persona: Persona, policy: Policy) -> Intro:
    """What the app shows first (and again with F1): who you are, who else is here, what
    to try, and which policy the relay runs."""
    from client.tui.screens.dialogs import Intro

    others = "\n".join(f"  @{p.handle} — {p.about}" for p in PERSONAS.values() if p != persona)
    text = f"""\
You are {persona.name} (@{persona.handle}), {persona.about}.
Policy: {policy.name} — {policy.description}

Other people here:
{others}

Try:
  • Ctrl+F finds people. As rex, search for maya: she isn't there.
  • As dana, the chat with sam (two adults) is end-to-end encrypted (Ctrl+S: your safety \
number); the one with maya (14) is visible to safety checks.
  • As maya, the chat with jay has a safety notice: he asked her to keep it secret. Block \
and Report are on the notice.
  • Ctrl+O: your account and what protects you.
  • Someone else, another policy: make demo PERSONA=rex POLICY=strict \
(agechat demo --as rex --policy strict)."""
    return Intro(f"agechat demo — {persona.name}'s view", text)


def demo_app(profiles: Path, persona: str, server: str, policy: Policy) -> AgechatApp:
    """The app as the demo opens it: as ``persona``, unlocked, with the intro up first."""
    from client.session import ProfileSessions
    from client.tui.app import AgechatApp

    return AgechatApp(
        ProfileSessions(profiles / persona, kdf=MINIMUM),
        passphrase=PASSPHRASE,
        default_server=server,
        intro=intro(PERSONAS[persona], policy),
    )


async def run_console(profiles: Path, moderator: str) -> None:
    """The moderator console, as ``moderator``, over a real client of the demo's relay."""
    from client.tui.moderation import ModerationConsole

    async with _Clients(profiles) as c:
        client = await c.open(moderator)
        await ModerationConsole(client.moderation, moderator=moderator).run_async()


def _checked_policy(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        load_policy(value)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


@click.command("demo")
@click.option(
    "--as",
    "persona",
    type=click.Choice(sorted(PERSONAS)),
    default="maya",
    show_default=True,
    help="Whose eyes to see the demo through.",
)
@click.option(
    "--policy",
    default="default",
    show_default=True,
    callback=_checked_policy,
    help="The relay's policy: a preset (default|strict|open) or a PATH.toml.",
)
@click.option("--keep", is_flag=True, help="Keep the throwaway data directory afterwards.")
def demo_command(persona: str, policy: str, keep: bool) -> None:
    """A local relay, six personas with some history, bots that answer, and the app (the
    moderator console as mia)."""
    rules = load_policy(policy)
    base = Path(tempfile.mkdtemp(prefix="agechat-demo-"))
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    click.echo(
        f"Starting a relay on {server} under the {rules.name!r} policy (data in {base}) "
        "and creating personas…",
        err=True,
    )
    relay = start_relay(base, port, policy)
    bots: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(seed(base / "profiles", server))
        for handle, role in MODERATORS.items():
            asyncio.run(change_role(base / "relay", handle, role, grant=True))
        others = [h for h in PERSONAS if h != persona and h not in MODERATORS]
        bots = subprocess.Popen(
            [sys.executable, "-m", "launcher.demo", str(base / "profiles"), *others],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=(base / "bots.log").open("ab"),
        )
        if persona in MODERATORS:
            time.sleep(1.2)  # the relay picks the role up within a second
            asyncio.run(run_console(base / "profiles", persona))
        else:
            demo_app(base / "profiles", persona, server, rules).run()
    finally:
        if bots is not None and bots.stdin is not None:
            bots.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                bots.wait(5)
            if bots.poll() is None:
                bots.kill()
        relay.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            relay.wait(10)
        if keep:
            click.echo(f"Demo data kept in {base}", err=True)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":  # the bots' process: python -m launcher.demo PROFILES HANDLE...
    asyncio.run(run_bots(Path(sys.argv[1]), sys.argv[2:]))
