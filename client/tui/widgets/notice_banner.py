"""A safety notice for a minor: hard to miss, easy to dismiss (Enter or click ✕). A notice
about the person in the chat (a grooming-risk notice, ``risk_*``) puts block and report one
key away: buttons that do what Ctrl+B and Ctrl+R do, with the key on them.

In a group chat the notice doesn't say which member it is about (the relay's notice names
nobody on the wire), so instead of Block and Report it offers Members (Ctrl+G), where each
member can be blocked or reported."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Static

from client.explain import notice_title


class NoticeBanner(Horizontal):
    class Dismissed(Message):
        def __init__(self, banner: NoticeBanner) -> None:
            super().__init__()
            self.banner = banner

    def __init__(self, code: str, text: str, *, in_group: bool = False) -> None:
        about = code.startswith("risk_")
        # With actions, the words take the full width and the buttons go in a row below.
        super().__init__(classes="notice with-actions" if about else "notice")
        self.code = code
        self.text = text
        self.about_this_person = about
        self.in_group = in_group

    def compose(self) -> ComposeResult:
        title = notice_title(self.code)
        # Text, not markup: the notice names other people, whose names are not ours to style.
        text = Static(Text.assemble((f"⚠ {title}\n", "bold"), self.text), classes="notice-text")
        got_it = Button("Got it", id="dismiss-notice", variant="warning")
        if not self.about_this_person:
            yield text
            yield got_it
            return
        yield text
        with Horizontal(classes="notice-actions"):
            if self.in_group:
                yield Button("Block or report: Members  Ctrl+G", id="notice-members")
            else:
                yield Button("Block  Ctrl+B", id="notice-block", variant="error")
                yield Button("Report  Ctrl+R", id="notice-report", variant="error")
            yield got_it

    @on(Button.Pressed, "#notice-members")
    async def _members(self) -> None:
        await self.run_action("screen.members")

    @on(Button.Pressed, "#notice-block")
    async def _block(self) -> None:
        # The screen's own action: the same confirmation as Ctrl+B, for the open chat (the
        # banner is shown only in the chat it is about).
        await self.run_action("screen.block")

    @on(Button.Pressed, "#notice-report")
    async def _report(self) -> None:
        await self.run_action("screen.report")

    @on(Button.Pressed, "#dismiss-notice")
    def _dismiss(self) -> None:
        # The screen records the dismissal, then removes the banner: once it's gone, it
        # stays gone.
        self.post_message(self.Dismissed(self))
