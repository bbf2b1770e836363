"""Tables of queues and of a queue's cases; Enter on a row announces the choice.

A DataTable reads a ``str`` cell as markup, so every cell is given as literal ``Text``
(``render.plain``: control characters escaped, no markup).
"""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from client.tui.moderation.render import plain, source, when
from protocol.moderation import CaseSummary, QueueSummary


class QueueTable(DataTable[str]):
    BINDINGS = [
        Binding("enter", "select_cursor", "Open queue", tooltip="List the queue's cases"),
    ]

    class Chosen(Message):
        def __init__(self, queue: str) -> None:
            super().__init__()
            self.queue = queue

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("Queue", "Priority", "Pending", "Unassigned")

    def show(self, queues: list[QueueSummary]) -> None:
        keep = self.highlighted_queue
        self.clear()
        for q in queues:
            self.add_row(
                plain(q.name),
                plain(str(q.priority)),
                plain(str(q.pending)),
                plain(str(q.unassigned)),
                key=q.name,
            )
        if keep is not None and keep in [q.name for q in queues]:
            self.move_cursor(row=self.get_row_index(keep))

    @property
    def highlighted_queue(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Chosen(event.row_key.value))


class CaseTable(DataTable[str]):
    BINDINGS = [Binding("enter", "select_cursor", "Open case", tooltip="Open the case")]

    class Chosen(Message):
        def __init__(self, case_id: int) -> None:
            super().__init__()
            self.case_id = case_id

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("Case", "Subject", "Score", "Findings", "Sources", "Assignee", "Opened")

    def show(self, cases: list[CaseSummary]) -> None:
        self.clear()
        for c in cases:
            self.add_row(
                plain(f"#{c.id}"),
                plain(f"@{c.subject}"),
                plain(f"{c.score:.2f}"),
                plain(str(c.findings)),
                plain(", ".join(source(s) for s in c.sources)),
                plain(f"@{c.assignee}" if c.assignee else "—"),
                plain(when(c.opened_at)),
                key=str(c.id),
            )

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Chosen(int(event.row_key.value)))
