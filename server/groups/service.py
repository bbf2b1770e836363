"""Groups on the relay (PROTOCOL.md §6.8, POLICY.md "Groups"): membership under the age
rules, the group's one mode and the system lines that say when and why it changes, and the
fan-out of a group message to every member's queue in one commit.

Every change happens under one lock, in memory and on disk together; system lines go
through the group commit like messages, so each member sees them in order with the
messages around them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from protocol import policy as rules
from protocol.e2ee import is_envelope, is_opaque_blob
from protocol.frames import RELAY_HANDLE
from protocol.group_frames import AddOutcome, GroupMemberView, GroupSend, GroupView
from protocol.groups import (
    copy_id,
    group_conversation,
    group_mode,
    may_add,
    may_join,
    mode_line,
    visible_member,
)
from protocol.policy import ConversationMode
from server.delivery.group_commit import GroupCommitter
from server.delivery.records import NewMessage, StoredMessage, relay_message_id
from server.delivery.store import SqliteStore
from server.groups.store import Group, GroupStore, Member
from server.social.service import SocialService
from server.social.store import NEW_CONTACT

log = logging.getLogger("agechat.relay.groups")


class GroupRefused(Exception):
    """A group request refused with a stable code (PROTOCOL.md §7)."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Fanout:
    """A group message ready to store: one copy per member who gets it."""

    group: Group
    copies: list[NewMessage]
    #: A resend of a message already stored: answer it, store nothing.
    resend: bool


def _words(mode: ConversationMode) -> str:
    return "end-to-end encrypted" if mode == "e2ee" else "visible to safety checks"


