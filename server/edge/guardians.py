"""Guardian-link frames on the WebSocket (PROTOCOL.md §6.7): each checks its target, then
asks the social service (server/social/guardians.py), which decides and tells people."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from protocol.frames import (
    Done,
    GuardianAccept,
    GuardianDecide,
    GuardianInvite,
    GuardianList,
    GuardiansResult,
    GuardianUnlink,
)
from protocol.policy import Decision
from server.app_keys import SOCIAL
from server.edge.session_base import SessionBase


class _Session(SessionBase, Protocol):
    async def refuse_decision(self, decision: Decision, ref: str) -> None: ...

    async def target_error(self, handle: str, *, counted: bool = False) -> str | None: ...


class GuardianHandlers:
    """One connection's guardian-link requests."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    @classmethod
    def table(cls) -> dict[type, Callable[[GuardianHandlers, Any], Awaitable[None]]]:
        """Frame type → handler, one table for every connection (server/edge/websocket.py)."""
        return {
            GuardianInvite: cls._on_invite,
            GuardianAccept: cls._on_accept,
            GuardianUnlink: cls._on_unlink,
            GuardianList: cls._on_list,
            GuardianDecide: cls._on_decide,
        }

    async def _answer(self, rid: str, decision: Decision, outcome: str) -> None:
        if decision.outcome == "refuse":
            await self._session.refuse_decision(decision, ref=rid)
        else:
            await self._session.send(Done(rid=rid, outcome=outcome))

    async def _target(self, rid: str, handle: str, *, counted: bool = False) -> bool:
        problem = await self._session.target_error(handle, counted=counted)
        if problem is not None:
            await self._session.refuse(problem, ref=rid)
            return False
        return True

    async def _on_invite(self, frame: GuardianInvite) -> None:
        # An invitation to a handle that doesn't exist counts as a lookup, as a request does.
        if not await self._target(frame.rid, frame.handle, counted=True):
            return
        service = self._session.app[SOCIAL].guardians
        decision = await service.invite(self._session.handle, frame.handle)
        # One to someone who blocked you looks sent (they never learn of it).
        await self._answer(frame.rid, decision, "invited")

    async def _on_accept(self, frame: GuardianAccept) -> None:
        if not await self._target(frame.rid, frame.handle):
            return
        service = self._session.app[SOCIAL].guardians
        decision = await service.accept(self._session.handle, frame.handle)
        await self._answer(frame.rid, decision, decision.reason)

    async def _on_unlink(self, frame: GuardianUnlink) -> None:
        if not await self._target(frame.rid, frame.handle):
            return
        service = self._session.app[SOCIAL].guardians
        decision = await service.unlink(self._session.handle, frame.handle)
        await self._answer(frame.rid, decision, decision.reason)

    async def _on_list(self, frame: GuardianList) -> None:
        service = self._session.app[SOCIAL].guardians
        links, approvals = await service.view(self._session.handle)
        await self._session.send(
            GuardiansResult(rid=frame.rid, rules=service.rules, links=links, approvals=approvals)
        )

    async def _on_decide(self, frame: GuardianDecide) -> None:
        for handle in (frame.ward, frame.contact):
            if not await self._target(frame.rid, handle):
                return
        service = self._session.app[SOCIAL].guardians
        decision = await service.decide(
            self._session.handle, frame.ward, frame.contact, frame.approve
        )
        await self._answer(frame.rid, decision, decision.reason)
