"""Ages over time: birth-date changes (self-service and admin), birthdays, and what a band
change means for each conversation (announced at once, with the pair's rules re-applied)."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING

import msgspec

from protocol import policy as rules
from protocol.policy import Band, Decision, Facts
from server.social.store import AccountInfo, pair_key

if TYPE_CHECKING:
    from server.social.service import SocialService

log = logging.getLogger("agechat.relay.policy")


async def change_birthdate(
    social: SocialService,
    handle: str,
    birthdate: date,
    declaration: bytes | None,
    *,
    by_admin: bool = False,
) -> Decision:
    today = social.today()
    if not by_admin:
        decision = rules.may_change_birthdate(
            social.policy, social.accounts[handle].birthdate, birthdate, today
        )
        if decision.outcome == "refuse":
            return decision
    async with social._lock:
        await social.social.set_birthdate(handle, birthdate, declaration)
        social.accounts[handle] = AccountInfo(social.accounts[handle].display_name, birthdate)
    await check_bands(social, [handle])
    await social.refresh_restriction(handle, notify=False)
    return Decision("allow", "birthdate_changed")


async def reload_accounts(social: SocialService) -> None:
    """Pick up birth dates changed outside this process (the admin command).

    Merged under the lock, so a registration or edit landing meanwhile isn't undone.
    """
    rows = await social.social.accounts()
    async with social._lock:
        for handle, name, born in rows:
            social.accounts[handle] = AccountInfo(name, born)
    await check_bands(social)
    for handle, *_ in rows:
        await social.refresh_restriction(handle, notify=False)


async def check_bands(social: SocialService, handles: list[str] | None = None) -> None:
    """Announce band changes (a birthday, an edit) and re-check what they affect.

    Pending requests the rules no longer allow between the new bands are cancelled.
    The account itself hears its new band; its contacts hear that its age group changed
    and what that means for the conversation, not the band itself.
    """
    for handle in handles if handles is not None else sorted(social.accounts):
        current = social.band_of(handle)
        previous = social._announced.get(handle)
        if previous == current:
            continue
        social._announced[handle] = current
        await social.social.set_announced_band(handle, current)
        if previous is None:
            continue
        log.info("age band changed handle=%s from=%s to=%s", handle, previous, current)
        await cancel_stale_requests(social, handle)
        await social.guardians.bands_changed(handle)  # a link is between an adult and a minor
        if social.on_band_changed is not None:
            await social.on_band_changed(handle)  # a group's mode follows its members' bands
        for other in social.contacts_of(handle, ("connected",)):
            await announce_band_change(social, handle, other, previous, current)


def pair_refused(social: SocialService, a: str, b: str) -> bool:
    """Do the pair's rules (not a block: that is never told) keep ``a`` and ``b`` apart now,
    in either direction?"""
    for actor, target in ((a, b), (b, a)):
        facts = msgspec.structs.replace(
            social.quick_facts(actor, target),
            actor_blocked_target=False,
            target_blocked_actor=False,
        )
        if rules.may_message(social.policy, facts).outcome == "refuse":
            return True
    return False


async def announce_band_change(
    social: SocialService, handle: str, other: str, previous: Band, current: Band
) -> None:
    """Tell both members of a conversation what ``handle``'s new band means for it, with
    the pair's rules applied now: whether they can still write to each other, and, for a
    minor whose contact just became an adult, the notice an adult contact brings."""
    if pair_refused(social, handle, other):
        what = "You can't message each other any more under this relay's policy."
        still_in_contact = False
    else:
        mode = social.mode(handle, other)
        words = "end-to-end encrypted" if mode == "e2ee" else "visible to safety checks"
        what = f"This conversation is {words}."
        still_in_contact = True
    social.emit(
        handle,
        "system",
        "band_changed",
        f"Your age group changed from {previous} to {current}. {what}",
        other,
    )
    social.emit(
        other,
        "system",
        "band_changed",
        f"{social._name(handle)}'s age group changed. {what}",
        handle,
    )
    if still_in_contact and rules.is_minor(previous) and not rules.is_minor(current):
        await social._minor_notice(
            "contact_accepted", other, handle, social._adult_contact_words(handle)
        )


async def cancel_stale_requests(social: SocialService, handle: str) -> None:
    async with social._lock:
        for other in social.contacts_of(handle, ("requested",)):
            row = social._contacts[pair_key(handle, other)]
            target = other if row.requester == handle else handle
            fresh = Facts(
                actor=social.band_of(row.requester),
                target=social.band_of(target),
                actor_restricted=row.requester in social.restricted,
            )
            if rules.may_request(social.policy, fresh).outcome == "refuse":
                await social.social.delete_contact(row.low, row.high)
                del social._contacts[(row.low, row.high)]
                log.info(
                    "cancelled a request the rules no longer allow %s->%s",
                    row.requester,
                    target,
                )
