"""The grooming-risk signals (server/safety/signals/, docs/SIGNALS.md) applied on the relay:
every stored message becomes an event for its conversation's risk state; a notice goes to
the minor in the chat, a finding to the `child_safety` queue.

What the engine reads: the relay's facts about the pair (when they became contacts, who
reached out first, the adult's recent outreach to minors and pushback from them — never
content) for every conversation, and the text only of `visible` messages, which the engine
reads only from the adult to the minor. An `e2ee` message is passed with no text at all.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from protocol import policy as rules
from server.delivery.records import StoredMessage
from server.delivery.store import SqliteStore
from server.safety.service import Evidence, Finding, SafetyService
from server.safety.signals import (
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


class SignalsService:
    def __init__(self, store: SqliteStore, social: SocialService, safety: SafetyService) -> None:
        self._store = store
        self._social = social
        self._safety = safety
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

    def schedule(self, message: StoredMessage) -> None:
        """Score ``message`` in the background: not in the sender's connection (closing it
        must not cut the work short), one message at a time (each conversation's state is
        read, changed and written back)."""
        if self.engine is None or message.kind != "message" or message.seq == 0:
            return
        task = asyncio.create_task(self._guarded(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, message: StoredMessage) -> None:
        async with self._one_at_a_time:
            try:
                await self.on_message(message)
            except Exception:  # a signals failure must never cost a message
                log.exception("grooming-risk signals failed for a message")

    async def drain(self) -> None:
        """Wait for scheduled work (shutdown, and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def on_message(self, message: StoredMessage) -> None:
        """Score one stored message (never a relay event, never a dropped one)."""
        if self.engine is None or message.kind != "message" or message.seq == 0:
            return
        social = self._social
        sender, recipient = message.sender, message.recipient
        if sender not in social.accounts or recipient not in social.accounts:
            return
        bands = {h: social.band_of(h) for h in (sender, recipient)}
        minors = [h for h, b in bands.items() if rules.is_minor(b)]
        adult = next((h for h, b in bands.items() if not rules.is_minor(b)), None)
        adult = adult if minors else None
        event = MessageEvent(
            id=message.msg_id,
            sender=Party(sender, bands[sender]),
            recipient=Party(recipient, bands[recipient]),
            mode=message.mode,
            at=message.sent_at,
            # e2ee: no text reaches the engine at all (it couldn't read ciphertext anyway).
            text=message.body if message.mode == "visible" else None,
            facts=await self._facts(sender, recipient, adult, message.sent_at),
        )
        async with self._store.reader.execute(
            "SELECT state FROM conversation_risk WHERE conversation = ?", (message.conversation,)
        ) as cur:
            row = await cur.fetchone()
        result = self.engine.evaluate(decode_risk(None if row is None else bytes(row[0])), event)
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO conversation_risk (conversation, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (conversation) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
                (message.conversation, encode_risk(result.state), message.sent_at.timestamp()),
            )
        if result.notice is not None:
            notice = result.notice
            await social.emit(notice.to, "notice", notice.code, notice.text, notice.about)
            log.info("signals notice code=%s", notice.code)
        if result.finding is not None:
            draft = result.finding
            evidence = (
                [
                    Evidence(
                        sender=sender,
                        recipient=recipient,
                        mode="visible",
                        sent_at=message.sent_at,
                        franking="verified",  # the relay received it from the sender itself
                        text=message.body or "",
                    )
                ]
                if message.mode == "visible" and message.msg_id in draft.message_ids
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
