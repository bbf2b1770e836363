"""One line under a screen's title for what just happened: an outcome or a refusal."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from client.cli import printable
from client.errors import ClientError


class StatusLine(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, classes="status")

    def error(self, exc: ClientError) -> None:
        """The relay's sentence and its code (the code is what the docs and scripts use),
        as literal text with control characters escaped."""
        self.set_classes("status -error")
        self.update(Text(printable(f"{exc.message} [{exc.code}]")))

    def info(self, text: str) -> None:
        """An outcome, as literal text (it may quote the relay's words)."""
        self.set_classes("status -info")
        self.update(Text(printable(text)))

    def clear(self) -> None:
        self.set_classes("status")
        self.update("")
