"""The signal types a bank holds, without importing any hashing library (the admin CLI
imports this at start)."""

from __future__ import annotations

from typing import Final, Literal

Signal = Literal["pdq", "sha256", "md5"]
ExactSignal = Literal["sha256", "md5"]
SIGNALS: Final[tuple[Signal, ...]] = ("pdq", "sha256", "md5")
EXACT: Final[tuple[ExactSignal, ...]] = ("sha256", "md5")
#: Hex digits per signal.
HEX_LENGTH: Final[dict[str, int]] = {"pdq": 64, "sha256": 64, "md5": 32}
