"""First run: relay, handle, name, birth date, passphrase — and, before anything is
created, what protections apply at that age, in plain words."""

from __future__ import annotations

from datetime import date

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from client.errors import ClientError
from client.explain import BAND_WORDS, protections
from client.session import ChatSession, ProfileSessions
from client.timeutil import utc_now
from protocol.policy import band


def parse_date(text: str) -> date | None:
    try:
        born = date.fromisoformat(text.strip())
    except ValueError:
        return None
    return born if born <= utc_now().date() else None


class OnboardingScreen(Screen[ChatSession]):
    """Dismissed with the new ChatSession once the relay accepted the account."""

    TITLE = "agechat — create your account"

    def __init__(self, sessions: ProfileSessions, default_server: str) -> None:
        super().__init__()
        self.sessions = sessions
        self.default_server = default_server

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="onboarding"):
            yield Static("Welcome to agechat. Tell us who you are.", classes="lead")
            with Horizontal(id="onboarding-columns"):
                with Vertical(classes="form"):
                    yield Label("Relay address")
                    yield Input(self.default_server, id="server")
                    yield Label("Handle (3–32 characters: a–z, 0–9, _)")
                    yield Input(
                        placeholder="e.g. maya_r",
                        id="handle",
                        restrict=r"[a-z0-9_]*",
                        max_length=32,
                    )
                    yield Label("Your name, as others see it")
                    yield Input(placeholder="e.g. Maya", id="name", max_length=64)
                    yield Label("Birth date (YYYY-MM-DD)")
                    yield Input(placeholder="e.g. 2011-04-30", id="birthdate", max_length=10)
                    yield Label("Passphrase (protects your keys on this device)")
                    yield Input(password=True, id="passphrase")
                    yield Button("Create account", id="create", variant="primary")
                    yield Static("", id="onboarding-error")
                yield Static("Enter your birth date to see what protects you.", id="protections")
        yield Footer()

    @on(Input.Changed, "#birthdate")
    def _show_protections(self, event: Input.Changed) -> None:
        born = parse_date(event.value)
        panel = self.query_one("#protections", Static)
        if born is None:
            panel.update(Text("Enter your birth date to see what protects you."))
            return
        b = band(born, utc_now().date())
        lines = "\n".join(f"• {line}" for line in protections(b))
        panel.update(Text(f"You'll be in the {BAND_WORDS[b]} age group. What that means:\n{lines}"))

    @on(Button.Pressed, "#create")
    @on(Input.Submitted)
    def _submit(self) -> None:
        self._create()

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value.strip()

    def _error(self, text: str) -> None:
        self.query_one("#onboarding-error", Static).update(Text(text))

    @work(exclusive=True)
    async def _create(self) -> None:
        born = parse_date(self._value("birthdate"))
        missing = [f for f in ("server", "handle", "name", "passphrase") if not self._value(f)]
        if missing:
            self._error(f"Please fill in: {', '.join(missing)}.")
            return
        if born is None:
            self._error("The birth date must be a real date in the past, like 2011-04-30.")
            return
        button = self.query_one("#create", Button)
        button.disabled = True
        self._error("Creating your keys and registering…")
        try:
            session = await self.sessions.create(
                server=self._value("server"),
                handle=self._value("handle"),
                display_name=self._value("name"),
                birthdate=born,
                passphrase=self.query_one("#passphrase", Input).value,
            )
        except ClientError as exc:
            self._error(f"{exc.message} [{exc.code}]")
            button.disabled = False
            return
        self.dismiss(session)
