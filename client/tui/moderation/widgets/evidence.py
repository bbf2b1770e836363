"""A case's evidence: who sent what to whom and when, its content hidden until revealed.

Reviewer wellness: the list shows the metadata of every item, and the text only of items
this screen has revealed (each reveal is a request the relay records in its audit log).
``hide()`` puts the content away again without asking the relay for anything.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from client.tui.moderation.render import evidence_text
from protocol.moderation import EvidenceItem, EvidenceRef


class EvidenceList(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._refs: list[EvidenceRef] = []
        self._revealed: dict[int, EvidenceItem] = {}

    @property
    def any_revealed(self) -> bool:
        return any(ref.id in self._revealed for ref in self._refs)

    @property
    def all_revealed(self) -> bool:
        """True once every item shows its text (evidence added since stays hidden)."""
        return all(ref.id in self._revealed for ref in self._refs)

    def compose(self) -> ComposeResult:
        yield Static("No evidence.", classes="empty")

    async def show(self, refs: list[EvidenceRef]) -> None:
        """The case's evidence; what was revealed on this screen stays revealed."""
        self._refs = list(refs)
        await self._render_items()

    async def reveal(self, items: list[EvidenceItem]) -> None:
        self._revealed.update({item.id: item for item in items})
        await self._render_items()

    async def hide(self) -> None:
        self._revealed.clear()
        await self._render_items()

    async def _render_items(self) -> None:
        await self.remove_children()
        if not self._refs:
            await self.mount(Static("No evidence.", classes="empty"))
            return
        await self.mount_all(
            Static(
                evidence_text(ref, self._revealed.get(ref.id)),
                classes="evidence -revealed" if ref.id in self._revealed else "evidence",
            )
            for ref in self._refs
        )
