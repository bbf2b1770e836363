"""ModerationConsole: a Textual app for moderators, given a moderation backend.

Queues (with the overview) → a queue's cases → one case (evidence hidden until revealed)
→ a decision. Every request goes through the backend in a worker; a refusal shows the
relay's sentence and code where it happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen

from client.cli import printable
from client.tui.moderation.backend import ModerationBackend
from client.tui.moderation.screens.queues import QueuesScreen


class ModerationConsole(App[None]):
    CSS_PATH = Path(__file__).with_name("console.tcss")
    TITLE = "agechat moderation"
    BINDINGS = [
        # Textual's own Ctrl+Q is hidden from the footer: this one shows, on every screen.
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Leave the console"),
    ]

    def __init__(self, backend: ModerationBackend, moderator: str) -> None:
        super().__init__()
        self.backend = backend
        self.moderator = moderator

    def on_mount(self) -> None:
        self.title = f"agechat moderation — @{printable(self.moderator)}"
        self.push_screen(QueuesScreen(self.backend))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, ModalScreen):
            return
        # Each of the screen's keys, found by name in the palette (Ctrl+P).
        for binding in screen.BINDINGS:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if screen.check_action(binding.action, ()) is False:
                continue
            key = binding.key_display or binding.key.split(",")[0]
            yield SystemCommand(
                binding.description,
                f"{binding.tooltip} ({key})" if binding.tooltip else key,
                partial(screen.run_action, binding.action),
            )
