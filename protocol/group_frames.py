"""Group frames (PROTOCOL.md §6.8). Members of the client and relay frame unions in
``protocol.frames``; the rules they obey are in ``protocol.groups``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocol.frame_base import Frame
from protocol.groups import GroupId, GroupMessageId, GroupName, MemberState, Role
from protocol.types import Body, DisplayName, Handle, MessageId, Mode

#: Everyone but the creator, at most (the policy's `groups.max_members` may allow fewer).
MAX_GROUP_INVITEES = 255
RequestId = MessageId  # as in protocol.frames (which imports this module)
Commitment = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


# --- client → relay -------------------------------------------------------------------


class GroupCreate(Frame, tag="group_create"):
    """Create a group with you as its admin, adding ``members`` as `group_add` would."""

    rid: RequestId
    name: GroupName
    members: Annotated[list[Handle], msgspec.Meta(max_length=MAX_GROUP_INVITEES)] = []


class GroupAdd(Frame, tag="group_add"):
    """An admin adds ``handle``: they join, or are invited, or it is refused (§6.8.2)."""

    rid: RequestId
    group: GroupId
    handle: Handle


class GroupRemove(Frame, tag="group_remove"):
    """An admin removes a member (or withdraws an invitation)."""

    rid: RequestId
    group: GroupId
    handle: Handle


class GroupLeave(Frame, tag="group_leave"):
    rid: RequestId
    group: GroupId


class GroupRename(Frame, tag="group_rename"):
    rid: RequestId
    group: GroupId
    name: GroupName


class GroupRespond(Frame, tag="group_respond"):
    """Accept or decline an invitation."""

    rid: RequestId
    group: GroupId
    accept: bool


class GroupList(Frame, tag="group_list"):
    """Your groups and invitations."""

    rid: RequestId


class GroupCopy(msgspec.Struct, frozen=True, kw_only=True):
    """One member's copy of an `e2ee` group message: an envelope for that member's pairwise
    session, with its own franking commitment (§6.4), so it can be reported like a direct
    message."""

    to: Handle
    body: Body
    commitment: Commitment


class GroupSend(Frame, tag="group_send"):
    """A message to every other member. `visible`: ``body`` is the text and the relay makes
    the copies. `e2ee`: ``copies`` has one envelope per other member — exactly the members
    the relay has, or it answers `group_members_changed`."""

    id: GroupMessageId
    group: GroupId
    mode: Mode
    body: Body = ""
    copies: Annotated[list[GroupCopy], msgspec.Meta(max_length=MAX_GROUP_INVITEES)] = []


# --- relay → client -------------------------------------------------------------------


class GroupMemberView(msgspec.Struct, frozen=True, kw_only=True):
    handle: Handle
    display_name: DisplayName
    role: Role
    state: MemberState
    #: Under 18 (shown so the group's mode can be explained: "visible because …").
    minor: bool = False


class GroupView(msgspec.Struct, frozen=True, kw_only=True):
    id: GroupId
    name: GroupName
    mode: Mode
    #: Your own role and state in it (an `invited` view lists no members).
    role: Role
    state: MemberState
    members: list[GroupMemberView] = []
    #: Members under 18 not shown to you: an adult sees only minors they could find.
    hidden_members: int = 0
    invited_by: Handle | None = None


class AddOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one account named in `group_create` or `group_add`."""

    handle: Handle
    #: `joined`, `invited`, or `refused` with ``code``.
    outcome: Literal["joined", "invited", "refused"]
    code: str | None = None


class GroupResult(Frame, tag="group"):
    """The answer to `group_create` and `group_add`: the group now, and each outcome."""

    rid: RequestId
    group: GroupView
    outcomes: list[AddOutcome] = []


class GroupsResult(Frame, tag="groups"):
    """The answer to `group_list`."""

    rid: RequestId
    groups: list[GroupView]


GROUP_CLIENT_FRAMES = (
    GroupCreate,
    GroupAdd,
    GroupRemove,
    GroupLeave,
    GroupRename,
    GroupRespond,
    GroupList,
    GroupSend,
)
GROUP_RELAY_FRAMES = (GroupResult, GroupsResult)
