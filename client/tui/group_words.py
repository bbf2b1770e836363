"""Groups in plain words (PROTOCOL.md §6.8, POLICY.md "Groups"): why a group has its mode,
what each member means for it, how many are in it, and what became of each person added.
Written so a 13-year-old can follow them; shared by the conversation list, the chat header
and the group dialogs (client/tui/screens/groups.py)."""

from __future__ import annotations

import re

from rich.text import Text

from client.cli import printable
from client.errors import error_message
from protocol.group_frames import AddOutcome, GroupMemberView, GroupView
from protocol.policy import Band, is_minor

HANDLE = re.compile(r"\A[a-z0-9_]{3,32}\Z")  # protocol.types.Handle
MAX_NAME = 64  # protocol.groups.GroupName


def quoted(name: str) -> str:
    return f"“{printable(name)}”"


def size_text(view: GroupView, *, short: bool = False) -> str:
    """How many are in it, as you can see them: "3 members", "2 members and 1 under 18 you
    can't see" (``short``: "2 members + 1 hidden"). The relay counts hidden people without
    saying whether they joined yet."""
    n = sum(m.state == "member" for m in view.members)
    text = "1 member" if n == 1 else f"{n} members"
    if view.hidden_members:
        hidden = view.hidden_members
        text += f" + {hidden} hidden" if short else f" and {hidden} under 18 you can't see"
    return text


def _minors_in(view: GroupView, me: Band) -> bool:
    listed = any(m.minor and m.state == "member" for m in view.members)
    return listed or view.hidden_members > 0 or is_minor(me)


def group_reason(view: GroupView | None, mode: str, me: Band) -> str:
    """The header's line: why this group has its mode, in words a 13-year-old follows."""
    if mode == "e2ee":
        if view is not None and view.state == "member" and not _minors_in(view, me):
            return (
                "End-to-end encrypted: everyone in this group is an adult. Only its members "
                "can read it — not even agechat's relay."
            )
        return "End-to-end encrypted: only the group's members can read it."
    if is_minor(me):
        return "Visible to safety checks, because you're under 18."
    if view is not None and view.state == "member" and not _minors_in(view, me):
        return "Visible to safety checks: this relay's rules don't encrypt this group."
    return "Visible to safety checks, because someone in this group is under 18."


def member_consequence(m: GroupMemberView, view: GroupView, me: str, refuse: bool) -> str:
    """What this member means for the group's mode. ``refuse``: the relay's policy refuses
    a minor joining an encrypted group (`groups.minor_joins_e2ee`)."""
    who = "You're" if m.handle == me else f"@{m.handle} is"
    if m.state == "invited":
        if not m.minor:
            return f"{who} invited. An adult joining doesn't change how the group is protected."
        if view.mode == "visible":
            return f"{who} under 18 and invited. The group is already visible to safety checks."
        if refuse:
            return (
                f"{who} under 18 and invited, but can't join while the group is end-to-end "
                "encrypted (this relay's rule)."
            )
        return (
            f"{who} under 18 and invited: if they join, this group stops being end-to-end "
            "encrypted and becomes visible to safety checks (everyone is told first)."
        )
    if m.minor:
        if view.mode == "visible":
            return f"{who} under 18, so this group is visible to safety checks."
        return f"{who} under 18, but this relay's rules encrypt the group anyway."
    if view.mode == "e2ee":
        return f"{who} an adult, so the group can stay end-to-end encrypted."
    return f"{who} an adult: not the reason this group is visible."


def member_text(m: GroupMemberView, me: str) -> Text:
    """Name, @handle and what they are in the group: you, admin, invited, under 18."""
    line = Text.assemble((printable(m.display_name), "bold"), f" @{m.handle}")
    tags = ["you"] if m.handle == me else []
    tags += ["admin"] if m.role == "admin" else []
    tags += ["invited"] if m.state == "invited" else []
    tags += ["under 18"] if m.minor else []
    if tags:
        line.append(f"  ({', '.join(tags)})", style="yellow" if m.minor else "dim")
    return line


def hidden_text(view: GroupView) -> str:
    """The people under 18 the relay doesn't show you, counted (POLICY.md "Groups")."""
    count = view.hidden_members
    people = "1 member under 18" if count == 1 else f"{count} members under 18"
    text = (
        f"{people} you can't see: the rules hide people under 18 from adults they aren't "
        "connected with."
    )
    listed_minor = any(m.minor and m.state == "member" for m in view.members)
    if view.mode == "visible" and not listed_minor:
        text += " That is why this group is visible to safety checks."
    return text


def outcome_text(o: AddOutcome) -> Text:
    """One person's outcome of an add, in words."""
    if o.outcome == "joined":
        return Text.assemble(("✓ ", "green"), f"@{o.handle} joined.")
    if o.outcome == "invited":
        return Text.assemble(("… ", "yellow"), f"@{o.handle} was invited: they accept or decline.")
    code = o.code or "refused"
    return Text.assemble(
        ("✗ ", "red"), f"@{o.handle} wasn't added: {error_message(code)} ", (f"[{code}]", "dim")
    )


def mode_sentence(view: GroupView, me: Band) -> Text:
    """The group's mode and why, in one sentence with the mode's mark."""
    mark = "🔒 " if view.mode == "e2ee" else "👀 "
    style = "bold green" if view.mode == "e2ee" else "bold yellow"
    return Text.assemble((mark + group_reason(view, view.mode, me), style))


def parse_handles(value: str) -> list[str] | str:
    """Handles typed comma-separated (``@`` optional), or why they can't be used."""
    handles = []
    for part in value.split(","):
        handle = part.strip().lstrip("@").lower()
        if not handle:
            continue
        if not HANDLE.match(handle):
            return f"“{printable(part.strip())}” isn't a handle. {error_message('invalid_handle')}"
        handles.append(handle)
    return list(dict.fromkeys(handles))
