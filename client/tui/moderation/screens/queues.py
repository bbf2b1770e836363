"""The first screen: the queues this moderator may see, and the overview."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Label

from client.errors import ClientError
from client.tui.moderation.backend import ModerationBackend
from client.tui.moderation.screens.case import CaseScreen
from client.tui.moderation.screens.cases import CasesScreen
from client.tui.moderation.widgets.overview import OverviewPanel
from client.tui.moderation.widgets.status import StatusLine
from client.tui.moderation.widgets.tables import QueueTable


class QueuesScreen(Screen[None]):
    BINDINGS = [
        # Shown by the table, which has the focus; here for the command palette.
        Binding(
            "enter",
            "open_queue",
            "Open queue",
            show=False,
            tooltip="List the highlighted queue's cases",
        ),
        Binding(
            "n,N",
            "next_case",
            "Next case",
            key_display="N",
            tooltip="Take the next case of the queue",
        ),
        Binding("f5", "refresh", "Refresh", key_display="F5", tooltip="Ask the relay again"),
    ]

    def __init__(self, backend: ModerationBackend) -> None:
        super().__init__()
        self.backend = backend

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="queues-columns"):
            with Vertical(id="queues-pane"):
                yield Label("Queues", classes="section-title")
                yield QueueTable(id="queues")
                yield StatusLine(id="status")
            yield OverviewPanel(id="overview")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "queues"

    def on_screen_resume(self) -> None:
        self.action_refresh()  # coming back from a case: the counts may have changed

    def action_refresh(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        status = self.query_one(StatusLine)
        try:
            queues = await self.backend.queues()
            overview = await self.backend.overview()
        except ClientError as exc:
            status.error(exc)
            return
        self.query_one(QueueTable).show(queues)
        self.query_one(OverviewPanel).show(overview)
        if not queues:
            status.info("Your role sees no queues.")
        elif status.has_class("-error"):
            status.clear()

    @on(QueueTable.Chosen)
    def _chosen(self, event: QueueTable.Chosen) -> None:
        self.app.push_screen(CasesScreen(self.backend, event.queue))

    def action_open_queue(self) -> None:
        if (queue := self.query_one(QueueTable).highlighted_queue) is not None:
            self.app.push_screen(CasesScreen(self.backend, queue))

    def action_next_case(self) -> None:
        if (queue := self.query_one(QueueTable).highlighted_queue) is not None:
            self._next_case(queue)

    @work(exclusive=True, group="next")
    async def _next_case(self, queue: str) -> None:
        try:
            view = await self.backend.next_case(queue)
        except ClientError as exc:
            self.query_one(StatusLine).error(exc)
            return
        self.app.push_screen(CaseScreen(self.backend, view.summary.id, view))
