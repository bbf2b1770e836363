"""A safety notice for a minor: hard to miss, easy to dismiss (Enter or click ✕)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Static

from client.explain import NOTICE_TITLES


class NoticeBanner(Horizontal):
    class Dismissed(Message):
        def __init__(self, banner: NoticeBanner) -> None:
            super().__init__()
            self.banner = banner

    def __init__(self, code: str, text: str) -> None:
        super().__init__(classes="notice")
        self.code = code
        self.text = text

    def compose(self) -> ComposeResult:
        title = NOTICE_TITLES.get(self.code, "Notice")
        # Text, not markup: the notice names other people, whose names are not ours to style.
        yield Static(Text.assemble((f"⚠ {title}\n", "bold"), self.text), classes="notice-text")
        yield Button("Got it", id="dismiss-notice", variant="warning")

    @on(Button.Pressed, "#dismiss-notice")
    def _dismiss(self) -> None:
        # The screen records the dismissal, then removes the banner: once it's gone, it
        # stays gone.
        self.post_message(self.Dismissed(self))
