"""How much waits at the relay for each recipient, and from each sender to each recipient
(issue #10): a `send` that would go past the policy's `limits.*_waiting_*` is refused
`quota_exceeded` before it is stored — nothing already accepted is ever dropped. Counted in
memory as messages are stored and acknowledged, loaded at start, and recounted from the
store by the relay's hourly pruning (so a message withdrawn without an ack can't leave a
count behind for long)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from protocol.codec import utf8_size
from protocol.policy import Limits
from server.delivery.records import AckRecord, StoredMessage
from server.delivery.store import SqliteStore


class WaitingQuota:
    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        #: recipient → [messages, bytes]; (sender, recipient) → [messages, bytes]
        self._to: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._pair: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        #: (sender, msg id) → (bytes, its recipient's counts, its pair's counts) of each
        #: message waiting
        self._waiting: dict[tuple[str, str], tuple[int, list[int], list[int]]] = {}

    async def load(self, store: SqliteStore) -> None:
        """Recount from the store (at start, and from time to time)."""
        self._to.clear()
        self._pair.clear()
        self._waiting.clear()
        async with store.reader.execute(
            "SELECT sender, msg_id, recipient, COALESCE(LENGTH(CAST(body AS BLOB)), 0) "
            "FROM messages WHERE acked_at IS NULL AND kind = 'message'"
        ) as cur:
            for sender, msg_id, recipient, size in await cur.fetchall():
                self._add(str(sender), str(msg_id), str(recipient), int(size or 0))

    def refusal(self, sender: str, recipient: str, size: int) -> str | None:
        """``quota_exceeded`` if one more message of ``size`` bytes would go past a limit."""
        lim = self._limits
        to = self._to.get(recipient, (0, 0))
        pair = self._pair.get((sender, recipient), (0, 0))
        if (
            to[0] + 1 > lim.messages_waiting_per_recipient
            or to[1] + size > lim.bytes_waiting_per_recipient
            or pair[0] + 1 > lim.messages_waiting_per_pair
            or pair[1] + size > lim.bytes_waiting_per_pair
        ):
            return "quota_exceeded"
        return None

    def stored(self, messages: Iterable[StoredMessage]) -> None:
        for m in messages:
            if m.kind == "message":
                self._add(m.sender, m.msg_id, m.recipient, utf8_size(m.body or ""))

    def acked(self, acks: Iterable[AckRecord]) -> None:
        waiting = self._waiting
        for ack in acks:
            found = waiting.pop((ack.sender, ack.msg_id), None)
            if found is not None:
                size, to, pair = found
                to[0] -= 1
                to[1] -= size
                pair[0] -= 1
                pair[1] -= size

    def _add(self, sender: str, msg_id: str, recipient: str, size: int) -> None:
        key = (sender, msg_id)
        if key in self._waiting:
            return
        to, pair = self._to[recipient], self._pair[(sender, recipient)]
        # The counts themselves, not their keys: an ack needs no lookup but its own.
        self._waiting[key] = (size, to, pair)
        to[0] += 1
        to[1] += size
        pair[0] += 1
        pair[1] += size
