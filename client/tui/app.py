"""AgechatApp: given a way to open the profile's session, it shows onboarding, unlock or
the main screen. Everything it does goes through the client library (ChatSession)."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from client.errors import ClientError
from client.session import ChatSession, ProfileSessions
from client.tui.screens.main import MainScreen
from client.tui.screens.onboarding import OnboardingScreen
from client.tui.screens.unlock import UnlockScreen

DEFAULT_SERVER = "http://127.0.0.1:8765"


class AgechatApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "agechat"

    def __init__(
        self,
        sessions: ProfileSessions | None = None,
        *,
        session: ChatSession | None = None,
        passphrase: str | None = None,
        default_server: str = DEFAULT_SERVER,
    ) -> None:
        super().__init__()
        self.sessions = sessions
        self.session = session
        self.passphrase = passphrase
        self.default_server = default_server

    def on_mount(self) -> None:
        if self.session is not None:
            self.push_screen(MainScreen(self.session))
        elif self.sessions is None:
            raise RuntimeError("AgechatApp needs a session or a way to open one")
        elif not self.sessions.has_account:
            self.push_screen(
                OnboardingScreen(self.sessions, self.default_server), self._session_ready
            )
        elif self.passphrase:
            self._open_with_passphrase(self.passphrase)
        else:
            self.push_screen(UnlockScreen(self.sessions), self._session_ready)

    @work
    async def _open_with_passphrase(self, passphrase: str) -> None:
        assert self.sessions is not None
        try:
            session = await self.sessions.open(passphrase)
        except ClientError as exc:
            self.notify(f"{exc.message} [{exc.code}]", severity="error")
            self.push_screen(UnlockScreen(self.sessions), self._session_ready)
            return
        self._session_ready(session)

    def _session_ready(self, session: ChatSession | None) -> None:
        if session is not None:
            self.session = session
            self.push_screen(MainScreen(session))

    def get_system_commands(self, screen: Screen) -> list[SystemCommand]:  # type: ignore[override]
        commands = list(super().get_system_commands(screen))
        if isinstance(screen, MainScreen):
            for key, action, label, help_text in (
                ("find", screen.action_find, "Find people", "Search and ask to connect"),
                ("account", screen.action_account, "Account", "Your age group and what it means"),
                ("report", screen.action_report, "Report", "Report the open conversation"),
                ("block", screen.action_block, "Block or unblock", "The open conversation"),
            ):
                del key
                commands.append(SystemCommand(label, help_text, action))
        return commands
