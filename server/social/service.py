"""The relay's enforcement of the age policy: contacts, requests, blocks, reports, bands.

Decisions come from the pure functions in ``protocol.policy``; this module gathers the
facts they need, applies the outcome to storage and to an in-memory mirror (so the message
path decides from memory), and tells people what changed through durable `system` and
`notice` events that travel like messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta

import msgspec

from protocol import policy as rules
from protocol.frames import RELAY_HANDLE, ContactEntry, Kind, Person, conversation_id
from protocol.policy import Band, Decision, Facts, Policy, Relationship
from server.delivery.group_commit import GroupCommitter
from server.delivery.records import NewMessage, relay_message_id
from server.delivery.store import SqliteStore
from server.social import bands
from server.social.guardians import GuardianService
from server.social.search_index import SearchIndex
from server.social.store import (
    BLOCKED_BY_MINOR,
    DECLINED_BY_MINOR,
    LOOKUP,
    NEW_CONTACT,
    REFUSED_TO_MINOR,
    REPORTED_BY_MINOR,
    AccountInfo,
    ContactRow,
    SocialStore,
    pair_key,
)

log = logging.getLogger("agechat.relay.policy")
#: Index matches one search looks at, at most: the work per query stays bounded however
#: many accounts share a prefix (most of them may be hidden from the one searching).
SEARCH_WALK_LIMIT = 500

#: Refusals that count towards restricting an adult when the target is a minor.
_COUNTED_REFUSALS = frozenset({"contact_not_allowed", "sender_restricted", "rate_limited"})
#: Distinct (facts, mode) decisions remembered (``decide_message_now``). There are a few
#: dozen in practice (bands × relationships × flags); the bound only guards the memory.
DECISIONS_REMEMBERED = 4096
_UNDECIDED = object()


class SocialService:
    def __init__(
        self,
        store: SqliteStore,
        policy: Policy,
        clock: Callable[[], datetime],
        committer: GroupCommitter,
    ) -> None:
        self.policy = policy
        self.social = SocialStore(store, committer)
        self._store = store
        self._clock = clock
        self._committer = committer
        self.accounts: dict[str, AccountInfo] = {}
        self._contacts: dict[tuple[str, str], ContactRow] = {}
        self._blocks: set[tuple[str, str]] = set()
        self._index = SearchIndex()
        self.restricted: set[str] = set()
        #: Restrictions a moderator decided, with their reason (server/safety/).
        self.moderator_restricted: dict[str, str] = {}
        #: The safety services listen here (set by the app; None in a bare relay).
        self.on_restricted: Callable[[str], Awaitable[None]] | None = None
        self.on_refusals_to_minors: Callable[[str, int], Awaitable[None]] | None = None
        #: Called with a handle whose age band changed (groups re-derive their mode).
        self.on_band_changed: Callable[[str], Awaitable[None]] | None = None
        self._announced: dict[str, str] = {}
        #: Bands by birth date, for ``_bands_day`` (band_of).
        self._bands_day: date | None = None
        self._bands: dict[date, Band] = {}
        #: ``decide_message_now``'s answers by (facts, mode, e2ee available), for
        #: ``_decided_under``.
        self._decided: dict[tuple[Facts, str, bool], Decision | None] = {}
        self._decided_under: Policy | None = None
        # Read-modify-write of the social graph happens one at a time.
        self._lock = asyncio.Lock()
        #: Guardian links, approvals and what guardians are told (server/social/guardians.py).
        self.guardians = GuardianService(self)

    # --- loading ---------------------------------------------------------------------------

    async def load(self) -> None:
        await self.social.load_events()
        self.accounts = {h: AccountInfo(n, b) for h, n, b in await self.social.accounts()}
        self._contacts = {(r.low, r.high): r for r in await self.social.contacts()}
        self._blocks = set(await self.social.blocks())
        self._announced = await self.social.announced_bands()
        # Built here, not at the first search: at 100,000 accounts that stalls the loop
        # ~0.3 s, better spent before the relay listens (bench/relay_search.py).
        self._index.rebuild({h: a.display_name for h, a in self.accounts.items()})
        await self.guardians.load()
        self.restricted = set()
        for handle in self.accounts:
            await self.refresh_restriction(handle, notify=False)
        await self.check_bands()

    def add_account(self, handle: str, display_name: str, birthdate: date) -> None:
        self.accounts[handle] = AccountInfo(display_name, birthdate)
        self._index.add(handle, display_name)
        self._announced[handle] = self.band_of(handle)

    async def record_new_account(self, handle: str) -> None:
        await self.social.set_announced_band(handle, self._announced[handle])

    # --- for the parts that share the graph (bands.py, guardians.py) -----------------------

    @property
    def store(self) -> SqliteStore:
        return self._store

    @property
    def lock(self) -> asyncio.Lock:
        """Held across every read-modify-write of the social graph."""
        return self._lock

    def now(self) -> datetime:
        return self._clock()

    def name(self, handle: str) -> str:
        return self._name(handle)

    def display_name(self, handle: str) -> str:
        info = self.accounts.get(handle)
        return info.display_name if info is not None else handle

    def blocked(self, blocker: str, blocked: str) -> bool:
        return (blocker, blocked) in self._blocks

    def contact_row(self, a: str, b: str) -> ContactRow | None:
        return self._contacts.get(pair_key(a, b))

    async def set_state(self, a: str, b: str, state: str, requester: str) -> None:
        await self._set_state(a, b, state, requester)

    async def drop_contact(self, a: str, b: str) -> None:
        """The pair is strangers again (a request a guardian declined, or one cancelled)."""
        low, high = pair_key(a, b)
        await self.social.delete_contact(low, high)
        self._contacts.pop((low, high), None)

    async def count_lookup(self, actor: str, handle: str) -> Decision | None:
        return await self._count_lookup(actor, handle)

    async def note_refusal(self, actor: str, target: str, decision: Decision) -> None:
        await self._note_refusal(actor, target, decision)

    # --- facts -----------------------------------------------------------------------------

    def today(self) -> date:
        return self._clock().date()

    def band_of(self, handle: str, today: date | None = None) -> Band:
        """``today``: the clock's date, when the caller has it (one reading of the clock for
        both parties of a message)."""
        # Several times per message: each birth date's band is worked out once a day.
        if today is None:
            today = self._clock().date()
        if today != self._bands_day:
            self._bands_day, self._bands = today, {}
        born = self.accounts[handle].birthdate
        found = self._bands.get(born)
        if found is None:
            found = self._bands[born] = rules.band(born, today)
        return found

    def relationship(self, actor: str, target: str) -> Relationship:
        row = self._contacts.get(pair_key(actor, target))
        if row is None:
            return "none"
        if row.state in ("connected", "awaiting_guardian"):
            return row.state  # type: ignore[return-value]
        if row.state == "requested":
            return "outgoing_request" if row.requester == actor else "incoming_request"
        return "declined" if row.requester == actor else "declined_by_actor"

    def quick_facts(self, actor: str, target: str, today: date | None = None) -> Facts:
        """``today``: the clock's date, when the caller has read the clock already."""
        if today is None:
            today = self._clock().date()
        actor_band, target_band = self.band_of(actor, today), self.band_of(target, today)
        return Facts(
            actor=actor_band,
            target=target_band,
            relationship=self.relationship(actor, target),
            actor_blocked_target=(actor, target) in self._blocks,
            target_blocked_actor=(target, actor) in self._blocks,
            actor_restricted=actor in self.restricted,
            target_restricted=target in self.restricted,
            actor_restricted_by_moderator=actor in self.moderator_restricted,
            target_restricted_by_moderator=target in self.moderator_restricted,
            guardian_approved=self.guardians.is_linked(actor, target),
            supervised=self.guardians.supervised(actor, actor_band, target, target_band),
        )

    async def facts(self, actor: str, target: str) -> Facts:
        """Facts with the rate-limit counters, which cost a query."""
        quick = self.quick_facts(actor, target)
        since = self._clock() - timedelta(days=1)
        total = await self.social.count_events(actor, (NEW_CONTACT,), since)
        minors = await self.social.count_events(actor, (NEW_CONTACT,), since, to_minors=True)
        return msgspec.structs.replace(quick, requests_today=total, requests_to_minors_today=minors)

    def mode(self, a: str, b: str) -> rules.ConversationMode:
        return rules.conversation_mode(self.policy, [self.band_of(a), self.band_of(b)])

    # --- events to people ------------------------------------------------------------------

    def emit(
        self,
        recipient: str,
        kind: Kind,
        code: str,
        text: str,
        about: str,
        conversation: str | None = None,
    ) -> None:
        """A durable `system` or `notice` event, delivered in order with the messages: in
        the conversation with ``about``, or in ``conversation`` (a group's).

        Queued, not awaited (it never suspends): the group commit keeps the order, and
        nobody holds the policy lock across a disk flush.
        """
        now = self._clock()
        future = self._committer.submit_message(
            NewMessage(
                sender=RELAY_HANDLE,
                msg_id=relay_message_id(now),
                recipient=recipient,
                conversation=conversation or conversation_id(recipient, about),
                mode="visible",
                body=text,
                sent_at=now,
                kind=kind,
                code=code,
            )
        )
        future.add_done_callback(_log_failure)

    async def _minor_notice(
        self, event: rules.NoticeEvent, minor: str, other: str, text: str
    ) -> None:
        code = rules.minor_notice(self.policy, event, self.band_of(minor), self.band_of(other))
        if code is not None:
            self.emit(minor, "notice", code, text, other)

    def _adult_contact_words(self, adult: str) -> str:
        return (
            f"{self._name(adult)} is an adult and is now one of your contacts. If anything "
            "they say makes you uncomfortable, you can block or report them at any time."
        )

    def _name(self, handle: str) -> str:
        return f"{self.accounts[handle].display_name} (@{handle})"

    # --- messages --------------------------------------------------------------------------

    def decide_message_now(
        self, sender: str, recipient: str, mode: str, today: date | None = None
    ) -> Decision | None:
        """`decide_message`'s common case, without a coroutine: the decision for a pair
        that are contacts or have a request pending, when it isn't a refusal (a refusal
        may be counted). None: ask `decide_message`."""
        quick = self.quick_facts(sender, recipient, today)
        if rules.is_stranger(quick.relationship):
            return None
        # The decision is a function of the policy, the facts and the mode alone, and
        # nearly every message repeats one already made: remembered, it costs a lookup.
        if self._decided_under is not self.policy or len(self._decided) >= DECISIONS_REMEMBERED:
            self._decided, self._decided_under = {}, self.policy
        # (Whether this build can do e2ee at all is part of the mode's answer.)
        key = (quick, mode, rules.E2EE_AVAILABLE)
        found = self._decided.get(key, _UNDECIDED)
        if found is _UNDECIDED:
            decision = rules.may_message(self.policy, quick)
            found = None if decision.outcome == "refuse" else self._with_mode(decision, quick, mode)
            self._decided[key] = found
        return found  # type: ignore[return-value]

    async def decide_message(self, sender: str, recipient: str, mode: str) -> Decision:
        """May ``sender`` message ``recipient`` now, with a payload in ``mode``?

        The policy decides first (so a mode mismatch reveals nothing the policy hides),
        then the mode; only then does a new message request take effect.
        """
        quick = self.quick_facts(sender, recipient)
        if not rules.is_stranger(quick.relationship):
            # The fast path (contacts, pending requests): no counters, no lock.
            decision = rules.may_message(self.policy, quick)
            if decision.outcome == "refuse":  # rare: e.g. a moderator's restriction
                async with self._lock:
                    await self._note_refusal(sender, recipient, decision)
            return self._with_mode(decision, quick, mode)
        async with self._lock:
            # A stranger's first message answers "adult or minor" as a bundle lookup would.
            if (limited := await self._count_lookup(sender, recipient)) is not None:
                return limited
            facts = await self.facts(sender, recipient)
            decision = rules.may_message(self.policy, facts)
            decision = self._with_mode(decision, facts, mode)
            await self._note_refusal(sender, recipient, decision)
            if decision.outcome == "request":
                await self._start_request(sender, recipient, "message_request")
            elif decision.outcome == "drop" and self._would_request(facts):
                # Blocked: the request is kept exactly as any pending one (their list, a
                # second request, the daily counts), and the blocker is never told of it.
                await self._start_request(sender, recipient, "message_request", tell=False)
        return decision

    def _would_request(self, facts: Facts) -> bool:
        """Would this message have gone as a request had the target not blocked the actor?"""
        unblocked = msgspec.structs.replace(facts, target_blocked_actor=False)
        return rules.may_message(self.policy, unblocked).outcome == "request"

    async def _count_lookup(self, actor: str, handle: str) -> Decision | None:
        """Count a stranger's lookup of ``handle`` (which may not exist), or refuse it past
        the daily limit. Under the lock."""
        now = self._clock()
        lookups = await self.social.count_events(actor, (LOOKUP,), now - timedelta(days=1))
        if (limited := rules.lookup_limited(self.policy, lookups)) is not None:
            return limited
        minor = handle in self.accounts and rules.is_minor(self.band_of(handle))
        await self.social.log_event(actor, handle, LOOKUP, minor, now)
        return None

    async def unknown_handle(self, actor: str, handle: str) -> str:
        """The answer to a message or request for a handle that doesn't exist: counted as a
        lookup, so past the limit it is the same answer an existing account gets."""
        async with self._lock:
            limited = await self._count_lookup(actor, handle)
        return limited.reason if limited is not None else "unknown_recipient"

    async def look_up(self, actor: str, handle: str) -> Decision:
        """May ``actor`` have ``handle``'s key bundle (``fetch_bundle``, a safety number)?

        Between contacts this is decided from memory. A stranger's lookup is counted and
        limited per day, whether the handle exists or not (an unknown handle is refused
        with ``unknown_recipient`` until the limit, then like every other lookup), and a
        refusal on a minor counts towards restriction like a refused request.
        """
        known = handle in self.accounts
        if known:
            quick = self.quick_facts(actor, handle)
            if not rules.is_stranger(quick.relationship):
                return rules.may_look_up(self.policy, quick)
        async with self._lock:
            if (limited := await self._count_lookup(actor, handle)) is not None:
                return limited
            if not known:
                return Decision("refuse", "unknown_recipient")
            # The lookup limit was checked above; the policy decides the rest.
            decision = rules.may_look_up(self.policy, await self.facts(actor, handle))
            await self._note_refusal(actor, handle, decision)
            return decision

    def would_be_request(self, sender: str, recipient: str) -> bool:
        """Would this message go as a request if the recipient hadn't blocked the sender?
        (A dropped message is answered as that, so the block doesn't show.)"""
        unblocked = msgspec.structs.replace(
            self.quick_facts(sender, recipient), target_blocked_actor=False
        )
        return rules.may_message(self.policy, unblocked).outcome == "request"

    def _with_mode(self, decision: Decision, facts: Facts, mode: str) -> Decision:
        if decision.outcome == "refuse":
            return decision
        if mode != rules.conversation_mode(self.policy, [facts.actor, facts.target]):
            return Decision("refuse", "mode_mismatch")
        return decision

    async def _note_refusal(self, actor: str, target: str, decision: Decision) -> None:
        if (
            decision.outcome == "refuse"
            and decision.reason in _COUNTED_REFUSALS
            and rules.is_minor(self.band_of(target))
            and not rules.is_minor(self.band_of(actor))
        ):
            # One count per adult, minor and day: a client that asks for the bundle, the
            # safety number and then sends is one attempt, not three.
            now = self._clock()
            day = now - timedelta(days=1)
            if await self.social.has_event(actor, target, REFUSED_TO_MINOR, day):
                return
            await self.social.log_event(actor, target, REFUSED_TO_MINOR, True, now)
            await self.refresh_restriction(actor)
            threshold = self.policy.moderation.refusals_to_minors_finding
            if threshold and self.on_refusals_to_minors is not None:
                since = self._clock() - timedelta(days=self.policy.restriction.window_days)
                refused = await self.social.count_events(actor, (REFUSED_TO_MINOR,), since)
                if refused == threshold:
                    await self.on_refusals_to_minors(actor, refused)

    async def _start_request(
        self, actor: str, target: str, kind: str, *, tell: bool = True
    ) -> None:
        now = self._clock()
        row = ContactRow(
            *pair_key(actor, target), state="requested", requester=actor, updated_at=_ts(now)
        )
        await self.social.set_contact(row, now)
        self._contacts[(row.low, row.high)] = row
        minor = rules.is_minor(self.band_of(target))
        await self.social.log_event(actor, target, NEW_CONTACT, minor, now)
        if not tell:
            return
        if kind == "message_request":
            await self._minor_notice(
                "message_request",
                target,
                actor,
                f"{self._name(actor)} isn't one of your contacts and sent you a message request. "
                "You can accept, decline, block or report. Only accept people you know.",
            )
        else:
            as_notice = minor and self.policy.notices.minor_message_request
            self.emit(
                target,
                "notice" if as_notice else "system",
                "contact_request",
                f"{self._name(actor)} wants to connect with you. You can accept or decline.",
                actor,
            )

    # --- contact requests ------------------------------------------------------------------

    async def contact_request(self, actor: str, target: str) -> Decision:
        async with self._lock:
            stranger = rules.is_stranger(self.relationship(actor, target))
            if stranger and (limited := await self._count_lookup(actor, target)) is not None:
                return limited
            facts = await self.facts(actor, target)
            decision = rules.may_request(self.policy, facts)
            await self._note_refusal(actor, target, decision)
            if decision.outcome == "request":
                await self._start_request(actor, target, "contact_request")
            elif decision.outcome == "drop":
                # Blocked: kept like any pending request, never shown to the blocker (a
                # drop is always a request the block turned silent).
                await self._start_request(actor, target, "contact_request", tell=False)
            return decision

    async def respond(self, actor: str, requester: str, accept: bool) -> Decision:
        async with self._lock:
            facts = self.quick_facts(actor, requester)
            if not accept:
                if facts.relationship != "incoming_request":
                    return Decision("refuse", "no_pending_request")
                await self._set_state(actor, requester, "declined", requester)
                if rules.is_minor(facts.actor) and not rules.is_minor(facts.target):
                    await self.social.log_event(
                        requester, actor, DECLINED_BY_MINOR, True, self._clock()
                    )
                    await self.refresh_restriction(requester)
                return Decision("allow", "declined")
            decision = rules.may_accept(self.policy, facts)
            if decision.outcome == "refuse":
                return decision
            if decision.reason == "awaiting_guardian":
                # A supervised minor's new adult contact: the guardian answers first.
                await self.guardians.await_approval(actor, requester)
                return decision
            await self._set_state(actor, requester, "connected", requester)
        await self.announce_connected(actor, requester)
        return Decision("allow", "connected")

    async def announce_connected(self, actor: str, requester: str) -> None:
        """Both are told they're connected, and a minor gets the new-adult-contact notice."""
        mode = self.mode(actor, requester)
        for me, them in ((requester, actor), (actor, requester)):
            self.emit(
                me,
                "system",
                "contact_accepted",
                f"You and {self._name(them)} are connected. This chat is "
                + ("end-to-end encrypted." if mode == "e2ee" else "visible to safety checks."),
                them,
            )
            await self._minor_notice("contact_accepted", me, them, self._adult_contact_words(them))

    async def _set_state(self, a: str, b: str, state: str, requester: str) -> None:
        now = self._clock()
        row = ContactRow(*pair_key(a, b), state=state, requester=requester, updated_at=_ts(now))
        await self.social.set_contact(row, now)
        self._contacts[(row.low, row.high)] = row

    # --- blocks and reports ----------------------------------------------------------------

    async def block(self, actor: str, target: str) -> None:
        async with self._lock:
            await self.social.add_block(actor, target, self._clock())
            self._blocks.add((actor, target))
            if self._counts_against(target, actor):
                await self.social.log_event(target, actor, BLOCKED_BY_MINOR, True, self._clock())
                await self.refresh_restriction(target)
            await self.guardians.on_block(actor, target)

    def _counts_against(self, adult: str, minor: str) -> bool:
        """A minor's block or report counts towards restricting an adult only if the two had
        some contact (a request either way, or a connection): otherwise any three invented
        "minors" could restrict anyone."""
        return (
            rules.is_minor(self.band_of(minor))
            and not rules.is_minor(self.band_of(adult))
            and pair_key(adult, minor) in self._contacts
        )

    async def unblock(self, actor: str, target: str) -> None:
        async with self._lock:
            await self.social.remove_block(actor, target)
            self._blocks.discard((actor, target))

    async def report(self, actor: str, target: str, reason: str, evidence: bytes) -> None:
        async with self._lock:
            now = self._clock()
            await self.social.add_report(
                actor, target, reason, conversation_id(actor, target), evidence, now
            )
            if self._counts_against(target, actor):
                await self.social.log_event(target, actor, REPORTED_BY_MINOR, True, now)
                await self.refresh_restriction(target)
            await self.guardians.on_report(actor, target)

    async def refresh_restriction(self, handle: str, *, notify: bool = True) -> None:
        """Recompute whether an account is restricted; tell its minor contacts when it starts.

        Whatever the account's band is now: re-declaring as a minor doesn't lift it.
        """
        since = self._clock() - timedelta(days=self.policy.restriction.window_days)
        minors = await self.social.count_events(
            handle, (BLOCKED_BY_MINOR, REPORTED_BY_MINOR), since, distinct_targets=True
        )
        refused = await self.social.count_events(
            handle, (REFUSED_TO_MINOR, DECLINED_BY_MINOR), since
        )
        now_restricted = rules.is_restricted(self.policy, minors, refused)
        if now_restricted and handle not in self.restricted:
            self.restricted.add(handle)
            log.info("adult restricted from contacting minors handle=%s", handle)
            if notify:
                await self._tell_minor_contacts_restricted(
                    handle, "after reports or blocks from other young people"
                )
                if self.on_restricted is not None:
                    await self.on_restricted(handle)
        elif not now_restricted:
            self.restricted.discard(handle)

    async def _tell_minor_contacts_restricted(self, handle: str, why: str) -> None:
        for other in self.contacts_of(
            handle, states=("connected", "requested", "awaiting_guardian")
        ):
            await self._minor_notice(
                "contact_restricted",
                other,
                handle,
                f"Safety notice: {self._name(handle)} has been restricted {why}. Be careful; "
                "you can block or report them.",
            )

    async def restrict_by_moderator(self, handle: str, reason: str) -> None:
        """A person's decision: restricted from new contact with minors whatever the
        counters say, until reinstated; the account and its minor contacts are told. The
        moderator's ``reason`` is internal: the account is told that, not the reason."""
        first = handle not in self.moderator_restricted
        self.moderator_restricted[handle] = reason
        if first:
            self.emit(
                handle,
                "system",
                "moderator_restricted",
                "A moderator restricted your account after reviewing reports about it: you "
                "can't contact people under 18 any more, including existing contacts.",
                RELAY_HANDLE,
            )
            await self._tell_minor_contacts_restricted(handle, "by agechat's safety team")

    def lift_moderator_restriction(self, handle: str) -> None:
        self.moderator_restricted.pop(handle, None)

    def is_restricted(self, handle: str) -> bool:
        return handle in self.restricted or handle in self.moderator_restricted

    # --- lists -----------------------------------------------------------------------------

    def contacts_of(self, handle: str, states: tuple[str, ...]) -> list[str]:
        found = []
        for (low, high), row in self._contacts.items():
            if handle in (low, high) and row.state in states:
                other = high if low == handle else low
                if other in self.accounts:
                    found.append(other)
        return sorted(found)

    def list_contacts(self, actor: str) -> list[ContactEntry]:
        entries: dict[str, ContactEntry] = {}
        minor = rules.is_minor(self.band_of(actor))
        states = ("connected", "requested", "declined", "awaiting_guardian")
        for other in self.contacts_of(actor, states):
            relationship = self.relationship(actor, other)
            state = {"declined_by_actor": "declined_by_you"}.get(relationship, relationship)
            entries[other] = ContactEntry(
                handle=other,
                display_name=self.accounts[other].display_name,
                state=state,
                mode=self.mode(actor, other) if relationship != "declined" else None,
                restricted=minor and self.is_restricted(other),
            )
        for blocker, blocked in self._blocks:
            if blocker == actor and blocked in self.accounts:
                entries[blocked] = ContactEntry(
                    handle=blocked,
                    display_name=self.accounts[blocked].display_name,
                    state="blocked",
                    mode=None,  # a mode would tell you the age group of someone you blocked
                )
        return [entries[h] for h in sorted(entries)]

    def search(self, actor: str, query: str) -> list[Person]:
        """Prefix search on handle or display name through the index, filtered by
        ``may_find`` for each hit; the exact handle first, then in order, at most the
        policy's `limits.max_search_results`. Walks at most a bounded number of matches, so
        a one-letter query costs the same at 6,000 accounts as at 60."""
        q = query.strip().lower().lstrip("@").strip()
        if not q:
            return []  # an empty query would list everyone
        if len(self._index) != len(self.accounts):
            self._index.rebuild({h: i.display_name for h, i in self.accounts.items()})
        wanted = self.policy.limits.max_search_results
        hits: list[Person] = []
        for n, handle in enumerate(self._index.prefixed(q)):
            if n >= SEARCH_WALK_LIMIT or len(hits) >= wanted:
                break
            if handle == actor or handle not in self.accounts:
                continue
            if rules.may_find(self.policy, self.quick_facts(actor, handle)).allowed:
                hits.append(Person(handle=handle, display_name=self.accounts[handle].display_name))
        # The exact handle is always looked at, however many names share its prefix.
        exact = q in self.accounts and q != actor and all(p.handle != q for p in hits)
        if exact and rules.may_find(self.policy, self.quick_facts(actor, q)).allowed:
            hits.insert(0, Person(handle=q, display_name=self.accounts[q].display_name))
        hits.sort(key=lambda p: (p.handle != q, p.handle))
        return hits[:wanted]

    # --- ages (server/social/bands.py) ----------------------------------------------------

    async def change_birthdate(
        self, handle: str, birthdate: date, declaration: bytes | None, *, by_admin: bool = False
    ) -> Decision:
        return await bands.change_birthdate(self, handle, birthdate, declaration, by_admin=by_admin)

    async def reload_accounts(self) -> None:
        await bands.reload_accounts(self)

    async def check_bands(self, handles: list[str] | None = None) -> None:
        await bands.check_bands(self, handles)


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _log_failure(future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("storing a relay event failed: %s", future.exception())
