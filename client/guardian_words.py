"""Guardian links around a case's subject, in lines a reviewer reads (the `agechat mod case`
text and the moderator console share them). Names and handles are escaped by the caller's
``printable``; events come from the relay's own vocabulary (PROTOCOL.md §6.5)."""

from __future__ import annotations

from collections.abc import Callable

from protocol.guardians import GuardianContext

EVENT_WORDS = {
    "linked": "linked",
    "unlinked": "unlinked",
    "viewed_contacts": "viewed the ward's contacts",
    "approval_requested": "was asked to approve",
    "approved": "approved",
    "declined": "declined",
    "approval_cancelled": "approval cancelled:",
    "told_block": "was told the ward blocked",
    "told_report": "was told the ward reported",
}


def guardian_lines(context: GuardianContext, printable: Callable[[str], str]) -> list[str]:
    """Empty when the subject has no guardian links and none ever happened."""
    lines: list[str] = []
    if context.guardians:
        lines.append("Guardians: " + ", ".join(f"@{printable(g)}" for g in context.guardians))
    if context.wards:
        lines.append("Guardian of: " + ", ".join(f"@{printable(w)}" for w in context.wards))
    for a in context.pending_approvals:
        lines.append(f"Waiting for a guardian: @{printable(a.ward)} + @{printable(a.contact)}")
    for e in context.activity:
        what = EVENT_WORDS.get(e.event, printable(e.event))
        about = f" @{printable(e.about)}" if e.about and e.event != "unlinked" else ""
        why = f" ({printable(e.about)})" if e.event == "unlinked" and e.about else ""
        when = e.at.strftime("%Y-%m-%d %H:%M")
        lines.append(
            f"  {when} @{printable(e.guardian)} → @{printable(e.ward)}: {what}{about}{why}"
        )
    return lines
