"""The grooming-risk signals (server/safety/signals/, docs/SIGNALS.md) applied on the relay:
every stored message becomes an event for its conversation's risk state; a notice goes to
the minor in the chat, a finding to the `child_safety` queue.

What the engine reads: the relay's facts about the pair (when they became contacts, who
reached out first, the adult's recent outreach to minors and pushback from them — never
content) for every conversation, and the text only of `visible` messages, which the engine
reads only from the adult to the minor. An `e2ee` message is passed with no text at all.
A decline, block or report is an event of its own in its conversation (the minor pushing
back). The minor's local time comes from the UTC offset a minor's client gives at login
(PROTOCOL.md §3.2), kept in memory only; without it the time-of-night feature is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from protocol import policy as rules
from protocol.frames import conversation_id
from protocol.groups import group_of
from server.delivery.group_commit import GroupCommitter
from server.delivery.records import StoredMessage
from server.delivery.store import SqliteStore
from server.safety.service import Evidence, Finding, SafetyService
from server.safety.signals import (
    ContactEvent,
    ContactFacts,
    ConversationRisk,
    MessageEvent,
    Party,
    SignalEngine,
    decode_risk,
    encode_risk,
    load_rules,
)
from server.social.service import SocialService
from server.social.store import (
    BLOCKED_BY_MINOR,
    DECLINED_BY_MINOR,
    NEW_CONTACT,
    REPORTED_BY_MINOR,
)

log = logging.getLogger("agechat.relay.signals")


#: How long a quiet conversation's risk state stays in memory.
IDLE_STATE_KEPT = timedelta(days=1)

#: An event waiting for its conversation's state, with its message (None for pushback).
_Waiting = tuple[MessageEvent | ContactEvent, StoredMessage | None]

#: What a minor does to a contact that counts as pushback (docs/SIGNALS.md).
PushbackKind = Literal["declined", "blocked", "reported"]


class SignalsService:
    def __init__(
        self,
        store: SqliteStore,
        social: SocialService,
        safety: SafetyService,
        clock: Callable[[], datetime],
        committer: GroupCommitter,
    ) -> None:
        self._store = store
        self._committer = committer
        #: Conversations' risk states, read once and kept (written behind on each change).
        self._states: dict[str, ConversationRisk] = {}
        #: Events waiting for their conversation's state to be read, in order.
        self._loading: dict[str, list[_Waiting]] = {}
        #: The conversations with a state on disk (from `load`, kept as states are written):
        #: any other has never been scored and starts fresh, with no read to wait for.
        #: None until `load`: then every state not in memory is read.
        self._on_disk: set[str] | None = None
        self._social = social
        self._safety = safety
        self._clock = clock
        #: Minors' local time minus UTC, from their clients' logins (memory only).
        self._utc_offsets: dict[str, timedelta] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Lock()
        settings = social.policy.signals
        # Loaded at start: a bad rules file stops the relay, naming the file and rule.
        self.engine = (
            SignalEngine(load_rules(settings.rules), settings) if settings.enabled else None
        )

    async def load(self) -> None:
        """Learn which conversations have a stored state (at start)."""
        async with self._store.reader.execute("SELECT conversation FROM conversation_risk") as cur:
            self._on_disk = {str(row[0]) for row in await cur.fetchall()}

    def _facts(self, a: str, b: str, adult: str, now: datetime) -> ContactFacts:
        """From memory: the contact row and the adult's recent outreach and pushback."""
        row = self._social.contact_row(a, b)
        since = (
            datetime.fromtimestamp(row.updated_at, UTC)
            if row is not None and row.state == "connected"
            else None
        )
        window = (now - timedelta(days=self._social.policy.restriction.window_days)).timestamp()
        events = self._social.social.events
        return ContactFacts(
            since=since,
            initiator=None if row is None else row.requester,
            adult_recent_minor_contacts=events.count(
                adult, (NEW_CONTACT,), window, to_minors=True, distinct_targets=True
            ),
            adult_pushback_from_minors=events.count(
                adult,
                (DECLINED_BY_MINOR, BLOCKED_BY_MINOR, REPORTED_BY_MINOR),
                window,
                distinct_targets=True,
            ),
        )

    def saw_login(self, handle: str, utc_offset_minutes: int | None) -> None:
        """A client logged in, telling its holder's UTC offset (minors' clients only)."""
        if utc_offset_minutes is None:
            self._utc_offsets.pop(handle, None)
        else:
            self._utc_offsets[handle] = timedelta(minutes=utc_offset_minutes)

    def local_time(self, handle: str, at: datetime) -> time | None:
        offset = self._utc_offsets.get(handle)
        return None if offset is None else (at.astimezone(UTC) + offset).time()

    def schedule(self, message: StoredMessage) -> None:
        """Score ``message``: at once when its conversation's state is in memory (no
        await, so events of one conversation are scored in order and closing the sender's
        connection can't cut it short), else once the state is read."""
        if self.engine is None or message.kind != "message" or message.seq == 0:
            return
        try:
            self._schedule(message)
        except Exception:  # a signals failure must never cost a message (or its sender)
            log.exception("grooming-risk signals failed for a message")

    def _schedule(self, message: StoredMessage) -> None:
        found = self._parties(message.sender, message.recipient, message.sent_at.date())
        if found is None:
            return
        sender, recipient, adult = found
        event = MessageEvent(
            id=message.msg_id,
            sender=sender,
            recipient=recipient,
            mode=message.mode,
            at=message.sent_at,
            # e2ee: no text reaches the engine at all (it couldn't read ciphertext anyway).
            text=message.body if message.mode == "visible" else None,
            facts=self._facts(sender.handle, recipient.handle, adult, message.sent_at),
            recipient_local_time=self.local_time(recipient.handle, message.sent_at),
        )
        key = message.conversation
        if group_of(key) is not None:  # a group: each pair in it has its own score
            low, high = sorted((sender.handle, recipient.handle))
            key = f"{key}:{low}:{high}"
        self._submit(key, event, message)

    def schedule_pushback(self, kind: PushbackKind, actor: str, target: str) -> None:
        """``actor`` declined, blocked or reported ``target``: an event in their
        conversation (it counts when a minor does it to an adult)."""
        try:
            self._schedule_pushback(kind, actor, target)
        except Exception:  # never costs the decline, block or report it follows
            log.exception("grooming-risk signals failed for a contact event")

    def _schedule_pushback(self, kind: PushbackKind, actor: str, target: str) -> None:
        found = self._parties(actor, target)
        if self.engine is None or found is None:
            return
        a, b, adult = found
        at = self._clock()
        event = ContactEvent(
            id=f"{kind}:{actor}:{int(at.timestamp())}",
            kind=kind,
            actor=a,
            target=b,
            mode=self._social.mode(actor, target),
            at=at,
            facts=self._facts(actor, target, adult, at),
        )
        self._submit(conversation_id(actor, target), event, None)

    def _submit(
        self, key: str, event: MessageEvent | ContactEvent, message: StoredMessage | None
    ) -> None:
        waiting = self._loading.get(key)
        if waiting is not None:  # behind the read of the conversation's state
            waiting.append((event, message))
            return
        state = self._states.get(key)
        if state is None and self._on_disk is not None and key not in self._on_disk:
            state = ConversationRisk()  # never scored: nothing stored to read
        if state is not None:
            self._apply(key, state, event, message)
            return
        self._loading[key] = [(event, message)]
        self._start(lambda: self._load(key))

    async def _load(self, key: str) -> None:
        """Read a conversation's stored state, then score what waited for it, in order."""
        try:
            async with self._store.reader.execute(
                "SELECT state FROM conversation_risk WHERE conversation = ?", (key,)
            ) as cur:
                row = await cur.fetchone()
            state = decode_risk(None if row is None else bytes(row[0]))
        except BaseException:
            self._loading.pop(key, None)
            raise
        waiting = self._loading.pop(key)
        self._states[key] = state
        for event, message in waiting:  # no await from here: nothing else interleaves
            try:
                state = self._apply(key, state, event, message)
            except Exception:  # the others still count
                log.exception("grooming-risk signals failed for an event")

    def forget_idle(self, now: datetime) -> int:
        """Drop the states of conversations quiet for a day (their last state went to disk
        with the commit after it, and is read again if they speak): memory stays bounded
        by the conversations active lately. Returns how many were dropped."""
        before = now - IDLE_STATE_KEPT
        idle = [
            k for k, st in self._states.items() if st.last_at is None or st.last_at < before
        ]
        for key in idle:
            del self._states[key]
        return len(idle)

    def _start(self, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Callable[[], Awaitable[None]]) -> None:
        async with self._one_at_a_time:
            try:
                await work()
            except Exception:  # a signals failure must never cost a message
                log.exception("grooming-risk signals failed for an event")

    async def drain(self) -> None:
        """Wait for scheduled work and for the states it wrote behind to be on disk
        (shutdown, and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._committer.barrier()

    def _parties(
        self, a: str, b: str, today: date | None = None
    ) -> tuple[Party, Party, str] | None:
        """Both parties and the adult, for an adult–minor pair; None otherwise (and for an
        account the relay doesn't know, deleted since). Only an adult–minor pair can bring
        a notice or a finding, so only those are scored (docs/SIGNALS.md). Bands as of
        ``today`` (a message's: the day it was sent), else the clock's date."""
        social = self._social
        if a not in social.accounts or b not in social.accounts:
            return None
        if today is None:
            today = social.today()
        band_a, band_b = social.band_of(a, today), social.band_of(b, today)
        a_minor = rules.is_minor(band_a)
        if a_minor == rules.is_minor(band_b):
            return None
        return Party(a, band_a), Party(b, band_b), b if a_minor else a

    def _apply(
        self,
        conversation: str,
        state: ConversationRisk,
        event: MessageEvent | ContactEvent,
        message: StoredMessage | None,
    ) -> ConversationRisk:
        """Score ``event`` against the conversation's state, keep the new state (in memory,
        and on disk with the next group commit), and send what it calls for: a notice to
        the minor, a finding to `child_safety`."""
        assert self.engine is not None
        social = self._social
        result = self.engine.evaluate(state, event)
        self._states[conversation] = result.state
        if self._on_disk is not None:
            self._on_disk.add(conversation)  # with the write below
        self._committer.submit_write(
            "INSERT INTO conversation_risk (conversation, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (conversation) DO UPDATE SET state = excluded.state, "
            "updated_at = excluded.updated_at",
            (conversation, encode_risk(result.state), event.at.timestamp()),
        )
        if result.notice is not None:
            notice = result.notice
            # In the chat where it happened: a group's notice goes in the group.
            where = message.conversation if message and group_of(message.conversation) else None
            social.emit(notice.to, "notice", notice.code, notice.text, notice.about, where)
            log.info("signals notice code=%s", notice.code)
        if result.finding is not None:
            draft = result.finding
            evidence = (
                [
                    Evidence(
                        sender=message.sender,
                        recipient=message.recipient,
                        mode="visible",
                        sent_at=message.sent_at,
                        franking="verified",  # the relay received it from the sender itself
                        text=message.body or "",
                    )
                ]
                if message is not None
                and message.mode == "visible"
                and message.msg_id in draft.message_ids
                else []
            )
            opening = self._safety.open_or_join_case(
                draft.subject,
                Finding(
                    source="signals",
                    score=min(1.0, draft.score / (2 * social.policy.signals.finding_at)),
                    explanation=f"Grooming-risk signals in the conversation with @{draft.minor} "
                    f"(score {draft.score:.1f}):\n{draft.explanation}",
                    involves_minor=True,
                    evidence=evidence,
                ),
            )
            self._start(lambda: opening)
            log.info("signals finding subject score=%.1f", draft.score)
        return result.state
