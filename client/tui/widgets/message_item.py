"""One line of a conversation: a message with its delivery state, or a system line.

A message with a file gets a 📎 line (name, size, type, and what became of it). The file
is never shown inline, whatever its type: clicking the line (or Ctrl+G) opens the chat's
files, to save a copy or see where it is kept.
"""

from __future__ import annotations

from datetime import UTC

from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from client.attachments import LocalAttachment
from client.cli import printable
from client.errors import error_message
from client.history import HistoryMessage

STATE_MARK = {
    "pending": "sending…",
    "sent": "sent ✓",
    "delivered": "delivered ✓✓",
    "failed": "not sent ✗",
    "received": "",
}

#: What became of a file, when it isn't simply saved on this device (client/cli.py says
#: the same in `inbox`).
ATTACHMENT_STATE = {
    "unavailable": "unavailable: no longer on the relay",
    "corrupt": "corrupt: damaged in transit, not saved",
}

INDENT = " " * len("00:00  ")  # under the text, past the time


def human_size(size: int) -> str:
    """Bytes as people read them: "512 bytes", "1.2 MB" (powers of 1000, as file managers
    show them)."""
    if size < 1000:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if round(value) < 1000 or unit == "TB":
            return f"{value:.1f} {unit}" if round(value, 1) < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def attachment_text(attachment: LocalAttachment) -> Text:
    """📎 name  size · type, and its state in words when it isn't ready. The name and type
    came from the sender: plain text with control characters escaped, never markup."""
    line = Text("📎 ")
    line.append(printable(attachment.name), style="bold")
    line.append(f"  {human_size(attachment.size)} · {printable(attachment.type)}", style="dim")
    if attachment.state in ATTACHMENT_STATE:
        line.append(f"  {ATTACHMENT_STATE[attachment.state]}", style="bold red")
    return line


def render_message(message: HistoryMessage, me: str, reason: str | None = None) -> Text:
    when = (message.sent_at or message.created_at).astimezone(UTC).strftime("%H:%M")
    if message.kind != "message":
        return Text.assemble((f"{when}  ", "dim"), (f"— {message.body}", "italic"))
    mine = message.sender == me
    who = "you" if mine else message.sender
    line = Text.assemble((f"{when}  ", "dim"), (f"{who}: ", "bold" if mine else "bold cyan"))
    line.append(message.body)  # appended as plain text: no markup from other people
    if message.attachment is not None:
        if message.body:
            line.append("\n" + INDENT)
        line.append_text(attachment_text(message.attachment))
    if mine and message.state in STATE_MARK:
        mark = STATE_MARK[message.state]
        if message.state == "pending" and message.attachment is not None:
            mark = "uploading…"  # until the relay has the file and the message
        if message.state == "failed":
            why = reason or message.error_text or error_message(message.error_code or "refused")
            mark = f"{mark} {why}"
        line.append(f"  {mark}", style="red" if message.state == "failed" else "dim")
    if message.request and not mine:
        line.append("  (message request)", style="yellow")
    return line


class MessageItem(Static):
    """Renders one HistoryMessage; ``update_message`` refreshes its delivery state."""

    class AttachmentClicked(Message):
        """A click on a line with a file: the screen offers to save it or show where it is."""

        def __init__(self, message: HistoryMessage) -> None:
            super().__init__()
            self.message = message

    def __init__(self, message: HistoryMessage, me: str, reason: str | None = None) -> None:
        classes = (
            "system"
            if message.kind != "message"
            else ("mine" if message.sender == me else "theirs")
        )
        super().__init__(render_message(message, me, reason), classes=classes)
        self.message = message
        self.me = me
        self.set_class(message.attachment is not None, "with-file")

    def update_message(self, message: HistoryMessage, reason: str | None = None) -> None:
        self.message = message
        self.set_class(message.attachment is not None, "with-file")
        self.update(render_message(message, self.me, reason))

    def on_click(self) -> None:
        if self.message.attachment is not None:
            self.post_message(self.AttachmentClicked(self.message))
