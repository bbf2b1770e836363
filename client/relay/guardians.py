"""Guardian links from the client's side (PROTOCOL.md §6.7): invite, accept, unlink, list,
and a guardian's answer to a ward's new adult contact. Each is one request and its answer;
the relay decides and tells both people (its events arrive like any other)."""

from __future__ import annotations

from dataclasses import dataclass

from client.errors import ClientError
from client.relay.connection import Connection
from client.relay.outbox import new_message_id
from protocol.frames import (
    Done,
    Frame,
    GuardianAccept,
    GuardianDecide,
    GuardianInvite,
    GuardianList,
    GuardiansResult,
    GuardianUnlink,
)
from protocol.guardians import GuardianApproval, GuardianLink
from protocol.policy import Guardians as GuardianRules


@dataclass(frozen=True, slots=True)
class GuardianView:
    """What `guardian_list` answered: the relay's rules for links (what a guardian sees),
    this account's links and invitations, and the approvals waiting."""

    rules: GuardianRules
    links: list[GuardianLink]
    approvals: list[GuardianApproval]


class Guardians:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def _done(self, frame: Frame, rid: str) -> str:
        reply = await self._connection.request(frame, rid)
        if not isinstance(reply, Done):
            raise ClientError("protocol_error", f"expected done, got {type(reply).__name__}")
        return reply.outcome

    async def invite(self, handle: str) -> str:
        """Ask ``handle`` to link (you are the guardian if you're the adult); ``invited``."""
        rid = new_message_id()
        return await self._done(GuardianInvite(rid=rid, handle=handle), rid)

    async def accept(self, handle: str) -> str:
        """Accept ``handle``'s invitation; ``linked``."""
        rid = new_message_id()
        return await self._done(GuardianAccept(rid=rid, handle=handle), rid)

    async def unlink(self, handle: str) -> str:
        """End the link with ``handle`` (``unlinked``), or withdraw or turn down an
        invitation (``cancelled``)."""
        rid = new_message_id()
        return await self._done(GuardianUnlink(rid=rid, handle=handle), rid)

    async def decide(self, ward: str, contact: str, approve: bool) -> str:
        """As ``ward``'s guardian, approve or decline their new adult contact ``contact``;
        ``approved`` or ``declined``."""
        rid = new_message_id()
        frame = GuardianDecide(rid=rid, ward=ward, contact=contact, approve=approve)
        return await self._done(frame, rid)

    async def view(self) -> GuardianView:
        rid = new_message_id()
        reply = await self._connection.request(GuardianList(rid=rid), rid)
        if not isinstance(reply, GuardiansResult):
            raise ClientError("protocol_error", f"expected guardians, got {type(reply).__name__}")
        return GuardianView(rules=reply.rules, links=reply.links, approvals=reply.approvals)
