"""What the console needs from the client library: the moderation requests of
PROTOCOL.md §6.5, answered with the protocol's own structs.

The real one is ``client.relay.moderation.Moderation`` (``client.moderation``); the console
doesn't import it (the UI never touches the connection), so tests may pass any object
with these methods. Refusals raise ``client.errors.ClientError`` with a ``code`` and a
sentence (``forbidden``, ``queue_empty``, ``unknown_case``, …).
"""

from __future__ import annotations

from typing import Protocol

from protocol.moderation import (
    Action,
    CaseSummary,
    CaseView,
    EvidenceItem,
    ModOverviewResult,
    QueueSummary,
)


class ModerationBackend(Protocol):
    async def queues(self) -> list[QueueSummary]:
        """The queues this moderator may see, with pending counts."""
        ...

    async def queue(self, name: str) -> list[CaseSummary]:
        """A queue's open cases, highest score first, then oldest."""
        ...

    async def next_case(self, queue: str) -> CaseView:
        """The moderator's own open case in ``queue``, else the next unassigned one."""
        ...

    async def case(self, case_id: int) -> CaseView:
        """One case, its evidence without content."""
        ...

    async def reveal(self, case_id: int) -> list[EvidenceItem]:
        """The case's evidence with its text (the relay records each reveal)."""
        ...

    async def decide(self, case_id: int, action: Action, note: str) -> str:
        """Act on the case's subject; returns the outcome word (``restricted``, …)."""
        ...

    async def preview_escalation(self, case_id: int, note: str) -> str:
        """The CyberTipline draft escalating would write (XML), written nowhere; audited."""
        ...

    async def overview(self) -> ModOverviewResult:
        """Pending by queue, decisions by moderator and action, median time to decision."""
        ...
