"""Moderation frames on the WebSocket (PROTOCOL.md §6.5): a signature check, the role
check, then the safety services. Every refusal has its code; nothing here trusts the
frame beyond what the moderator signed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from protocol import identity
from protocol.frames import Done, Frame
from protocol.moderation import (
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
    request_message,
)
from server.app_keys import CONFIG, HUB, RELAY_ID, SAFETY, STORE
from server.edge.session_base import SessionBase
from server.safety.actions import decide, preview_escalation
from server.safety.case_view import case_view
from server.safety.cybertip import Reporter
from server.safety.service import ModerationError, SignedRequest

log = logging.getLogger("agechat.relay.moderation")

#: A connection remembers this many request ids to refuse replays.
MAX_SEEN_RIDS = 10_000


class _Session(SessionBase, Protocol):
    nonce: bytes


class ModerationHandlers:
    """One connection's moderation requests."""

    def __init__(self, session: _Session) -> None:
        self._session = session
        self._seen: set[str] = set()

    @classmethod
    def table(cls) -> dict[type, Callable[[ModerationHandlers, Any], Awaitable[None]]]:
        """Frame type → handler, one table for every connection (server/edge/websocket.py)."""
        return {
            t: cls._handle
            for t in (
                ModQueues,
                ModQueue,
                ModNext,
                ModCase,
                ModReveal,
                ModDecide,
                ModOverview,
                ModPreview,
            )
        }

    async def _handle(self, frame: ModRequest) -> None:
        session = self._session
        app = session.app
        me = session.handle
        account = await app[STORE].get_account(me)
        message = request_message(app[RELAY_ID], session.nonce, me, frame)
        if account is None or not identity.verify(account.identity_key, message, frame.signature):
            await session.refuse("bad_signature", "the moderation request", ref=frame.rid)
            return
        if frame.rid in self._seen:
            await session.refuse("replayed_request", ref=frame.rid)
            return
        if len(self._seen) >= MAX_SEEN_RIDS:
            self._seen.clear()  # the nonce still binds requests to this connection
        self._seen.add(frame.rid)
        try:
            answer = await self._answer(frame)
        except ModerationError as exc:
            await session.refuse(exc.code, ref=frame.rid)
            return
        except Exception:
            # Answered with its ref, so the moderator's client doesn't wait for a timeout.
            # A decision's effects are written in one transaction (server/safety/actions.py),
            # so a failure here left nothing half done.
            log.exception("moderation request failed rid=%s", frame.rid)
            await session.refuse("internal_error", ref=frame.rid)
            return
        await session.send(answer)

    async def _answer(self, frame: ModRequest) -> Frame:
        app, me = self._session.app, self._session.handle
        safety = app[SAFETY]
        signed = SignedRequest(app[RELAY_ID], self._session.nonce, frame.rid, frame.signature)
        if isinstance(frame, ModQueues):
            return ModQueuesResult(rid=frame.rid, queues=await safety.queue_summaries(me))
        if isinstance(frame, ModQueue):
            cases = await safety.queue(me, frame.queue)
            return ModCases(rid=frame.rid, queue=frame.queue, cases=cases)
        if isinstance(frame, ModNext):
            case_id = await safety.next_case(me, frame.queue)
            if case_id is None:
                raise ModerationError("queue_empty")
            view = await case_view(safety, app[STORE], me, case_id)
            return ModCaseResult(rid=frame.rid, case=view)
        if isinstance(frame, ModCase):
            view = await case_view(safety, app[STORE], me, frame.case_id)
            return ModCaseResult(rid=frame.rid, case=view)
        if isinstance(frame, ModReveal):
            items = await safety.reveal(me, frame.case_id, signed)
            return ModEvidence(rid=frame.rid, case_id=frame.case_id, items=items)
        if isinstance(frame, ModDecide):
            config = app[CONFIG]
            outcome = await decide(
                safety,
                app[HUB],
                me,
                frame.case_id,
                frame.action,
                frame.note,
                signed,
                outbox=config.data_dir / "outbox",
                reporter=Reporter(config.reporter_name, config.reporter_email),
            )
            return Done(rid=frame.rid, outcome=outcome)
        if isinstance(frame, ModPreview):
            config = app[CONFIG]
            document = await preview_escalation(
                safety,
                me,
                frame.case_id,
                frame.note,
                signed,
                Reporter(config.reporter_name, config.reporter_email),
            )
            return ModPreviewResult(rid=frame.rid, case_id=frame.case_id, document=document)
        queues, decisions, median = await safety.overview(me)
        return ModOverviewResult(
            rid=frame.rid, queues=queues, decisions=decisions, median_seconds_to_decision=median
        )
