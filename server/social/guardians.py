"""Guardian links on the relay (docs/POLICY.md "Guardians", PROTOCOL.md §6.7).

An adult (the guardian) and a minor (the ward) are linked only when both confirm: one
invites, the other accepts. Either may unlink, at once. What a link gives the guardian is
the policy's ``[guardians]`` table: whether the link lifts the pair rules between the two,
whether the guardian sees the ward's contacts (never a message), whether the ward's new
adult contacts wait for the guardian's approval, and whether the guardian is told of the
ward's blocks and reports. Whatever the guardian is told about the ward, the ward is told
that they were told, in the same words.

The decisions are ``protocol.policy.may_invite_guardian`` / ``may_accept_guardian``; this
module gathers their facts, keeps links and pending approvals in memory (written through to
``guardian_store``), and tells people. A guardian whom the relay restricts keeps the link
but loses what it gives: no view, no approvals, nothing told.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from protocol import policy as rules
from protocol.guardians import (
    GuardianActivity,
    GuardianApproval,
    GuardianContext,
    GuardianLink,
    WardContact,
    guardian_disclosure,
    ward_disclosure,
)
from protocol.policy import Decision, LinkFacts, LinkState
from server.social.bands import pair_refused
from server.social.guardian_store import (
    TOLD_BLOCK,
    TOLD_REPORT,
    VIEWED_CONTACTS,
    GuardianStore,
    LinkRow,
)
from server.social.store import NEW_CONTACT

if TYPE_CHECKING:
    from server.social.service import SocialService

log = logging.getLogger("agechat.relay.guardians")

#: How many of the latest link events a moderator's case view shows.
ACTIVITY_IN_CASE = 20


class GuardianService:
    def __init__(self, social: SocialService) -> None:
        self._social = social
        self.store = GuardianStore(social.store)
        #: (guardian, ward) → the link or invitation.
        self._links: dict[tuple[str, str], LinkRow] = {}
        #: ward → their linked guardians (an index for the message path's ``supervised``).
        self._by_ward: dict[str, set[str]] = {}
        #: (ward, adult contact) → when the approval was asked for.
        self._pending: dict[tuple[str, str], datetime] = {}

    @property
    def rules(self) -> rules.Guardians:
        return self._social.policy.guardians

    async def load(self) -> None:
        self._links = {}
        self._by_ward = {}
        for row in await self.store.links():
            self._put(row)
        self._pending = {(w, c): t for w, c, t in await self.store.pending()}

    def _put(self, row: LinkRow) -> None:
        self._links[(row.guardian, row.ward)] = row
        if row.state == "linked":
            self._by_ward.setdefault(row.ward, set()).add(row.guardian)

    def _drop(self, row: LinkRow) -> None:
        del self._links[(row.guardian, row.ward)]
        linked = self._by_ward.get(row.ward)
        if linked is not None:
            linked.discard(row.guardian)
            if not linked:
                del self._by_ward[row.ward]

    # --- facts (from memory: the message path asks) ----------------------------------------

    def link_between(self, a: str, b: str) -> LinkRow | None:
        return self._links.get((a, b)) or self._links.get((b, a))

    def is_linked(self, a: str, b: str) -> bool:
        row = self.link_between(a, b)
        return row is not None and row.state == "linked"

    def guardians_of(self, ward: str, *, active: bool = True) -> list[str]:
        """The ward's linked guardians; ``active``: only those the relay hasn't restricted
        (a restricted guardian keeps the link but not what it gives)."""
        return sorted(
            g for g in self._by_ward.get(ward, ()) if not (active and self._social.is_restricted(g))
        )

    def wards_of(self, guardian: str) -> list[str]:
        return sorted(
            w for (g, w), row in self._links.items() if g == guardian and row.state == "linked"
        )

    def supervised(self, a: str, band_a: rules.Band, b: str, band_b: rules.Band) -> bool:
        """Is the minor of this adult–minor pair someone with an active guardian?"""
        if rules.is_minor(band_a) == rules.is_minor(band_b):
            return False
        minor = a if rules.is_minor(band_a) else b
        return any(not self._social.is_restricted(g) for g in self._by_ward.get(minor, ()))

    def _link_state(self, actor: str, target: str) -> LinkState:
        row = self.link_between(actor, target)
        if row is None:
            return "none"
        if row.state == "linked":
            return "linked"
        return "invite_sent" if row.inviter == actor else "invite_received"

    def _roles(self, a: str, b: str) -> tuple[str, str]:
        """(guardian, ward) of a pair: the adult and the minor (by today's bands)."""
        return (b, a) if rules.is_minor(self._social.band_of(a)) else (a, b)

    def _facts(self, actor: str, target: str, pair: rules.Facts) -> LinkFacts:
        guardian, ward = self._roles(actor, target)
        others = [g for g in self.guardians_of(ward, active=False) if g != guardian]
        return LinkFacts(
            pair=pair, link=self._link_state(actor, target), ward_guardians=len(others)
        )

    # --- inviting, accepting, unlinking ----------------------------------------------------

    async def invite(self, actor: str, target: str) -> Decision:
        """Invite ``target`` to a link (``request``: they confirm). A stranger's invitation
        is a contact attempt like a request: counted as a lookup and a new contact, and a
        refusal on a minor counts towards restricting an adult. One to someone who blocked
        the actor is kept as sent and never shown to them."""
        social = self._social
        async with social.lock:
            stranger = rules.is_stranger(social.relationship(actor, target))
            if stranger and (limited := await social.count_lookup(actor, target)) is not None:
                return limited
            pair = await social.facts(actor, target)
            decision = rules.may_invite_guardian(social.policy, self._facts(actor, target, pair))
            await social.note_refusal(actor, target, decision)
            if decision.outcome == "refuse":
                return decision
            now = social.now()
            guardian, ward = self._roles(actor, target)
            row = LinkRow(guardian, ward, "invited", actor, now)
            await self.store.invite(row)
            self._put(row)
            if stranger:
                minor = rules.is_minor(social.band_of(target))
                await social.social.log_event(actor, target, NEW_CONTACT, minor, now)
        if decision.outcome == "request":
            await self._tell_invited(actor, target)
        log.info("guardian invitation %s -> %s (%s)", actor, target, decision.outcome)
        return decision

    async def _tell_invited(self, inviter: str, invitee: str) -> None:
        social = self._social
        if rules.is_minor(social.band_of(invitee)):
            # A notice (a banner), not a line: an adult asking for powers over a minor's
            # account is what "an adult posing as a parent" looks like (THREAT_MODEL.md).
            said = " ".join(ward_disclosure(self.rules))
            text = (
                f"{social.name(inviter)} asks to be your guardian. {said} Only accept if they "
                "really are your parent or carer; if you're not sure, ask an adult you trust."
            )
            social.emit(invitee, "notice", "guardian_invite", text, inviter)
        else:
            said = " ".join(guardian_disclosure(self.rules))
            text = (
                f"{social.name(inviter)} asks you to be their guardian. As their guardian: {said}"
            )
            social.emit(invitee, "system", "guardian_invite", text, inviter)

    async def accept(self, actor: str, inviter: str) -> Decision:
        social = self._social
        async with social.lock:
            pair = social.quick_facts(actor, inviter)
            decision = rules.may_accept_guardian(social.policy, self._facts(actor, inviter, pair))
            if decision.outcome == "refuse":
                return decision
            row = self.link_between(actor, inviter)
            assert row is not None
            linked = await self.store.link(row, actor, social.now())
            self._put(linked)
            # A link makes them contacts; an approval one of them waited on is moot.
            if social.relationship(actor, inviter) != "connected":
                await social.set_state(actor, inviter, "connected", inviter)
            if (row.ward, row.guardian) in self._pending:
                await self._cancel(row.ward, row.guardian, actor)
        log.info("guardian linked guardian=%s ward=%s", row.guardian, row.ward)
        await self._tell_linked(row.guardian, row.ward)
        return decision

    async def _tell_linked(self, guardian: str, ward: str) -> None:
        social = self._social
        talk = self._can_talk(guardian, ward)
        social.emit(
            ward,
            "system",
            "guardian_linked",
            f"{social.name(guardian)} is now your guardian. {talk} "
            + " ".join(ward_disclosure(self.rules)),
            guardian,
        )
        social.emit(
            guardian,
            "system",
            "guardian_linked",
            f"You are now {social.name(ward)}'s guardian. {talk} "
            + " ".join(guardian_disclosure(self.rules)),
            ward,
        )

    def _can_talk(self, a: str, b: str) -> str:
        if pair_refused(self._social, a, b):
            return "This relay's policy doesn't let you message each other."
        return "You can message each other."

    async def unlink(self, actor: str, other: str) -> Decision:
        """End a link (or withdraw or turn down an invitation), at once."""
        social = self._social
        async with social.lock:
            row = self.link_between(actor, other)
            hidden = (
                row is not None
                and row.state == "invited"
                and row.inviter == other
                and social.blocked(actor, other)
            )
            if row is None or hidden:
                return Decision("refuse", "not_linked")
            if row.state == "invited":
                await self.store.withdraw(row.guardian, row.ward)
                self._drop(row)
                return Decision("allow", "cancelled")
            who = "guardian" if actor == row.guardian else "ward"
            await self.store.unlink(row, actor, who, social.now())  # with its audit entry
            self._drop(row)
            if not self.guardians_of(row.ward, active=False):
                await self._cancel_all(row.ward, actor)
        log.info("guardian unlinked guardian=%s ward=%s by=%s", row.guardian, row.ward, who)
        await self._tell_unlinked(row.guardian, row.ward, f"by {social.name(actor)}")
        return Decision("allow", "unlinked")

    async def _tell_unlinked(self, guardian: str, ward: str, why: str) -> None:
        social = self._social
        talk = ""
        if self.rules.lifts_pair_rules and self._can_talk(guardian, ward).startswith("This"):
            talk = " You can't message each other any more under this relay's policy."
        social.emit(
            ward,
            "system",
            "guardian_unlinked",
            f"{social.name(guardian)} is no longer your guardian (unlinked {why}). They can't "
            f"see anything about your account any more.{talk}",
            guardian,
        )
        social.emit(
            guardian,
            "system",
            "guardian_unlinked",
            f"You are no longer {social.name(ward)}'s guardian (unlinked {why}).{talk}",
            ward,
        )

    async def bands_changed(self, handle: str) -> None:
        """A birthday or a correction: a link is only between an adult and a minor, so one
        that no longer is ends (audited), and approvals nobody may give end with it."""
        social = self._social
        ended: list[LinkRow] = []
        async with social.lock:
            for (guardian, ward), row in list(self._links.items()):
                if handle not in (guardian, ward):
                    continue
                if rules.is_minor(social.band_of(ward)) and not rules.is_minor(
                    social.band_of(guardian)
                ):
                    continue
                if row.state == "invited":
                    await self.store.withdraw(guardian, ward)
                    self._drop(row)
                    continue
                await self.store.unlink(row, "agechat", "band_changed", social.now())
                self._drop(row)
                ended.append(row)
                if not self.guardians_of(ward, active=False):
                    await self._cancel_all(ward, "agechat")
        for row in ended:
            await self._tell_unlinked(row.guardian, row.ward, "because an age group changed")

    # --- approvals -------------------------------------------------------------------------

    async def await_approval(self, actor: str, requester: str) -> None:
        """``actor`` accepted ``requester``'s request, and the policy says it waits for the
        minor's guardian: the pair waits, the guardians are asked, and the minor is told
        what they were told. Under the policy lock."""
        social = self._social
        ward, adult = (
            (actor, requester) if rules.is_minor(social.band_of(actor)) else (requester, actor)
        )
        await social.set_state(actor, requester, "awaiting_guardian", requester)
        guardians = self.guardians_of(ward)
        now = social.now()
        await self.store.request_approval(ward, adult, guardians, now)
        self._pending[(ward, adult)] = now
        told = (
            f"{social.name(ward)} wants to add {social.name(adult)}, an adult, as a contact. "
            "It waits for your approval."
        )
        for guardian in guardians:
            social.emit(
                guardian,
                "system",
                "guardian_approval_request",
                f"{told} Approve or decline it in the app (Ctrl+O, Guardians) or with "
                f"`agechat guardian approve {ward} {adult}` / `guardian decline {ward} {adult}`.",
                ward,
            )
        social.emit(
            ward,
            "system",
            "guardian_approval_pending",
            f"Your contact with {social.name(adult)} waits for your guardian's approval; "
            f"until then neither of you can write. {self._told_whom(guardians)}: “{told}”",
            adult,
        )
        if actor == ward:
            social.emit(
                adult,
                "system",
                "guardian_approval_pending",
                f"Your contact with {social.name(ward)} waits for their guardian's approval; "
                "until then neither of you can write.",
                ward,
            )

    def _told_whom(self, guardians: list[str]) -> str:
        names = [self._social.name(g) for g in guardians]
        if len(names) == 1:
            return f"Your guardian {names[0]} was told"
        return f"Your guardians {', '.join(names[:-1])} and {names[-1]} were told"

    async def decide(self, guardian: str, ward: str, contact: str, approve: bool) -> Decision:
        social = self._social
        async with social.lock:
            row = social.contact_row(ward, contact)
            if (
                guardian not in self.guardians_of(ward)
                or (ward, contact) not in self._pending
                or row is None
                or row.state != "awaiting_guardian"
            ):
                return Decision("refuse", "no_pending_approval")
            if approve:
                # The request checked again as if accepted now: the adult may have been
                # restricted since (then it stays pending; the guardian can decline).
                accepter = contact if row.requester == ward else ward
                now_facts = msgspec.structs.replace(
                    social.quick_facts(accepter, row.requester),
                    relationship="incoming_request",
                    supervised=False,
                )
                check = rules.may_accept(social.policy, now_facts)
                if check.outcome == "refuse":
                    return check
            outcome = "approved" if approve else "declined"
            await self.store.answer_approval(ward, contact, guardian, outcome, social.now())
            del self._pending[(ward, contact)]
            if approve:
                await social.set_state(ward, contact, "connected", row.requester)
            else:
                await social.drop_contact(ward, contact)
        log.info("guardian %s %s contact=%s for ward=%s", guardian, outcome, contact, ward)
        if approve:
            social.emit(
                ward,
                "system",
                "guardian_approved",
                f"{social.name(guardian)} approved {social.name(contact)} as your contact.",
                contact,
            )
            await social.announce_connected(ward, contact)
        else:
            social.emit(
                ward,
                "system",
                "guardian_declined",
                f"{social.name(guardian)} didn't approve {social.name(contact)} as your "
                "contact, so you aren't connected.",
                contact,
            )
        return Decision("allow", outcome)

    async def _cancel(self, ward: str, contact: str, actor: str) -> None:
        """End a pending approval that nobody can or needs to give (under the lock)."""
        await self.store.answer_approval(ward, contact, actor, "cancelled", self._social.now())
        self._pending.pop((ward, contact), None)
        row = self._social.contact_row(ward, contact)
        if row is not None and row.state == "awaiting_guardian":
            await self._social.drop_contact(ward, contact)
            self._social.emit(
                ward,
                "system",
                "guardian_approval_cancelled",
                f"Your contact with {self._social.name(contact)} was waiting for a guardian's "
                "approval that can't come any more, so you aren't connected. You can ask again.",
                contact,
            )

    async def _cancel_all(self, ward: str, actor: str) -> None:
        for w, contact in sorted(self._pending):
            if w == ward:
                await self._cancel(ward, contact, actor)

    # --- what the guardian is told ---------------------------------------------------------

    async def on_block(self, actor: str, target: str) -> None:
        """Under the lock. A ward who blocks an adult waiting for approval ends the wait."""
        if (actor, target) in self._pending:
            await self._cancel(actor, target, actor)
        await self._tell_guardians(actor, target, "blocked", TOLD_BLOCK)

    async def on_report(self, actor: str, target: str) -> None:
        await self._tell_guardians(actor, target, "reported", TOLD_REPORT)

    async def _tell_guardians(self, ward: str, other: str, what: str, event: str) -> None:
        social = self._social
        if not self.rules.notify_blocks_and_reports:
            return
        guardians = self.guardians_of(ward)
        if not guardians:
            return
        told = f"{social.name(ward)} {what} {social.name(other)}."
        code = "ward_blocked" if event == TOLD_BLOCK else "ward_reported"
        now = social.now()
        for guardian in guardians:
            await self.store.log(guardian, ward, event, other, now)
            social.emit(guardian, "system", code, told, ward)
            social.emit(
                ward,
                "system",
                "guardian_told",
                f"Your guardian {social.name(guardian)} was told: “{told}”",
                guardian,
            )

    # --- views -----------------------------------------------------------------------------

    async def view(self, actor: str) -> tuple[list[GuardianLink], list[GuardianApproval]]:
        """``actor``'s links and invitations (an invitation from someone they blocked is
        hidden from them), and the approvals waiting: as a guardian, those they may decide;
        as a ward, their own. A linked guardian with `contacts` visibility sees each ward's
        contacts — and the view is recorded, for moderators."""
        social = self._social
        links: list[GuardianLink] = []
        for (guardian, ward), row in sorted(self._links.items()):
            if actor not in (guardian, ward):
                continue
            other = ward if actor == guardian else guardian
            if row.state == "invited" and row.inviter == other and social.blocked(actor, other):
                continue
            state = (
                "linked"
                if row.state == "linked"
                else ("invite_sent" if row.inviter == actor else "invite_received")
            )
            contacts = None
            sees = (
                actor == guardian
                and state == "linked"
                and self.rules.visibility == "contacts"
                and not social.is_restricted(actor)
            )
            if sees:
                contacts = await self._ward_contacts(ward)
                await self.store.log(actor, ward, VIEWED_CONTACTS, "", social.now())
            links.append(
                GuardianLink(
                    handle=other,
                    display_name=social.display_name(other),
                    role="ward" if actor == guardian else "guardian",
                    state=state,  # type: ignore[arg-type]
                    since=row.since,
                    contacts=contacts,
                )
            )
        return links, self._approvals_for(actor)

    async def _ward_contacts(self, ward: str) -> list[WardContact]:
        social = self._social
        since = await self.store.connected_since(ward)
        return [
            WardContact(
                handle=other,
                display_name=social.display_name(other),
                band=social.band_of(other),
                since=since.get(other, social.now()),
            )
            for other in social.contacts_of(ward, ("connected",))
        ]

    def _approvals_for(self, actor: str) -> list[GuardianApproval]:
        social = self._social
        wards = set(self.wards_of(actor)) if not social.is_restricted(actor) else set()
        return [
            GuardianApproval(
                ward=ward,
                contact=contact,
                contact_name=social.display_name(contact),
                contact_band=social.band_of(contact),
                requested_at=at,
            )
            for (ward, contact), at in sorted(self._pending.items())
            if (ward == actor or ward in wards) and contact in social.accounts
        ]

    async def context(self, subject: str) -> GuardianContext:
        """For a moderator's case view of ``subject`` (docs/MODERATION.md)."""
        activity = await self.store.activity(subject, ACTIVITY_IN_CASE)
        return GuardianContext(
            guardians=self.guardians_of(subject, active=False),
            wards=self.wards_of(subject),
            pending_approvals=[a for a in self._approvals_for(subject) if a.ward == subject],
            activity=[
                GuardianActivity(
                    guardian=e.guardian, ward=e.ward, event=e.event, about=e.about, at=e.created_at
                )
                for e in activity
            ],
        )
