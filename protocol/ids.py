"""Message ids that sort by the time they were made (PROTOCOL.md §1, "Message ids").

The layout is the one ULID and UUIDv7 (RFC 9562 §5.7) use: a 48-bit big-endian count of
Unix milliseconds, then 80 random bits. It is written in RFC 4648 §7's "base32hex"
alphabet (``0-9A-V``), whose characters are in ASCII order, so the ids of one sender sort
as the times they were made and 26 characters fit the message-id syntax. Why it matters:
the relay keeps (id, sender) unique in an index keyed by id first, and ids made at about
the same time land in the same few pages of it (bench/RESULTS.md). Uniqueness still rests
on the random bits; the time is the client's and need not be right.

No clock and no randomness here (protocol/ does no I/O): the caller passes both.
"""

from __future__ import annotations

import base64

#: Random bytes after the time: 80 bits, as in ULID and RFC 9562 §5.7.
RANDOM_BYTES = 10
#: 48 bits of milliseconds: until the year 10889.
_MAX_MILLIS = 2**48 - 1


def time_ordered_id(unix_millis: int, random: bytes) -> str:
    """The 26-character id of ``random`` made at ``unix_millis``."""
    if len(random) != RANDOM_BYTES:
        raise ValueError(f"a message id needs {RANDOM_BYTES} random bytes")
    if not 0 <= unix_millis <= _MAX_MILLIS:
        raise ValueError("the time must fit in 48 bits of milliseconds")
    raw = unix_millis.to_bytes(6, "big") + random
    # 16 bytes → 26 characters and 6 "=" of padding (RFC 4648 §7): the padding goes.
    return base64.b32hexencode(raw).decode("ascii").rstrip("=")
