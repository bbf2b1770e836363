"""Guardian links (docs/POLICY.md "Guardians", PROTOCOL.md §6.7): what each side sees, and
the words that tell a minor what their guardian can see.

An adult (the guardian) and someone under 18 (the ward) are linked only when both confirm.
What the link gives the guardian is the policy's ``[guardians]`` table; the sentences here
are built from it, so the relay's events and both clients say the same thing. Pure: no I/O,
no clock.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from protocol.policy import Guardians
from protocol.types import Handle, Time

Role = Literal["guardian", "ward"]
#: ``linked``: both confirmed. ``invite_sent``: you invited them, they haven't answered.
#: ``invite_received``: they invited you.
LinkEntryState = Literal["linked", "invite_sent", "invite_received"]


class WardContact(msgspec.Struct, frozen=True, kw_only=True):
    """One of the ward's contacts, as a guardian with `contacts` visibility sees it: who,
    their age band, and since when. Never a message, never a message count."""

    handle: Handle
    display_name: str
    band: str
    since: Time


class GuardianLink(msgspec.Struct, frozen=True, kw_only=True):
    """A link or an invitation, from the point of view of the account asking."""

    handle: Handle
    display_name: str
    #: What this account is to you: your ``guardian``, or your ``ward``.
    role: Role
    state: LinkEntryState
    #: When the link was confirmed, or the invitation made.
    since: Time
    #: Your ward's contacts, when you are their linked guardian and the policy's
    #: visibility is `contacts`; null otherwise.
    contacts: list[WardContact] | None = None


class GuardianApproval(msgspec.Struct, frozen=True, kw_only=True):
    """A new adult contact of a ward waiting for a guardian: shown to the ward's guardians
    (to decide) and to the ward (to know)."""

    ward: Handle
    contact: Handle
    contact_name: str
    contact_band: str
    requested_at: Time


class GuardianActivity(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened in a guardian link, for a moderator's case view."""

    guardian: Handle
    ward: Handle
    #: linked | unlinked | viewed_contacts | approval_requested | approved | declined |
    #: approval_cancelled | told_block | told_report
    event: str
    #: The other account it concerned (a contact, the one blocked), or "".
    about: str
    at: Time


class GuardianContext(msgspec.Struct, frozen=True, kw_only=True):
    """Guardian links around a case's subject (docs/MODERATION.md): who supervises the
    subject, whom the subject supervises, and the latest views, approvals and notices."""

    guardians: list[Handle] = msgspec.field(default_factory=list)
    wards: list[Handle] = msgspec.field(default_factory=list)
    pending_approvals: list[GuardianApproval] = msgspec.field(default_factory=list)
    activity: list[GuardianActivity] = msgspec.field(default_factory=list)


def ward_disclosure(rules: Guardians) -> list[str]:
    """What a guardian can see and do, told to the minor before and when they link, in
    words a 13-year-old follows."""
    lines = [
        "Your guardian can see who your contacts are, their age group and when each one "
        "started. Never your messages."
        if rules.visibility == "contacts"
        else "Your guardian can't see your contacts or your messages, only that you're linked."
    ]
    if rules.approvals == "adults_only":
        lines.append("A new adult contact has to wait until your guardian approves it.")
    if rules.notify_blocks_and_reports:
        lines.append(
            "Your guardian is told when you block or report someone (who, not why), and "
            "you're always shown what they were told."
        )
    if rules.lifts_pair_rules:
        lines.append(
            "You and your guardian can message each other even where this relay keeps adults "
            "and people under 18 apart."
        )
    lines.append("Either of you can unlink at any time, and it takes effect at once.")
    return lines


def guardian_disclosure(rules: Guardians) -> list[str]:
    """The same facts, told to the adult who is or would be the guardian."""
    lines = [
        "You can see who their contacts are, their age group and when each one started. "
        "Never their messages."
        if rules.visibility == "contacts"
        else "You can't see their contacts or their messages, only that you're linked."
    ]
    if rules.approvals == "adults_only":
        lines.append("Their new adult contacts wait for your approval.")
    if rules.notify_blocks_and_reports:
        lines.append("You're told when they block or report someone (who, not why).")
    lines.append("They see everything you're told about them, and either of you can unlink.")
    return lines
