"""The overview beside the queues: pending by queue, decisions by moderator and action,
median time from a case opening to its first decision."""

from __future__ import annotations

from textual.widgets import Static

from client.tui.moderation.render import overview_text
from protocol.moderation import ModOverviewResult


class OverviewPanel(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Loading the overview…", id=id)
        self.border_title = "Overview"

    def show(self, overview: ModOverviewResult) -> None:
        self.update(overview_text(overview))
