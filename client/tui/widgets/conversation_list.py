"""The conversation list: requests and group invitations first, then chats and groups,
each with its mode in words."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import ListItem, ListView, Static

from client.cli import printable
from client.explain import MODE_BADGE
from client.session import Conversation
from client.tui.group_words import size_text

STATE_NOTE = {
    "incoming_request": "wants to connect",
    "outgoing_request": "request sent",
    "declined": "declined your request",
    "declined_by_you": "you declined",
    "blocked": "blocked",
    "stranger": "not a contact",
}


def describe_group(c: Conversation) -> Text:
    line = Text()
    if c.is_request:
        line.append("● invitation  ", style="bold yellow")
    line.append("👥 ")
    line.append(printable(c.display_name), style="bold")
    if c.unread:
        line.append(f"  ({c.unread} new)", style="bold magenta")
    view = c.group
    if c.state == "invited":
        who = f"@{view.invited_by} " if view is not None and view.invited_by else ""
        line.append(f"\n  {who}invited you", style="dim")
    elif c.state == "left":
        line.append("\n  you're not in it any more", style="dim")
    elif view is not None:
        line.append(f"\n  group · {size_text(view, short=True)}", style="dim")
    line.append("\n  ")
    line.append(MODE_BADGE.get(c.mode, c.mode), style="green" if c.mode == "e2ee" else "yellow")
    return line


def describe(c: Conversation) -> Text:
    if c.is_group:
        return describe_group(c)
    line = Text()
    if c.is_request:
        line.append("● request  ", style="bold yellow")
    line.append(c.display_name, style="bold")
    line.append(f" @{c.handle}", style="dim")
    if c.unread:
        line.append(f"  ({c.unread} new)", style="bold magenta")
    note = STATE_NOTE.get(c.state)
    if note:
        line.append(f"\n  {note}", style="dim")
    if c.restricted:
        line.append("\n  ⚠ restricted from contacting minors", style="bold red")
    line.append("\n  ")
    line.append(MODE_BADGE.get(c.mode, c.mode), style="green" if c.mode == "e2ee" else "yellow")
    return line


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Static(describe(conversation)))
        self.conversation = conversation


class ConversationList(ListView):
    """Rebuilt from ChatSession.conversations(); keeps the selection by handle."""

    async def show(self, conversations: list[Conversation], selected: str | None) -> None:
        await self.clear()
        await self.extend([ConversationItem(c) for c in conversations])
        for index, c in enumerate(conversations):
            if c.handle == selected:
                self.index = index
                break
