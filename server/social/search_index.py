"""Directory search through a prefix index (issue #10): handles and display names, sorted,
so a query costs a binary search plus the matches it walks — not a scan of every account —
and one account's searches can't stall everyone else's messages."""

from __future__ import annotations

import bisect
from collections.abc import Iterator


class SearchIndex:
    def __init__(self) -> None:
        #: (key, handle), sorted: each account under its handle and its case-folded name.
        self._keys: list[tuple[str, str]] = []
        self._handles: set[str] = set()

    def __len__(self) -> int:
        return len(self._handles)

    def add(self, handle: str, display_name: str) -> None:
        if handle in self._handles:
            return
        self._handles.add(handle)
        for key in {handle, display_name.casefold()}:
            bisect.insort(self._keys, (key, handle))

    def rebuild(self, accounts: dict[str, str]) -> None:
        """From ``handle → display name``."""
        self._handles = set(accounts)
        self._keys = sorted(
            {(key, h) for h, name in accounts.items() for key in (h, name.casefold())}
        )

    def prefixed(self, prefix: str) -> Iterator[str]:
        """Handles whose handle or name starts with ``prefix`` (case-folded), each once, in
        key order; stop iterating early to pay only for what is used."""
        prefix = prefix.casefold()
        seen: set[str] = set()
        i = bisect.bisect_left(self._keys, (prefix, ""))
        while i < len(self._keys) and self._keys[i][0].startswith(prefix):
            handle = self._keys[i][1]
            if handle not in seen:
                seen.add(handle)
                yield handle
            i += 1
