"""Groups under the same age rules (PROTOCOL.md §6.8, POLICY.md "Groups").

Pure functions, like ``protocol.policy``: the relay gathers the facts and decides; the
client uses the same functions to explain. A group has one mode, from the same function as
a one-to-one conversation (``conversation_mode`` over every member's band). Adding someone
goes through every rule a direct contact does — adding a teen to a group is a well-known
way around direct-message limits — and then the group's own: its size, and what happens
when a minor would join an encrypted group.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec

from protocol.policy import (
    Band,
    ConversationMode,
    Decision,
    Facts,
    Policy,
    conversation_mode,
    is_minor,
    may_find,
    may_message,
    may_request,
)

#: Chosen by the relay at creation: 16 random bytes, URL-safe base64.
GroupId = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_-]{22}\Z")]
#: 1–64 characters, no control characters (like a display name).
GroupName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"\A[^\x00-\x1f\x7f-\x9f]+\Z")
]
#: A group message's id: shorter than a message id, so each member's copy id fits (§6.8).
GroupMessageId = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_-]{8,48}\Z")]
Role = Literal["admin", "member"]
#: `member`: in the group. `invited`: asked, hasn't answered (sees nothing of the group).
MemberState = Literal["member", "invited"]

PREFIX = "grp:"


def group_conversation(group: str) -> str:
    """The conversation id of a group: ``grp:<group id>``."""
    return f"{PREFIX}{group}"


def group_of(conversation: str) -> str | None:
    """The group id of a group conversation id, else None."""
    return conversation[len(PREFIX) :] if conversation.startswith(PREFIX) else None


def copy_id(message_id: str, recipient: str) -> str:
    """The id of one member's copy of a group message: the sender's id, a dash and 8
    characters of SHA-256(recipient). The same for every resend (so copies stay idempotent
    whatever the membership is then), distinct per member, at most 57 characters."""
    digest = hashlib.sha256(recipient.encode()).digest()
    return f"{message_id}-{base64.urlsafe_b64encode(digest[:6]).decode()}"


def group_mode(policy: Policy, bands: Iterable[Band]) -> ConversationMode:
    """The group's mode: the same function as a direct conversation, over every member."""
    return conversation_mode(policy, list(bands))


def _restricted(policy: Policy, f: Facts) -> bool:
    return f.actor_restricted_by_moderator or (policy.restriction.enabled and f.actor_restricted)


def may_add(
    policy: Policy,
    f: Facts,
    *,
    mode_now: ConversationMode,
    mode_after: ConversationMode,
    members: int,
) -> Decision:
    """May the actor (an admin of the group) add the target? ``allow`` (`joined`): they
    are connected and every rule a message between them obeys allows it; ``request``
    (`group_invite`): an invitation the target accepts or declines, where the rules would
    let the actor send them a contact request; ``drop``: the target blocked the actor (the
    actor is told it was sent, nothing reaches the target); else refused with a code.

    ``mode_now``/``mode_after``: the group's mode without and with the target, for the
    policy's `groups.minor_joins_e2ee` setting. ``members``: members and invitations now.
    """
    if members >= policy.groups.max_members:
        return Decision("refuse", "group_full")
    if f.actor_blocked_target:
        return Decision("refuse", "you_blocked")
    if is_minor(f.target) and _restricted(policy, f):
        return Decision(
            "refuse",
            "sender_restricted",
            "Your account can't add people under 18 to groups: it is restricted.",
        )
    if mode_now == "e2ee" and mode_after != "e2ee" and policy.groups.minor_joins_e2ee == "refuse":
        return Decision("refuse", "group_encrypted")
    if f.relationship == "connected":
        decision = may_message(policy, f)
        if decision.outcome in ("refuse", "drop"):
            return decision
        return Decision("allow", "joined")
    if f.relationship == "declined":
        return Decision("refuse", "request_declined")
    # Any other state (a pending request either way, none) is a new contact: the invitation
    # obeys what a contact request would, whatever request is already pending between them.
    decision = may_request(policy, msgspec.structs.replace(f, relationship="none"))
    if decision.outcome == "request":
        return Decision("request", "group_invite")
    return decision


def may_join(
    policy: Policy, *, mode_now: ConversationMode, mode_after: ConversationMode
) -> Decision:
    """May an invited account accept (the group's mode may have changed since)?"""
    if mode_now == "e2ee" and mode_after != "e2ee" and policy.groups.minor_joins_e2ee == "refuse":
        return Decision("refuse", "group_encrypted")
    return Decision("allow", "joined")


def visible_member(policy: Policy, f: Facts) -> bool:
    """Is this member shown to the viewer in the member list? Minors are listed to an
    adult only if the adult could find them in search (under `default`: connected)."""
    if not is_minor(f.target) or is_minor(f.actor):
        return True
    return f.relationship == "connected" or may_find(policy, f).allowed


def mode_line(mode: ConversationMode, why: str) -> str:
    """The system line every member sees when the group's mode changes."""
    if mode == "e2ee":
        return f"This group is now end-to-end encrypted: {why}."
    return f"This group is now visible to safety checks: {why}."
