"""Directory search through a prefix index (issue #10): handles and display names, sorted,
so a query costs a binary search plus the matches it walks — not a scan of every account —
and one account's searches can't stall everyone else's messages.

The entries are kept as two parallel lists sorted by (key, handle), so a lookup bisects
plain strings and a rebuild sorts strings, not tuples (bench/relay_search.py: the lazy
build at the first search after a start stalls the relay for it, ~0.4 s at 100,000 accounts
with tuples)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from operator import itemgetter

_KEY = itemgetter(0)


class SearchIndex:
    def __init__(self) -> None:
        #: Each account under its handle and its case-folded name, sorted by (key, handle):
        #: ``_keys[i]`` is the key of ``_owners[i]``.
        self._keys: list[str] = []
        self._owners: list[str] = []
        self._handles: set[str] = set()

    def __len__(self) -> int:
        return len(self._handles)

    def add(self, handle: str, display_name: str) -> None:
        if handle in self._handles:
            return
        self._handles.add(handle)
        keys, owners = self._keys, self._owners
        for key in {handle, display_name.casefold()}:
            # After the entries with the same key and a smaller handle: (key, handle) order.
            i = bisect.bisect_left(keys, key)
            while i < len(keys) and keys[i] == key and owners[i] < handle:
                i += 1
            keys.insert(i, key)
            owners.insert(i, handle)

    def rebuild(self, accounts: dict[str, str]) -> None:
        """From ``handle → display name``."""
        self._handles = set(accounts)
        entries = []
        for handle in sorted(accounts):
            entries.append((handle, handle))
            name = accounts[handle].casefold()
            if name != handle:
                entries.append((name, handle))
        # Stable, by key alone: equal keys stay in handle order, and strings sort faster
        # than tuples.
        entries.sort(key=_KEY)
        self._keys = [key for key, _ in entries]
        self._owners = [handle for _, handle in entries]

    def prefixed(self, prefix: str) -> Iterator[str]:
        """Handles whose handle or name starts with ``prefix`` (case-folded), each once, in
        key order; stop iterating early to pay only for what is used."""
        prefix = prefix.casefold()
        keys, owners = self._keys, self._owners
        seen: set[str] = set()
        i = bisect.bisect_left(keys, prefix)
        end = len(keys)
        while i < end and keys[i].startswith(prefix):
            handle = owners[i]
            if handle not in seen:
                seen.add(handle)
                yield handle
            i += 1
