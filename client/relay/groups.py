"""Groups from the client's side (PROTOCOL.md §6.8): create, add, remove, leave, rename,
answer an invitation, list. Each is one request and its answer; the relay decides who may
join and tells every member (its lines arrive in the group's conversation like messages).
Sending to a group goes through the outbox like any message (``RelayClient.send_group``)."""

from __future__ import annotations

from client.errors import ClientError
from client.relay.connection import Connection
from client.relay.outbox import new_message_id
from protocol.frames import Done, Frame
from protocol.group_frames import (
    AddOutcome,
    GroupAdd,
    GroupCreate,
    GroupLeave,
    GroupList,
    GroupRemove,
    GroupRename,
    GroupRespond,
    GroupResult,
    GroupsResult,
    GroupView,
)


class Groups:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def _ask(self, frame: Frame, rid: str, answer: type) -> object:
        reply = await self._connection.request(frame, rid)
        if not isinstance(reply, answer):
            raise ClientError("protocol_error", f"expected {answer.__name__}, got {reply!r}")
        return reply

    async def _done(self, frame: Frame, rid: str) -> str:
        reply = await self._ask(frame, rid, Done)
        assert isinstance(reply, Done)
        return reply.outcome

    async def create(self, name: str, members: list[str]) -> tuple[GroupView, list[AddOutcome]]:
        """A new group with you as admin; each member joins, is invited or is refused."""
        rid = new_message_id()
        reply = await self._ask(GroupCreate(rid=rid, name=name, members=members), rid, GroupResult)
        assert isinstance(reply, GroupResult)
        return reply.group, reply.outcomes

    async def add(self, group: str, handle: str) -> tuple[GroupView, AddOutcome]:
        rid = new_message_id()
        reply = await self._ask(GroupAdd(rid=rid, group=group, handle=handle), rid, GroupResult)
        assert isinstance(reply, GroupResult)
        return reply.group, reply.outcomes[0]

    async def remove(self, group: str, handle: str) -> str:
        rid = new_message_id()
        return await self._done(GroupRemove(rid=rid, group=group, handle=handle), rid)

    async def leave(self, group: str) -> str:
        rid = new_message_id()
        return await self._done(GroupLeave(rid=rid, group=group), rid)

    async def rename(self, group: str, name: str) -> str:
        rid = new_message_id()
        return await self._done(GroupRename(rid=rid, group=group, name=name), rid)

    async def respond(self, group: str, accept: bool) -> str:
        """Accept (``joined``) or decline (``declined``) an invitation."""
        rid = new_message_id()
        return await self._done(GroupRespond(rid=rid, group=group, accept=accept), rid)

    async def list(self) -> list[GroupView]:
        rid = new_message_id()
        reply = await self._ask(GroupList(rid=rid), rid, GroupsResult)
        assert isinstance(reply, GroupsResult)
        return reply.groups

    async def find(self, ref: str) -> GroupView:
        """One of your groups by id or name (any case); an ambiguous name is refused
        (``ambiguous_group``), never guessed."""
        views = await self.list()
        for view in views:
            if view.id == ref:
                return view
        named = [v for v in views if v.name.casefold() == ref.casefold()]
        if len(named) == 1:
            return named[0]
        if named:
            ids = ", ".join(v.id for v in named)
            raise ClientError("ambiguous_group", f"Several of your groups are called that: {ids}.")
        raise ClientError("unknown_group")

    async def get(self, group: str) -> GroupView:
        """One of your groups, as the relay has it now."""
        for view in await self.list():
            if view.id == group:
                return view
        raise ClientError("unknown_group")
