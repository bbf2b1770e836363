"""One queue's open cases, highest score first, then oldest."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Label

from client.cli import printable
from client.errors import ClientError
from client.tui.moderation.backend import ModerationBackend
from client.tui.moderation.render import plain
from client.tui.moderation.screens.case import CaseScreen
from client.tui.moderation.widgets.status import StatusLine
from client.tui.moderation.widgets.tables import CaseTable


class CasesScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="Esc", tooltip="Back to the queues"),
        # Shown by the table, which has the focus; here for the command palette.
        Binding("enter", "open_case", "Open case", show=False, tooltip="Open the highlighted case"),
        Binding(
            "n,N",
            "next_case",
            "Next case",
            key_display="N",
            tooltip="Take the next case of this queue",
        ),
        Binding("f5", "refresh", "Refresh", key_display="F5", tooltip="Ask the relay again"),
    ]

    def __init__(self, backend: ModerationBackend, queue: str) -> None:
        super().__init__()
        self.backend = backend
        self.queue = queue

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(plain(f"Queue {self.queue}"), id="cases-title", classes="section-title")
        yield CaseTable(id="cases")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"queue {printable(self.queue)}"

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_refresh(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        status = self.query_one(StatusLine)
        try:
            cases = await self.backend.queue(self.queue)
        except ClientError as exc:
            status.error(exc)
            return
        self.query_one(CaseTable).show(cases)
        waiting = sum(1 for c in cases if c.assignee is None)
        self.query_one("#cases-title", Label).update(
            plain(f"Queue {self.queue}: {len(cases)} open, {waiting} unassigned")
        )
        if not cases:
            status.info("No open cases in this queue.")
        else:
            status.clear()

    @on(CaseTable.Chosen)
    def _chosen(self, event: CaseTable.Chosen) -> None:
        self.app.push_screen(CaseScreen(self.backend, event.case_id))

    def action_open_case(self) -> None:
        table = self.query_one(CaseTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self.app.push_screen(CaseScreen(self.backend, int(key)))

    def action_next_case(self) -> None:
        self._next_case()

    @work(exclusive=True, group="next")
    async def _next_case(self) -> None:
        try:
            view = await self.backend.next_case(self.queue)
        except ClientError as exc:
            self.query_one(StatusLine).error(exc)
            return
        self.app.push_screen(CaseScreen(self.backend, view.summary.id, view))
