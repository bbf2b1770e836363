"""One line of a conversation: a message with its delivery state, or a system line."""

from __future__ import annotations

from datetime import UTC

from rich.text import Text
from textual.widgets import Static

from client.errors import error_message
from client.history import HistoryMessage

STATE_MARK = {
    "pending": "sending…",
    "sent": "sent ✓",
    "delivered": "delivered ✓✓",
    "failed": "not sent ✗",
    "received": "",
}


def render_message(message: HistoryMessage, me: str, reason: str | None = None) -> Text:
    when = (message.sent_at or message.created_at).astimezone(UTC).strftime("%H:%M")
    if message.kind != "message":
        return Text.assemble((f"{when}  ", "dim"), (f"— {message.body}", "italic"))
    mine = message.sender == me
    who = "you" if mine else message.sender
    line = Text.assemble((f"{when}  ", "dim"), (f"{who}: ", "bold" if mine else "bold cyan"))
    line.append(message.body)  # appended as plain text: no markup from other people
    if mine and message.state in STATE_MARK:
        mark = STATE_MARK[message.state]
        if message.state == "failed":
            why = reason or message.error_text or error_message(message.error_code or "refused")
            mark = f"{mark} {why}"
        line.append(f"  {mark}", style="red" if message.state == "failed" else "dim")
    if message.request and not mine:
        line.append("  (message request)", style="yellow")
    return line


class MessageItem(Static):
    """Renders one HistoryMessage; ``update_message`` refreshes its delivery state."""

    def __init__(self, message: HistoryMessage, me: str, reason: str | None = None) -> None:
        classes = (
            "system"
            if message.kind != "message"
            else ("mine" if message.sender == me else "theirs")
        )
        super().__init__(render_message(message, me, reason), classes=classes)
        self.message = message
        self.me = me

    def update_message(self, message: HistoryMessage, reason: str | None = None) -> None:
        self.message = message
        self.update(render_message(message, self.me, reason))
