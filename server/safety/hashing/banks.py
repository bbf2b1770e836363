"""Hash banks on disk: ``<data-dir>/banks/<BANK>/<signal>.txt``.

A bank is a directory named like ``\\A[a-z0-9_]{1,32}\\Z`` holding up to one text file per
signal type (``pdq.txt``, ``sha256.txt``, ``md5.txt``). Each line is one hex hash (64 digits
for PDQ and SHA-256, 32 for MD5; stored lowercase, read in either case), optionally followed
by one space and a label (printable text, at most 200 characters) that travels with a match.
Blank lines and lines starting with ``#`` are ignored.

A malformed line is an error naming the file and the line (:class:`BankError`), never
skipped: a bank silently missing hashes would miss what it was meant to catch, so the
relay refuses to start on it as it does on a mistyped policy. So are a bank directory with
a name outside the pattern and a ``*.txt`` file that is not a signal's. Hidden entries
(``.lock``, editors' temporary files) and other files are ignored.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from server.safety.hashing.signals import HEX_LENGTH, SIGNALS, Signal

BANKS_DIRNAME: Final = "banks"
BANK_NAME: Final = re.compile(r"\A[a-z0-9_]{1,32}\Z")
MAX_LABEL: Final = 200
_HEX = {n: re.compile(rf"\A[0-9a-fA-F]{{{n}}}\Z") for n in set(HEX_LENGTH.values())}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class BankError(ValueError):
    """A bank that can't be read as written; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class BankEntry:
    hash: str
    label: str


def banks_dir(data_dir: Path) -> Path:
    """Where a relay's banks live."""
    return data_dir / BANKS_DIRNAME


def signal_file(bank_dir: Path, signal: Signal) -> Path:
    return bank_dir / f"{signal}.txt"


def check_bank_name(name: str) -> str:
    if not BANK_NAME.match(name):
        raise BankError(f"bank name {name!r}: use 1–32 of a-z, 0-9 and _")
    return name


def check_label(label: str) -> str:
    """A label as a bank line can hold it: one line of printable text."""
    label = label.strip()
    if _CONTROL.search(label):
        raise BankError("a label can't hold control characters or line breaks")
    if len(label) > MAX_LABEL:
        raise BankError(f"a label is at most {MAX_LABEL} characters")
    return label


def check_hash(signal: Signal, value: str) -> str:
    if not _HEX[HEX_LENGTH[signal]].match(value):
        raise BankError(f"a {signal} hash is {HEX_LENGTH[signal]} hex digits, got {value!r}")
    return value.lower()


def bank_dirs(root: Path) -> list[tuple[str, Path]]:
    """Every bank under ``root`` (the banks directory), sorted by name; none if it is
    missing."""
    if not root.is_dir():
        return []
    banks = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if not BANK_NAME.match(entry.name):
            raise BankError(f"{entry}: not a bank name (use 1–32 of a-z, 0-9 and _)")
        banks.append((entry.name, entry))
    return banks


def signal_files(bank_dir: Path) -> list[tuple[Signal, Path]]:
    """The signal files a bank holds, refusing ``*.txt`` files that are no signal's."""
    found: list[tuple[Signal, Path]] = []
    for entry in sorted(bank_dir.iterdir()):
        if entry.name.startswith(".") or entry.suffix != ".txt":
            continue
        signal = next((s for s in SIGNALS if entry.name == f"{s}.txt"), None)
        if signal is None:
            known = ", ".join(f"{s}.txt" for s in SIGNALS)
            raise BankError(f"{entry}: not a signal file (a bank holds {known})")
        found.append((signal, entry))
    return found


def read_signal_file(path: Path, signal: Signal) -> Iterator[BankEntry]:
    """The entries of one signal file in order (duplicates included), or BankError naming
    the first malformed line."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise BankError(f"{path} line {number}: not UTF-8 text") from None
            if not line or line.startswith("#"):
                continue
            value, _, label = line.partition(" ")
            try:
                yield BankEntry(check_hash(signal, value), check_label(label))
            except BankError as e:
                shown = line if len(line) <= 80 else line[:77] + "..."
                raise BankError(f"{path} line {number}: {e} (line: {shown!r})") from None


def bank_counts(root: Path) -> dict[str, dict[str, int]]:
    """bank → signal → distinct hashes, reading (and checking) every line as ``load`` does,
    without building an index."""
    counts: dict[str, dict[str, int]] = {}
    for bank, bank_dir in bank_dirs(root):
        counts[bank] = dict.fromkeys(SIGNALS, 0)
        for signal, path in signal_files(bank_dir):
            counts[bank][signal] = len({e.hash for e in read_signal_file(path, signal)})
    return counts


@contextmanager
def locked(bank_dir: Path) -> Iterator[None]:
    """Hold the bank's lock (one writer at a time; readers don't take it)."""
    bank_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(bank_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def append_entries(bank_dir: Path, signal: Signal, entries: list[BankEntry]) -> None:
    """Append lines to a signal file and flush them to disk. Call under ``locked``, with
    entries the bank doesn't hold yet (``existing_hashes``)."""
    if not entries:
        return
    path = signal_file(bank_dir, signal)
    text = "".join(f"{e.hash} {e.label}\n" if e.label else f"{e.hash}\n" for e in entries)
    needs_newline = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
    with path.open("a", encoding="utf-8") as f:
        f.write(("\n" if needs_newline else "") + text)
        f.flush()
        os.fsync(f.fileno())


def existing_hashes(bank_dir: Path, signal: Signal) -> set[str]:
    path = signal_file(bank_dir, signal)
    return {e.hash for e in read_signal_file(path, signal)} if path.exists() else set()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
