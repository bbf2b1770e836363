"""Matching a file against every bank: exact SHA-256/MD5 lookups and a PDQ range search.

The PDQ index is threatexchange's ``PDQMultiHashIndex`` (faiss ``IndexBinaryMultiHash``,
16 maps of 16 bits: multi-index hashing, the index HMA's PDQ signal type uses). For any
``pdq_max_distance`` it finds every bank hash within the distance, not an approximation:
with 16 chunks and ``distance // 16`` bit flips probed per chunk, a hash within the
distance agrees with the query on at least one chunk up to those flips (pigeonhole). At
1M hashes a lookup takes well under a millisecond (bench/hash_matching.py).

Threads: a matcher never changes after ``load``, and a lookup only reads it, so any number
of threads may match at once. Matching is CPU work (decoding, PDQ ~50 ms for a 1024×768
image, up to ~0.8 s and ~250 MB for the largest image decoded: hashes.py), so an asyncio
caller runs it off the event loop, a bounded number at a time::

    scan = await asyncio.to_thread(matcher.scan_path, blob_path)

To apply changed banks, load a new matcher (also in a thread) and replace the reference;
``banks_fingerprint`` says whether the files changed since a matcher was loaded.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from threatexchange.signal_type.pdq.pdq_faiss_matcher import PDQMultiHashIndex

from protocol.policy import HashMatching
from server.safety.hashing.banks import bank_dirs, read_signal_file, signal_files
from server.safety.hashing.hashes import (
    PdqResult,
    PdqSkip,
    exact_hashes_of_bytes,
    exact_hashes_of_path,
    pdq_of,
)
from server.safety.hashing.signals import EXACT, SIGNALS, Signal


@dataclass(frozen=True, slots=True)
class Match:
    """One bank entry a file matched."""

    bank: str
    signal: Signal
    #: Hamming distance for PDQ (0–256); 0 for an exact hash.
    distance: int
    #: The bank's hash that matched (hex).
    matched_hash: str
    #: The bank line's label, or "".
    label: str
    #: The PDQ quality of the scanned image for a PDQ match; None for an exact one.
    quality: int | None


@dataclass(frozen=True, slots=True)
class Scan:
    """Everything one lookup learned: the file's own hashes (for a case's evidence), why PDQ
    was not looked up if it wasn't, and the matches (exact first, then by distance)."""

    #: signal → the scanned file's hash (hex); ``pdq`` only when the file is an image PDQ
    #: hashed, whatever its quality.
    hashes: Mapping[str, str]
    pdq_quality: int | None
    #: Why PDQ was not looked up; None when it was. ``not_an_image`` (no image format the
    #: matcher opens), ``undecodable`` (an image nothing could be decoded from),
    #: ``too_large_to_decode`` (an image refused for its size, unchecked: hold it for
    #: review, never pass it as clean) or ``low_quality`` (hashed, below the policy's
    #: floor). hashes.py's docstring says more about each.
    pdq_skipped: PdqSkip | None
    matches: tuple[Match, ...] = field(default=())


class _PdqBank:
    """Every bank's PDQ hashes in one index; row i's bank and label beside it."""

    def __init__(self, rows: list[tuple[str, int, str]], bank_names: list[str]) -> None:
        self.bank_names = bank_names
        self.size = len(rows)
        self._banks = array("H", (bank for _, bank, _ in rows))
        labels: dict[str, str] = {}  # one string object per distinct label
        self._labels = [labels.setdefault(label, label) for _, _, label in rows]
        self._index = PDQMultiHashIndex()
        if rows:
            self._index.add([h for h, _, _ in rows], range(len(rows)))

    def search(self, queries: list[str], max_distance: int) -> dict[int, tuple[str, int]]:
        """row → (bank hash, smallest distance to any query) for rows within the distance."""
        if self.size == 0 or not queries:
            return {}
        # The wrapper sets the index's probe depth from the distance before searching; every
        # caller passes the same distance, so concurrent searches write the same value.
        found = self._index.search_with_distance_in_result(queries, max_distance)
        best: dict[int, tuple[str, int]] = {}
        for results in found.values():
            for row, bank_hash, distance in results:
                d = int(distance)
                if row not in best or d < best[row][1]:
                    best[row] = (bank_hash, d)
        return best

    def entry(self, row: int) -> tuple[str, str]:
        return self.bank_names[self._banks[row]], self._labels[row]


