"""A moderator's requests (PROTOCOL.md §6.5), each signed over the connection's challenge.

The answers are the protocol's own structs (queues, case summaries, a case view, revealed
evidence, the overview): the CLI prints them as JSON and the console renders them.
"""

from __future__ import annotations

from typing import TypeVar

from client.errors import ClientError
from client.relay.connection import Connection
from client.relay.outbox import new_message_id
from protocol.frames import Done
from protocol.moderation import (
    PLACEHOLDER_SIGNATURE,
    Action,
    CaseSummary,
    CaseView,
    EvidenceItem,
    ModCase,
    ModCaseResult,
    ModCases,
    ModDecide,
    ModEvidence,
    ModNext,
    ModOverview,
    ModOverviewResult,
    ModPreview,
    ModPreviewResult,
    ModQueue,
    ModQueues,
    ModQueuesResult,
    ModRequest,
    ModReveal,
    QueueSummary,
)

T = TypeVar("T")


class Moderation:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def _ask(self, frame: ModRequest, answer: type[T]) -> T:
        reply = await self._connection.signed_request(frame)
        if not isinstance(reply, answer):
            raise ClientError("protocol_error", f"expected {answer.__name__}, got {reply!r:.80}")
        return reply

    async def queues(self) -> list[QueueSummary]:
        frame = ModQueues(rid=new_message_id(), signature=PLACEHOLDER_SIGNATURE)
        return (await self._ask(frame, ModQueuesResult)).queues

    async def queue(self, name: str) -> list[CaseSummary]:
        frame = ModQueue(rid=new_message_id(), queue=name, signature=PLACEHOLDER_SIGNATURE)
        return (await self._ask(frame, ModCases)).cases

    async def next_case(self, queue: str) -> CaseView:
        frame = ModNext(rid=new_message_id(), queue=queue, signature=PLACEHOLDER_SIGNATURE)
        return (await self._ask(frame, ModCaseResult)).case

    async def case(self, case_id: int) -> CaseView:
        frame = ModCase(rid=new_message_id(), case_id=case_id, signature=PLACEHOLDER_SIGNATURE)
        return (await self._ask(frame, ModCaseResult)).case

    async def reveal(self, case_id: int) -> list[EvidenceItem]:
        frame = ModReveal(rid=new_message_id(), case_id=case_id, signature=PLACEHOLDER_SIGNATURE)
        return (await self._ask(frame, ModEvidence)).items

    async def decide(self, case_id: int, action: Action, note: str = "") -> str:
        frame = ModDecide(
            rid=new_message_id(),
            case_id=case_id,
            action=action,
            note=note,
            signature=PLACEHOLDER_SIGNATURE,
        )
        return (await self._ask(frame, Done)).outcome

    async def preview_escalation(self, case_id: int, note: str = "") -> str:
        """The CyberTipline draft `escalate` would write now (XML), written nowhere; the
        relay audits it like a reveal. Refused like `escalate` (`not_reportable`, …)."""
        frame = ModPreview(
            rid=new_message_id(), case_id=case_id, note=note, signature=PLACEHOLDER_SIGNATURE
        )
        return (await self._ask(frame, ModPreviewResult)).document

    async def overview(self) -> ModOverviewResult:
        frame = ModOverview(rid=new_message_id(), signature=PLACEHOLDER_SIGNATURE)
        return await self._ask(frame, ModOverviewResult)
