"""Ask for the passphrase that unlocks this profile's keys."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static

from client.errors import ClientError
from client.session import ChatSession, ProfileSessions


class UnlockScreen(Screen[ChatSession]):
    TITLE = "agechat — unlock"

    def __init__(self, sessions: ProfileSessions) -> None:
        super().__init__()
        self.sessions = sessions

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="unlock", classes="form"):
            yield Label("Passphrase for this profile")
            yield Input(password=True, id="passphrase")
            yield Static("", id="unlock-error")
        yield Footer()

    @on(Input.Submitted)
    @work(exclusive=True)
    async def _unlock(self, event: Input.Submitted) -> None:
        self.query_one("#unlock-error", Static).update(Text("Unlocking…"))
        try:
            session = await self.sessions.open(event.value)
        except ClientError as exc:
            self.query_one("#unlock-error", Static).update(Text(f"{exc.message} [{exc.code}]"))
            return
        self.dismiss(session)
