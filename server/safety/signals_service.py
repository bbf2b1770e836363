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
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from protocol import policy as rules
from protocol.frames import conversation_id
from protocol.groups import group_of
from server.delivery.records import StoredMessage
from server.delivery.store import SqliteStore
from server.safety.service import Evidence, Finding, SafetyService
from server.safety.signals import (
    ContactEvent,
    ContactFacts,
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


#: What a minor does to a contact that counts as pushback (docs/SIGNALS.md).
PushbackKind = Literal["declined", "blocked", "reported"]


class SignalsService:
    def __init__(
        self,
        store: SqliteStore,
        social: SocialService,
        safety: SafetyService,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
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

    async def _facts(self, a: str, b: str, adult: str | None, now: datetime) -> ContactFacts:
        low, high = sorted((a, b))
        async with self._store.reader.execute(
            "SELECT state, requester, updated_at FROM contacts WHERE low = ? AND high = ?",
            (low, high),
        ) as cur:
            row = await cur.fetchone()
        since = (
            datetime.fromtimestamp(row[2], UTC)
            if row is not None and row[0] == "connected"
            else None
        )
        outreach = pushback = 0
        if adult is not None:
            window = now - timedelta(days=self._social.policy.restriction.window_days)
            events = self._social.social
            outreach = await events.count_events(
                adult, (NEW_CONTACT,), window, to_minors=True, distinct_targets=True
            )
            pushback = await events.count_events(
                adult,
                (DECLINED_BY_MINOR, BLOCKED_BY_MINOR, REPORTED_BY_MINOR),
                window,
                distinct_targets=True,
            )
        return ContactFacts(
            since=since,
            initiator=None if row is None else str(row[1]),
            adult_recent_minor_contacts=outreach,
            adult_pushback_from_minors=pushback,
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
        """Score ``message`` in the background: not in the sender's connection (closing it
        must not cut the work short), one event at a time (each conversation's state is
        read, changed and written back)."""
        if self.engine is None or message.kind != "message" or message.seq == 0:
            return
        self._start(lambda: self.on_message(message))

    def schedule_pushback(self, kind: PushbackKind, actor: str, target: str) -> None:
        """``actor`` declined, blocked or reported ``target``: an event in their
        conversation (it counts when a minor does it to an adult)."""
        if self.engine is None:
            return
        at = self._clock()
        self._start(lambda: self.on_pushback(kind, actor, target, at))

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
        """Wait for scheduled work (shutdown, and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _parties(self, a: str, b: str) -> tuple[Party, Party, str | None] | None:
        """Both parties, and the adult of an adult–minor pair (else None); None for an
        account the relay doesn't know (deleted since)."""
        social = self._social
        if a not in social.accounts or b not in social.accounts:
            return None
        pa, pb = Party(a, social.band_of(a)), Party(b, social.band_of(b))
        minors = rules.is_minor(pa.band) + rules.is_minor(pb.band)
        adult = next((p.handle for p in (pa, pb) if not rules.is_minor(p.band)), None)
        return pa, pb, adult if minors == 1 else None

    async def on_message(self, message: StoredMessage) -> None:
        """Score one stored message (never a relay event, never a dropped one)."""
        if self.engine is None or message.kind != "message" or message.seq == 0:
            return
        found = self._parties(message.sender, message.recipient)
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
            facts=await self._facts(sender.handle, recipient.handle, adult, message.sent_at),
            recipient_local_time=self.local_time(recipient.handle, message.sent_at),
        )
        key = message.conversation
        if group_of(key) is not None:  # a group: each pair in it has its own score
            low, high = sorted((sender.handle, recipient.handle))
            key = f"{key}:{low}:{high}"
        await self._apply(key, event, message)

    async def on_pushback(self, kind: PushbackKind, actor: str, target: str, at: datetime) -> None:
        """``actor`` declined, blocked or reported ``target`` at ``at``."""
        found = self._parties(actor, target)
        if self.engine is None or found is None:
            return
        a, b, adult = found
        event = ContactEvent(
            id=f"{kind}:{actor}:{int(at.timestamp())}",
            kind=kind,
            actor=a,
            target=b,
            mode=self._social.mode(actor, target),
            at=at,
            facts=await self._facts(actor, target, adult, at),
        )
        await self._apply(conversation_id(actor, target), event, None)

    async def _apply(
        self,
        conversation: str,
        event: MessageEvent | ContactEvent,
        message: StoredMessage | None,
    ) -> None:
        """Score ``event`` against the conversation's stored state, keep the new state, and
        send what it calls for: a notice to the minor, a finding to `child_safety`."""
        assert self.engine is not None
        social = self._social
        async with self._store.reader.execute(
            "SELECT state FROM conversation_risk WHERE conversation = ?", (conversation,)
        ) as cur:
            row = await cur.fetchone()
        result = self.engine.evaluate(decode_risk(None if row is None else bytes(row[0])), event)
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO conversation_risk (conversation, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (conversation) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
                (conversation, encode_risk(result.state), event.at.timestamp()),
            )
        if result.notice is not None:
            notice = result.notice
            # In the chat where it happened: a group's notice goes in the group.
            where = message.conversation if message and group_of(message.conversation) else None
            await social.emit(notice.to, "notice", notice.code, notice.text, notice.about, where)
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
            await self._safety.open_or_join_case(
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
            log.info("signals finding subject score=%.1f", draft.score)
