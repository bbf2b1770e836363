"""AgechatApp: given a way to open the profile's session, it shows onboarding, unlock or
the main screen. Everything it does goes through the client library (ChatSession)."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from client.errors import ClientError
from client.session import ChatSession, ProfileSessions
from client.tui.screens.dialogs import HelpDialog, Intro
from client.tui.screens.main import MainScreen
from client.tui.screens.onboarding import OnboardingScreen
from client.tui.screens.unlock import UnlockScreen

DEFAULT_SERVER = "http://127.0.0.1:8765"


class AgechatApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "agechat"
    BINDINGS = [
        # Textual's own Ctrl+Q is hidden from the footer (and, being a priority binding,
        # hides any screen's): this one shows, on every screen.
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Leave agechat"),
        # Textual's Keys panel has no key to close it.
        Binding("escape", "hide_help_panel", "Close the keys panel", show=False),
    ]

    def __init__(
        self,
        sessions: ProfileSessions | None = None,
        *,
        session: ChatSession | None = None,
        passphrase: str | None = None,
        default_server: str = DEFAULT_SERVER,
        intro: Intro | None = None,
    ) -> None:
        super().__init__()
        self.sessions = sessions
        self.session = session
        self.passphrase = passphrase
        self.default_server = default_server
        self.intro = intro  # shown once the main screen is up, and again with F1

    def on_mount(self) -> None:
        if self.session is not None:
            self._show_main(self.session)
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
            self._show_main(session)

    def _show_main(self, session: ChatSession) -> None:
        self.push_screen(MainScreen(session))
        if self.intro is not None:
            self.push_screen(HelpDialog(self.intro))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "hide_help_panel":
            return bool(self.screen.query("HelpPanel"))  # otherwise Esc is someone else's
        return True

    def get_system_commands(self, screen: Screen) -> list[SystemCommand]:  # type: ignore[override]
        commands = list(super().get_system_commands(screen))
        if isinstance(screen, MainScreen):
            # Everything the main screen's keys do, found by name in the palette (some of
            # these keys are not in the footer, which has room for the essentials only).
            for label, help_text, action in (
                ("Find people", "Search and ask to connect (Ctrl+F)", screen.action_find),
                ("Conversations", "Move to your conversations (Ctrl+L)", screen.action_chats),
                ("Account", "Your age group and what it means (Ctrl+O)", screen.action_account),
                ("Report", "Report the open conversation (Ctrl+R)", screen.action_report),
                ("Block or unblock", "The open conversation (Ctrl+B)", screen.action_block),
                ("Attach a file", "Send a file in the open chat (Ctrl+T)", screen.action_attach),
                (
                    "Files",
                    "The open chat's files: save a copy, show where one is kept (Ctrl+G)",
                    screen.action_files,
                ),
                (
                    "Safety number",
                    "Compare keys with the person in the open chat (Ctrl+S)",
                    screen.action_safety_number,
                ),
                ("New group", "Start a group chat (F2)", screen.action_new_group),
                (
                    "Group members",
                    "In a group chat: who is in it and why its mode; add, remove, block, "
                    "report, leave (Ctrl+G)",
                    screen.action_members,
                ),
                ("Help", "The intro and the keys (F1)", screen.action_help),
            ):
                commands.append(SystemCommand(label, help_text, action))
        return commands
