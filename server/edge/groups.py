"""Group frames on the WebSocket (PROTOCOL.md §6.8): membership requests are answered by
the group service (server/groups/service.py); a `group_send` is checked, its copies queued
on the group commit at once, and answered `accepted` in order with the connection's other
sends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from protocol.frames import Accepted, Done
from protocol.group_frames import (
    GroupAdd,
    GroupCreate,
    GroupLeave,
    GroupList,
    GroupRemove,
    GroupRename,
    GroupRespond,
    GroupResult,
    GroupSend,
    GroupsResult,
)
from protocol.groups import group_conversation
from server.app_keys import CONFIG, GROUPS, QUOTA, SIGNALS
from server.delivery.records import StoredMessage
from server.edge.session_base import SessionBase
from server.groups.service import GroupRefused

log = logging.getLogger("agechat.relay.groups")


class _Session(SessionBase, Protocol):
    async def queue_answer(self, frame: Any, future: asyncio.Future[Any]) -> None: ...


class GroupHandlers:
    """One connection's group requests and group messages."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    @classmethod
    def table(cls) -> dict[type, Callable[[GroupHandlers, Any], Awaitable[None]]]:
        """Frame type → handler, one table for every connection (server/edge/websocket.py)."""
        return {
            GroupCreate: cls._on_create,
            GroupAdd: cls._on_add,
            GroupRemove: cls._on_remove,
            GroupLeave: cls._on_leave,
            GroupRename: cls._on_rename,
            GroupRespond: cls._on_respond,
            GroupList: cls._on_list,
            GroupSend: cls._on_send,
        }

    async def _done(self, rid: str, work: Awaitable[str]) -> None:
        try:
            outcome = await work
        except GroupRefused as refused:
            await self._session.refuse(refused.code, refused.detail, ref=rid)
            return
        await self._session.send(Done(rid=rid, outcome=outcome))

    async def _on_create(self, frame: GroupCreate) -> None:
        s = self._session
        view, outcomes = await s.app[GROUPS].create(s.handle, frame.name, frame.members)
        await s.send(GroupResult(rid=frame.rid, group=view, outcomes=outcomes))

    async def _on_add(self, frame: GroupAdd) -> None:
        s = self._session
        try:
            view, outcome = await s.app[GROUPS].add(s.handle, frame.group, frame.handle)
        except GroupRefused as refused:
            await s.refuse(refused.code, refused.detail, ref=frame.rid)
            return
        await s.send(GroupResult(rid=frame.rid, group=view, outcomes=[outcome]))

    async def _on_remove(self, frame: GroupRemove) -> None:
        s = self._session
        await self._done(frame.rid, s.app[GROUPS].remove(s.handle, frame.group, frame.handle))

    async def _on_leave(self, frame: GroupLeave) -> None:
        s = self._session
        await self._done(frame.rid, s.app[GROUPS].leave(s.handle, frame.group))

    async def _on_rename(self, frame: GroupRename) -> None:
        s = self._session
        await self._done(frame.rid, s.app[GROUPS].rename(s.handle, frame.group, frame.name))

    async def _on_respond(self, frame: GroupRespond) -> None:
        s = self._session
        await self._done(frame.rid, s.app[GROUPS].respond(s.handle, frame.group, frame.accept))

    async def _on_list(self, frame: GroupList) -> None:
        s = self._session
        await s.send(GroupsResult(rid=frame.rid, groups=s.app[GROUPS].list(s.handle)))

    async def _on_send(self, frame: GroupSend) -> None:
        s = self._session
        groups = s.app[GROUPS]
        try:
            fanout = await groups.fanout(s.handle, frame)
        except GroupRefused as refused:
            await s.refuse(refused.code, refused.detail, ref=frame.id)
            return
        quota = s.app[QUOTA]
        for copy in fanout.copies:  # every member's queue has room, or nothing is stored
            if quota.refusal(copy.sender, copy.recipient, len(copy.body.encode())) is not None:
                await s.refuse("quota_exceeded", f"@{copy.recipient}", ref=frame.id)
                return
        if fanout.resend:
            done: asyncio.Future[list[StoredMessage]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            await s.queue_answer(frame, done)
            return
        try:
            future = groups.submit(fanout)
        except RuntimeError:  # shutting down
            await s.refuse("internal_error", ref=frame.id)
            return
        await s.queue_answer(frame, future)


async def answer_group_send(
    session: _Session, frame: GroupSend, future: asyncio.Future[list[StoredMessage]]
) -> None:
    """Answer a queued `group_send` once every copy is stored (or was, for a resend)."""
    try:
        stored = await future
    except Exception:
        log.exception("storing a group message failed")
        await session.refuse("internal_error", ref=frame.id)
        return
    now: datetime = stored[0].sent_at if stored else session.app[CONFIG].clock()
    await session.send(
        Accepted(id=frame.id, conversation=group_conversation(frame.group), sent_at=now)
    )
    for copy in stored:  # each copy is a pair's message to the signals (docs/SIGNALS.md)
        session.app[SIGNALS].schedule(copy)
