"""The conversation list: requests first, then chats, each with its mode in words."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import ListItem, ListView, Static

from client.explain import MODE_BADGE
from client.session import Conversation

STATE_NOTE = {
    "incoming_request": "wants to connect",
    "outgoing_request": "request sent",
    "declined": "declined your request",
    "declined_by_you": "you declined",
    "blocked": "blocked",
    "stranger": "not a contact",
}


def describe(c: Conversation) -> Text:
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
