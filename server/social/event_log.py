"""The contact-event log in memory: what rate limits, restriction and the grooming-risk
signals count (docs/POLICY.md "Restriction").

Counting it in SQLite cost a thread hop per question, several per message to a stranger
(bench/RESULTS.md, "Where the time goes"). The relay loads the log's recent rows at start,
answers every count from here, and writes each new event behind, in the group commit's next
transaction: memory is the authority while the relay runs, the table only carries the log
across a restart. An event is on disk no later than any message accepted after it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable


class ContactEventLog:
    """Per actor and event: (time, target, target is a minor), in time order."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], list[tuple[float, str, bool]]] = {}

    def load(self, rows: Iterable[tuple[str, str, str, bool, float]]) -> None:
        """(actor, target, event, target_minor, created_at) rows, replacing what is held."""
        self._events.clear()
        for actor, target, event, minor, at in rows:
            self.add(actor, target, event, minor, at)

    def add(self, actor: str, target: str, event: str, target_minor: bool, at: float) -> None:
        entries = self._events.setdefault((actor, event), [])
        entry = (at, target, target_minor)
        if not entries or entries[-1][0] <= at:
            entries.append(entry)
        else:  # an injected clock set back (tests, the simulator)
            insort(entries, entry)

    def _since(self, actor: str, event: str, since: float) -> list[tuple[float, str, bool]]:
        entries = self._events.get((actor, event))
        if not entries:
            return []
        return entries[bisect_left(entries, since, key=lambda e: e[0]) :]

    def count(
        self,
        actor: str,
        events: tuple[str, ...],
        since: float,
        *,
        to_minors: bool = False,
        distinct_targets: bool = False,
    ) -> int:
        if not to_minors and not distinct_targets:
            return sum(len(self._since(actor, event, since)) for event in events)
        targets: set[str] = set()
        total = 0
        for event in events:
            for _, target, minor in self._since(actor, event, since):
                if to_minors and not minor:
                    continue
                total += 1
                targets.add(target)
        return len(targets) if distinct_targets else total

    def has(self, actor: str, target: str, event: str, since: float) -> bool:
        return any(t == target for _, t, _ in self._since(actor, event, since))

    def prune(self, before: float) -> None:
        """Forget events older than ``before`` (the table is pruned alike)."""
        for key in list(self._events):
            kept = self._since(key[0], key[1], before)
            if kept:
                self._events[key] = kept
            else:
                del self._events[key]