class HashMatcher:
    """The banks in memory, with the policy's thresholds. Build it with :meth:`load`."""

    def __init__(
        self,
        settings: HashMatching,
        exact: dict[str, dict[str, list[tuple[str, str]]]],
        pdq: _PdqBank,
        counts: dict[str, dict[str, int]],
        fingerprint: str,
    ) -> None:
        self.settings = settings
        #: banks_fingerprint() of the files it was loaded from.
        self.fingerprint = fingerprint
        self._exact = exact  # signal → hash → [(bank, label)]
        self._pdq = pdq
        self._counts = counts

    @classmethod
    def load(cls, banks_dir: Path, settings: HashMatching) -> HashMatcher:
        """Read every bank under ``banks_dir`` (``<data-dir>/banks``; missing: no banks).
        Raises BankError naming the file and line of the first malformed line. Takes
        seconds at a million PDQ hashes: call it before serving, or in a thread."""
        fingerprint = banks_fingerprint(banks_dir)
        exact: dict[str, dict[str, list[tuple[str, str]]]] = {s: {} for s in EXACT}
        pdq_rows: list[tuple[str, int, str]] = []
        counts: dict[str, dict[str, int]] = {}
        names: list[str] = []
        for bank, bank_dir in bank_dirs(banks_dir):
            bank_index = len(names)
            names.append(bank)
            counts[bank] = dict.fromkeys(SIGNALS, 0)
            for signal, path in signal_files(bank_dir):
                seen: set[str] = set()
                for entry in read_signal_file(path, signal):
                    if entry.hash in seen:
                        continue  # the first line's label wins
                    seen.add(entry.hash)
                    if signal == "pdq":
                        pdq_rows.append((entry.hash, bank_index, entry.label))
                    else:
                        exact[signal].setdefault(entry.hash, []).append((bank, entry.label))
                counts[bank][signal] = len(seen)
        return cls(settings, exact, _PdqBank(pdq_rows, names), counts, fingerprint)

    @classmethod
    def empty(cls, settings: HashMatching | None = None) -> HashMatcher:
        """A matcher with no banks: matches nothing."""
        exact: dict[str, dict[str, list[tuple[str, str]]]] = {s: {} for s in EXACT}
        return cls(
            settings or HashMatching(), exact, _PdqBank([], []), {}, hashlib.sha256().hexdigest()
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """bank → signal → distinct hashes it holds (every signal listed, 0 if none)."""
        return {bank: dict(by_signal) for bank, by_signal in self._counts.items()}

    # --- lookups (thread-safe) -------------------------------------------------------------

    def match_bytes(self, data: bytes) -> list[Match]:
        """The bank entries ``data`` matches (empty: none, or an image that could not be
        checked: :meth:`scan_bytes` tells them apart)."""
        return list(self.scan_bytes(data).matches)

    def match_path(self, path: Path) -> list[Match]:
        """The bank entries the file at ``path`` matches; exact hashes are streamed. Empty
        also for an image that could not be checked (:meth:`scan_path` tells them apart)."""
        return list(self.scan_path(path).matches)

    def scan_bytes(self, data: bytes) -> Scan:
        return self._scan(exact_hashes_of_bytes(data), pdq_of(data))

    def scan_path(self, path: Path) -> Scan:
        """The file's hashes, its matches and ``pdq_skipped``: a caller holds a file with
        ``too_large_to_decode`` (an image nobody checked) rather than passing it."""
        return self._scan(exact_hashes_of_path(path), pdq_of(path))

    def _scan(self, exact_hashes: dict[str, str], pdq: PdqResult) -> Scan:
        matches: list[Match] = []
        for signal in EXACT:
            if signal not in self.settings.exact:
                continue
            for bank, label in self._exact[signal].get(exact_hashes[signal], ()):
                matches.append(Match(bank, signal, 0, exact_hashes[signal], label, None))
        hashes = dict(exact_hashes)
        skipped = pdq.skipped
        if pdq.hash is not None:
            hashes["pdq"] = pdq.hash
            if pdq.quality is None or pdq.quality < self.settings.pdq_min_quality:
                skipped = "low_quality"
            else:
                queries = [pdq.hash] + ([pdq.displayed] if pdq.displayed else [])
                found = self._pdq.search(queries, self.settings.pdq_max_distance)
                for row, (bank_hash, distance) in found.items():
                    bank, label = self._pdq.entry(row)
                    matches.append(Match(bank, "pdq", distance, bank_hash, label, pdq.quality))
        matches.sort(key=lambda m: (m.distance, SIGNALS.index(m.signal), m.bank, m.matched_hash))
        return Scan(MappingProxyType(hashes), pdq.quality, skipped, tuple(matches))


def banks_fingerprint(banks_dir: Path) -> str:
    """A digest of every bank file's name, size and modification time: differs from a
    matcher's ``fingerprint`` once a bank was added to or edited (cheap to poll)."""
    digest = hashlib.sha256()
    try:
        for bank, bank_dir in bank_dirs(banks_dir):
            for signal, path in signal_files(bank_dir):
                stat = path.stat()
                digest.update(f"{bank}/{signal}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    except (OSError, ValueError) as e:  # a broken bank: changed, and load() will say how
        digest.update(f"error:{e}".encode())
    return digest.hexdigest()
