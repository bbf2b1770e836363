"""`agechat guardian …`: guardian links from the command line (docs/POLICY.md "Guardians").

A link is made by one side inviting and the other accepting; the adult is the guardian, the
one under 18 the ward. Either unlinks, at once. With ``--json`` each command prints one
object (times ISO 8601, UTC); a refusal is the usual ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import Any

import click
import msgspec

from client.cli import Options, command, connected_client, emit, iso, printable
from client.explain import BAND_WORDS
from client.profile import Profile
from client.relay.guardians import GuardianView
from client.timeutil import utc_now
from protocol.guardians import GuardianLink, guardian_disclosure, ward_disclosure
from protocol.policy import band, is_minor


def _json(value: object) -> Any:
    return msgspec.to_builtins(value)


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"  • {line}" for line in lines)


def _disclosure(view: GuardianView, minor: bool) -> list[str]:
    return ward_disclosure(view.rules) if minor else guardian_disclosure(view.rules)


def _link_text(link: GuardianLink) -> str:
    who = f"@{link.handle} ({printable(link.display_name)})"
    since = (iso(link.since) or "")[:16].replace("T", " ")
    if link.state == "invite_sent":
        return f"{who}: you invited them to be your {link.role} on {since}; waiting for them"
    if link.state == "invite_received":
        return (
            f"{who}: invited you on {since} to be their "
            f"{'ward' if link.role == 'guardian' else 'guardian'} — "
            f"`agechat guardian accept {link.handle}` or `agechat guardian unlink {link.handle}`"
        )
    text = f"{who}: your {link.role}, linked since {since}"
    if link.contacts is not None:
        lines = [
            f"    @{c.handle} ({printable(c.display_name)}), {BAND_WORDS.get(c.band, c.band)}, "
            f"since {(iso(c.since) or '')[:10]}"
            for c in link.contacts
        ] or ["    no contacts"]
        text += "\n  their contacts (never their messages):\n" + "\n".join(lines)
    return text


@click.group("guardian")
def guardian() -> None:
    """Guardian links between an adult and someone under 18: both must confirm."""


def _is_minor(options: Options) -> bool:
    """Whether this profile's account is under 18 today (the ward's words, or the guardian's)."""
    data = Profile.load(options.profile_dir).data
    return is_minor(band(data.birthdate, utc_now().date()))


@guardian.command("invite")
@click.argument("handle")
@command
async def guardian_invite(options: Options, handle: str) -> None:
    """Ask HANDLE to link with you (the adult of you two is the guardian). Nothing is linked
    until they accept."""
    minor = _is_minor(options)
    async with connected_client(options) as client:
        outcome = await client.guardians.invite(handle)
        view = await client.guardians.view()
    if minor:
        human = f"Invited @{handle} to be your guardian. If they accept:\n" + _bullets(
            ward_disclosure(view.rules)
        )
    else:
        human = (
            f"Invited @{handle} to link with you as their guardian. They're told what you "
            "would see, and nothing is linked until they accept."
        )
    emit(
        options,
        {"handle": handle, "outcome": outcome, "disclosure": _disclosure(view, minor)},
        human,
    )


@guardian.command("accept")
@click.argument("handle")
@command
async def guardian_accept(options: Options, handle: str) -> None:
    """Accept HANDLE's invitation: the link takes effect at once."""
    minor = _is_minor(options)
    async with connected_client(options) as client:
        outcome = await client.guardians.accept(handle)
        view = await client.guardians.view()
    lines = _disclosure(view, minor)
    if minor:
        human = f"@{handle} is now your guardian.\n" + _bullets(lines)
    else:
        human = f"You are now @{handle}'s guardian.\n" + _bullets(lines)
    emit(options, {"handle": handle, "outcome": outcome, "disclosure": lines}, human)


@guardian.command("list")
@command
async def guardian_list(options: Options) -> None:
    """Your guardians (or wards), invitations, and contacts waiting for a guardian's
    approval. A guardian sees their ward's contacts where the relay's policy allows it —
    never their messages."""
    minor = _is_minor(options)
    async with connected_client(options) as client:
        view = await client.guardians.view()
    lines = [_link_text(link) for link in view.links] or ["No guardian links or invitations."]
    if view.approvals:
        lines.append("")
        lines.append("Waiting for a guardian's approval:")
        for a in view.approvals:
            who = f"@{a.contact} ({printable(a.contact_name)}, {BAND_WORDS.get(a.contact_band)})"
            since = (iso(a.requested_at) or "")[:16].replace("T", " ")
            if a.ward == client.handle:
                lines.append(f"  your contact with {who}, since {since}")
            else:
                lines.append(
                    f"  @{a.ward} wants {who} as a contact, since {since} — "
                    f"`agechat guardian approve {a.ward} {a.contact}` or `… decline …`"
                )
    if any(link.state == "linked" for link in view.links):
        what = "What your guardian can see:" if minor else "What you can see as a guardian:"
        lines += ["", what, _bullets(_disclosure(view, minor))]
    emit(
        options,
        {
            "rules": _json(view.rules),
            "links": _json(view.links),
            "approvals": _json(view.approvals),
            "disclosure": _disclosure(view, minor),
        },
        "\n".join(lines),
    )


@guardian.command("unlink")
@click.argument("handle")
@command
async def guardian_unlink(options: Options, handle: str) -> None:
    """End the link with HANDLE at once (or withdraw or turn down an invitation)."""
    async with connected_client(options) as client:
        outcome = await client.guardians.unlink(handle)
    human = (
        f"Unlinked @{handle}: the link has ended."
        if outcome == "unlinked"
        else f"The invitation between you and @{handle} is withdrawn."
    )
    emit(options, {"handle": handle, "outcome": outcome}, human)


async def _decide(options: Options, ward: str, contact: str, approve: bool) -> None:
    async with connected_client(options) as client:
        outcome = await client.guardians.decide(ward, contact, approve)
    human = (
        f"Approved: @{ward} and @{contact} are connected now."
        if outcome == "approved"
        else f"Declined: @{ward} and @{contact} aren't connected."
    )
    emit(options, {"ward": ward, "contact": contact, "outcome": outcome}, human)


@guardian.command("approve")
@click.argument("ward")
@click.argument("contact")
@command
async def guardian_approve(options: Options, ward: str, contact: str) -> None:
    """As WARD's guardian, approve their new adult contact CONTACT (audited; WARD is told)."""
    await _decide(options, ward, contact, True)


@guardian.command("decline")
@click.argument("ward")
@click.argument("contact")
@command
async def guardian_decline(options: Options, ward: str, contact: str) -> None:
    """As WARD's guardian, decline their new adult contact CONTACT (audited; WARD is told)."""
    await _decide(options, ward, contact, False)