class GroupService:
    def __init__(
        self, store: SqliteStore, social: SocialService, committer: GroupCommitter
    ) -> None:
        self.store = GroupStore(store)
        self.social = social
        self._committer = committer
        self.groups: dict[str, Group] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        async with self._lock:
            self.groups = await self.store.load()

    @property
    def _policy(self) -> rules.Policy:
        return self.social.policy

    # --- reading ---------------------------------------------------------------------------

    def groups_of(self, handle: str) -> list[Group]:
        return [g for g in self.groups.values() if handle in g.members]

    def derived_mode(self, group: Group, extra: str | None = None) -> ConversationMode:
        handles = group.joined() + ([extra] if extra else [])
        return group_mode(self._policy, [self.social.band_of(h) for h in handles])

    def _visible(self, viewer: str, handle: str) -> bool:
        if viewer == handle:
            return True
        return visible_member(self._policy, self.social.quick_facts(viewer, handle))

    def _name_for(self, viewer: str, handle: str) -> str:
        return self.social.name(handle) if self._visible(viewer, handle) else "a member under 18"

    def view(self, group: Group, viewer: str) -> GroupView:
        me = group.members[viewer]
        shown: list[GroupMemberView] = []
        hidden = 0
        if me.state == "member":
            for handle in sorted(group.members):
                m = group.members[handle]
                if m.hidden and m.added_by != viewer:
                    continue  # an invitation nobody but its sender may know of
                if not self._visible(viewer, handle):
                    hidden += 1
                    continue
                shown.append(
                    GroupMemberView(
                        handle=handle,
                        display_name=self.social.display_name(handle),
                        role=m.role,
                        state=m.state,
                        minor=rules.is_minor(self.social.band_of(handle)),
                    )
                )
        return GroupView(
            id=group.id,
            name=group.name,
            mode=group.mode,
            role=me.role,
            state=me.state,
            members=shown,
            hidden_members=hidden,
            invited_by=me.added_by if me.state == "invited" else None,
        )

    def list(self, viewer: str) -> list[GroupView]:
        return [
            self.view(g, viewer)
            for g in sorted(self.groups_of(viewer), key=lambda g: g.created_at)
            if not g.members[viewer].hidden
        ]

    def _group(self, gid: str, actor: str, *, admin: bool = False, invited: bool = False) -> Group:
        group = self.groups.get(gid)
        member = None if group is None else group.members.get(actor)
        if group is None or member is None or member.hidden:
            raise GroupRefused("unknown_group")  # the same whether it exists or not
        if member.state == "invited" and not invited:
            raise GroupRefused("not_group_member")
        if admin and member.role != "admin":
            raise GroupRefused("not_group_admin")
        return group

    # --- system lines ------------------------------------------------------------------------

    def _line(self, group: Group, to: str, code: str, text: str) -> None:
        """A `system` line in the group's conversation for one account, in order with its
        messages (queued on the group commit, like a social event)."""
        now = self.social.now()
        future = self._committer.submit_message(
            NewMessage(
                sender=RELAY_HANDLE,
                msg_id=relay_message_id(now),
                recipient=to,
                conversation=group_conversation(group.id),
                mode="visible",
                body=text,
                sent_at=now,
                kind="system",
                code=code,
            )
        )
        future.add_done_callback(_log_failure)

    def _tell_members(self, group: Group, code: str, about: str, words: str) -> None:
        """``words`` after the member's name, as each member may see it ("Maya (@maya)
        joined", or "A member under 18 joined")."""
        for member in group.joined():
            if member == about:
                continue
            name = self._name_for(member, about)
            self._line(group, member, code, f"{name[0].upper()}{name[1:]} {words}")

    async def _rederive(self, group: Group, why_for: dict[str, str] | None = None) -> None:
        """Re-derive the mode after a change; if it changed, every member is told, first."""
        after = self.derived_mode(group)
        if after == group.mode:
            return
        group.mode = after
        await self.store.set_mode(group.id, after)
        log.info("group mode changed group=%s mode=%s", group.id, after)
        for member in group.joined():
            why = (why_for or {}).get(member) or (
                "everyone in it is an adult" if after == "e2ee" else "someone in it is under 18"
            )
            self._line(group, member, "group_mode_changed", mode_line(after, why))

    def _minor_reason(self, group: Group, minor: str, verb: str) -> dict[str, str]:
        return {m: f"{self._name_for(m, minor)} {verb}" for m in group.joined() if m != minor} | {
            minor: f"you {verb.replace('is', 'are')}"
        }

    # --- membership ---------------------------------------------------------------------------

    async def create(
        self, actor: str, name: str, members: list[str]
    ) -> tuple[GroupView, list[AddOutcome]]:
        async with self._lock:
            now = self.social.now()
            gid = secrets.token_urlsafe(16)
            mode = group_mode(self._policy, [self.social.band_of(actor)])
            group = Group(gid, name, actor, now, mode)
            group.members[actor] = Member(actor, "admin", "member", actor, now)
            await self.store.create(group)
            self.groups[gid] = group
            self._line(group, actor, "group_created", f"You created the group “{name}”.")
            outcomes = [
                await self._add(group, actor, h, creating=True)
                for h in dict.fromkeys(members)
                if h != actor
            ]
            log.info("group created group=%s members=%d", gid, len(group.members))
            return self.view(group, actor), outcomes

    async def add(self, actor: str, gid: str, target: str) -> tuple[GroupView, AddOutcome]:
        async with self._lock:
            group = self._group(gid, actor, admin=True)
            outcome = await self._add(group, actor, target)
            return self.view(group, actor), outcome

    async def _add(
        self, group: Group, actor: str, target: str, *, creating: bool = False
    ) -> AddOutcome:
        """``creating``: the group is being made (no message in it yet), so a minor among
        the first members sets its mode rather than joining an encrypted group."""

        def refused(code: str) -> AddOutcome:
            return AddOutcome(handle=target, outcome="refused", code=code)

        social = self.social
        if target not in social.accounts:
            return refused("unknown_recipient")
        if target == actor:
            return refused("cannot_target_self")
        if target in group.members:
            return refused("already_member")
        facts = await social.facts(actor, target)
        after = self.derived_mode(group, target)
        decision = may_add(
            self._policy,
            facts,
            mode_now=after if creating else self.derived_mode(group),
            mode_after=after,
            members=len(group.members),
        )
        if decision.outcome == "refuse":
            await social.note_refusal(actor, target, decision)
            return refused(decision.reason)
        now = social.now()
        if decision.outcome == "allow":
            await self._join(group, Member(target, "member", "member", actor, now))
            return AddOutcome(handle=target, outcome="joined")
        # An invitation: a new contact, counted like a contact request (rate limits,
        # restriction); one to someone who blocked the actor looks sent and goes nowhere.
        hidden = decision.outcome == "drop"
        member = Member(target, "member", "invited", actor, now, hidden=hidden)
        group.members[target] = member
        await self.store.put_member(group.id, member)
        await social.social.log_event(
            actor, target, NEW_CONTACT, rules.is_minor(social.band_of(target)), now
        )
        if not hidden:
            self._line(
                group,
                target,
                "group_invite",
                f"{social.name(actor)} invited you to the group “{group.name}”. Accept to "
                "join; decline and they won't be told.",
            )
        return AddOutcome(handle=target, outcome="invited")

    async def _join(self, group: Group, member: Member) -> None:
        """``member`` joins: the mode is re-derived and announced before the join, so a minor
        never sees the group in a mode that doesn't fit them."""
        group.members[member.handle] = member
        await self.store.put_member(group.id, member)
        minor = rules.is_minor(self.social.band_of(member.handle))
        await self._rederive(
            group, self._minor_reason(group, member.handle, "is under 18") if minor else None
        )
        self._line(
            group,
            member.handle,
            "group_joined",
            f"You joined the group “{group.name}”. It is {_words(group.mode)}.",
        )
        self._tell_members(group, "group_member_joined", member.handle, "joined the group.")

    async def respond(self, actor: str, gid: str, accept: bool) -> str:
        async with self._lock:
            group = self._group(gid, actor, invited=True)
            me = group.members[actor]
            if me.state != "invited":
                raise GroupRefused("no_pending_invite")
            if not accept:
                del group.members[actor]
                await self.store.remove_member(gid, actor)
                return "declined"
            decision = may_join(
                self._policy,
                mode_now=self.derived_mode(group),
                mode_after=self.derived_mode(group, actor),
            )
            if decision.outcome == "refuse":
                raise GroupRefused(decision.reason)
            await self._join(
                group, Member(actor, "member", "member", me.added_by, self.social.now())
            )
            return "joined"

    async def remove(self, actor: str, gid: str, target: str) -> str:
        async with self._lock:
            group = self._group(gid, actor, admin=True)
            if target == actor:
                raise GroupRefused("cannot_target_self", "leave the group instead")
            if target not in group.members or (
                group.members[target].hidden and group.members[target].added_by != actor
            ):
                raise GroupRefused("not_group_member")
            was = group.members.pop(target)
            await self.store.remove_member(gid, target)
            if was.state == "member":
                self._line(group, target, "group_removed", f"You were removed from “{group.name}”.")
                self._tell_members(group, "group_member_removed", target, "was removed.")
                await self._rederive(group)
            return "removed"

    async def leave(self, actor: str, gid: str) -> str:
        async with self._lock:
            group = self._group(gid, actor, invited=True)
            was = group.members.pop(actor)
            await self.store.remove_member(gid, actor)
            if was.state == "invited":
                return "declined"
            if not group.joined():
                del self.groups[gid]
                await self.store.delete(gid)
                return "left"
            if was.role == "admin" and not group.admins():
                # Someone must be able to add and remove: the longest-standing member.
                heir = min(group.joined(), key=lambda h: group.members[h].since)
                group.members[heir].role = "admin"
                await self.store.put_member(gid, group.members[heir])
                self._line(group, heir, "group_admin", "You are now an admin of this group.")
            self._tell_members(group, "group_member_left", actor, "left the group.")
            await self._rederive(group)
            return "left"

    async def rename(self, actor: str, gid: str, name: str) -> str:
        async with self._lock:
            group = self._group(gid, actor, admin=True)
            group.name = name
            await self.store.set_name(gid, name)
            for member in group.joined():
                who = "You" if member == actor else self._name_for(member, actor)
                self._line(group, member, "group_renamed", f"{who} renamed the group “{name}”.")
            return "renamed"

    async def bands_changed(self, handle: str) -> None:
        """A birthday or an age correction: each of the account's groups may change mode."""
        async with self._lock:
            for group in self.groups_of(handle):
                if group.members[handle].state != "member":
                    continue
                adult = not rules.is_minor(self.social.band_of(handle))
                verb = "is now an adult" if adult else "is under 18"
                await self._rederive(group, self._minor_reason(group, handle, verb))

    # --- messages ---------------------------------------------------------------------------

    async def fanout(self, sender: str, frame: GroupSend) -> Fanout:
        """Check a group message and make its copies; raises GroupRefused."""
        async with self._lock:
            group = self._group(frame.group, sender)
            others = [h for h in group.joined() if h != sender]
            if frame.mode != group.mode:
                raise GroupRefused("mode_mismatch", f"this group is {group.mode}")
            social = self.social
            minors = [h for h in others if rules.is_minor(social.band_of(h))]
            if minors and sender in social.moderator_restricted:
                raise GroupRefused(
                    "sender_restricted",
                    "a moderator restricted your account from contact with people under 18",
                )
            if (problem := _shape_problem(frame)) is not None:
                raise GroupRefused("mode_mismatch", problem)
            copies = {c.to: c for c in frame.copies}
            exact = len(copies) == len(frame.copies) and set(copies) == set(others)
            if frame.mode == "e2ee" and not exact:
                raise GroupRefused("group_members_changed", ",".join(others))
            ids = {h: copy_id(frame.id, h) for h in others}
            if await self.store.sent_before(sender, list(ids.values())):
                return Fanout(group, [], resend=True)
            now = social.now()
            out = [
                NewMessage(
                    sender=sender,
                    msg_id=ids[h],
                    recipient=h,
                    conversation=group_conversation(group.id),
                    mode=frame.mode,
                    body=copies[h].body if frame.mode == "e2ee" else frame.body,
                    sent_at=now,
                    commitment=copies[h].commitment if frame.mode == "e2ee" else None,
                )
                for h in others
                # A member who blocked the sender gets nothing (the sender isn't told).
                if not social.blocked(h, sender)
            ]
            return Fanout(group, out, resend=False)

    def submit(self, fanout: Fanout) -> asyncio.Future[list[StoredMessage]]:
        """Queue every copy on the group commit at once: they land in one transaction, so a
        crash stores all or none and the sender's resend completes it."""
        futures = [self._committer.submit_message(m) for m in fanout.copies]
        return asyncio.ensure_future(_all_stored(futures))


def _shape_problem(frame: GroupSend) -> str | None:
    """Why the payload contradicts the frame's own mode (PROTOCOL.md §6.1, as for `send`)."""
    if frame.mode == "e2ee":
        if frame.body:
            return "an e2ee group message carries its text in copies"
        if any(not is_envelope(c.body) for c in frame.copies):
            return "an e2ee copy's body must be an envelope"
        return None
    if frame.copies:
        return "a visible group message has no copies"
    if is_envelope(frame.body):
        return "a visible body must not be an e2ee envelope"
    if is_opaque_blob(frame.body):
        return "a visible body must be readable text, not encoded binary data"
    return None


async def _all_stored(futures: list[asyncio.Future[StoredMessage | None]]) -> list[StoredMessage]:
    results = await asyncio.gather(*futures)
    return [r for r in results if r is not None]


def _log_failure(future: asyncio.Future[StoredMessage | None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("storing a group line failed: %s", future.exception())
