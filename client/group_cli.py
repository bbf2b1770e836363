"""`agechat group …`: groups from the command line (docs/POLICY.md "Groups").

GROUP is a group's id or its name (any case) among your groups. With ``--json`` each command
prints one object (times ISO 8601, UTC); a refusal is the usual ``{"error": {"code",
"message"}}`` and exit status 1. What a group says arrives with `agechat inbox` like any
message (its ``conversation`` is ``grp:<id>``).
"""

from __future__ import annotations

from typing import Any

import click
import msgspec

from client.cli import CONNECT_TIMEOUT, Options, command, connected_client, emit, iso, printable
from client.errors import ClientError
from client.relay import RelayClient
from protocol.group_frames import AddOutcome, GroupView
from protocol.groups import group_conversation

MODE_WORDS = {
    "e2ee": "end-to-end encrypted: everyone in it is an adult",
    "visible": "visible to safety checks: someone in it is under 18",
}


def _json(value: object) -> Any:
    return msgspec.to_builtins(value)


async def _find(client: RelayClient, group: str) -> GroupView:
    return await client.groups.find(group)


def _outcome_line(o: AddOutcome) -> str:
    if o.outcome == "refused":
        return f"@{o.handle}: not added [{o.code}]"
    return (
        f"@{o.handle}: {'joined' if o.outcome == 'joined' else 'invited (they accept or decline)'}"
    )


def _view_text(view: GroupView) -> str:
    head = f"“{printable(view.name)}” ({view.id}) — {MODE_WORDS[view.mode]}"
    if view.state == "invited":
        return f"{head}\n  @{view.invited_by} invited you: `agechat group accept {view.id}`"
    lines = [head]
    for m in view.members:
        extra = [m.role] if m.role == "admin" else []
        extra += ["invited"] if m.state == "invited" else []
        extra += ["under 18"] if m.minor else []
        tail = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"  @{m.handle} {printable(m.display_name)}{tail}")
    if view.hidden_members:
        lines.append(f"  and {view.hidden_members} member(s) under 18 you can't see")
    return "\n".join(lines)


@click.group("group")
def group() -> None:
    """Group conversations, under the same age rules as one-to-one chats."""


@group.command("create")
@click.argument("name")
@click.option("--members", default="", help="Handles to add, comma-separated.")
@command
async def group_create(options: Options, name: str, members: str) -> None:
    """Create a group called NAME with you as its admin, adding --members H,H: each joins
    (a contact), is invited (a stranger the rules let you ask) or is refused with a code."""
    handles = [h.strip().lstrip("@") for h in members.split(",") if h.strip()]
    async with connected_client(options) as client:
        view, outcomes = await client.groups.create(name, handles)
    human = "\n".join([f"Created {_view_text(view)}", *map(_outcome_line, outcomes)])
    emit(options, {"group": _json(view), "outcomes": _json(outcomes)}, human)


@group.command("add")
@click.argument("group_ref", metavar="GROUP")
@click.argument("handle")
@command
async def group_add(options: Options, group_ref: str, handle: str) -> None:
    """Add HANDLE to GROUP (admins only)."""
    async with connected_client(options) as client:
        view, outcome = await client.groups.add((await _find(client, group_ref)).id, handle)
    if outcome.outcome == "refused":
        raise ClientError(outcome.code or "refused")
    emit(options, {"group": _json(view), "outcome": _json(outcome)}, _outcome_line(outcome))


async def _done(options: Options, group_ref: str, action: str, *args: Any) -> None:
    async with connected_client(options) as client:
        view = await _find(client, group_ref)
        outcome = await getattr(client.groups, action)(view.id, *args)
    emit(
        options,
        {"group": view.id, "outcome": outcome},
        f"“{printable(view.name)}”: {outcome}.",
    )


@group.command("remove")
@click.argument("group_ref", metavar="GROUP")
@click.argument("handle")
@command
async def group_remove(options: Options, group_ref: str, handle: str) -> None:
    """Remove HANDLE from GROUP, or withdraw their invitation (admins only)."""
    await _done(options, group_ref, "remove", handle)


@group.command("leave")
@click.argument("group_ref", metavar="GROUP")
@command
async def group_leave(options: Options, group_ref: str) -> None:
    """Leave GROUP (or decline its invitation)."""
    await _done(options, group_ref, "leave")


@group.command("rename")
@click.argument("group_ref", metavar="GROUP")
@click.argument("name")
@command
async def group_rename(options: Options, group_ref: str, name: str) -> None:
    """Rename GROUP (admins only)."""
    await _done(options, group_ref, "rename", name)


@group.command("accept")
@click.argument("group_ref", metavar="GROUP")
@command
async def group_accept(options: Options, group_ref: str) -> None:
    """Accept an invitation to GROUP."""
    await _done(options, group_ref, "respond", True)


@group.command("decline")
@click.argument("group_ref", metavar="GROUP")
@command
async def group_decline(options: Options, group_ref: str) -> None:
    """Decline an invitation to GROUP (whoever invited you isn't told)."""
    await _done(options, group_ref, "respond", False)


@group.command("list")
@command
async def group_list(options: Options) -> None:
    """Your groups and invitations, with each one's mode and members."""
    async with connected_client(options) as client:
        views = await client.groups.list()
    human = "\n".join(map(_view_text, views)) if views else "No groups."
    emit(options, {"groups": _json(views)}, human)


@group.command("send")
@click.argument("group_ref", metavar="GROUP")
@click.argument("text")
@command
async def group_send(options: Options, group_ref: str, text: str) -> None:
    """Send TEXT to every other member of GROUP; exits 0 once the relay has stored it."""
    async with connected_client(options) as client:
        view = await _find(client, group_ref)
        message = await client.send_group(view.id, text)
        try:
            await client.wait_connected(CONNECT_TIMEOUT)
        except ClientError as exc:
            raise ClientError(
                exc.code, f"{exc.message} The message is kept in the outbox and sent next time."
            ) from None
        stored = await client.wait_accepted(message.msg_id)
    emit(
        options,
        {
            "id": stored.msg_id,
            "group": view.id,
            "conversation": group_conversation(view.id),
            "mode": stored.mode,
            "status": "stored",
            "sent_at": iso(stored.sent_at),
        },
        f"Sent to “{printable(view.name)}” (stored by the relay, {stored.mode} mode).",
    )
