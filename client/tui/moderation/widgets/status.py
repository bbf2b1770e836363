"""One line under a screen's title for what just happened: an outcome or a refusal."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from client.errors import ClientError


class StatusLine(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, classes="status")

    def error(self, exc: ClientError) -> None:
        """The relay's sentence and its code (the code is what the docs and scripts use)."""
        self.set_classes("status -error")
        self.update(Text(f"{exc.message} [{exc.code}]"))

    def info(self, text: str) -> None:
        self.set_classes("status -info")
        self.update(Text(text))

    def clear(self) -> None:
        self.set_classes("status")
        self.update("")
