"""Constrained field types shared by frames and HTTP bodies (PROTOCOL.md §1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from protocol.limits import MAX_BODY_CHARS, NONCE_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

Handle = Annotated[str, msgspec.Meta(pattern=r"\A[a-z0-9_]{3,32}\Z")]
MessageId = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_-]{8,64}\Z")]
ConversationId = Annotated[str, msgspec.Meta(max_length=80)]
Body = Annotated[str, msgspec.Meta(max_length=MAX_BODY_CHARS)]
Signature = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]
Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]
PublicKey = Annotated[bytes, msgspec.Meta(min_length=PUBLIC_KEY_BYTES, max_length=PUBLIC_KEY_BYTES)]
#: 1–64 characters, no control characters (a name can't fake lines in someone's terminal).
DisplayName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"\A[^\x00-\x1f\x7f-\x9f]+\Z")
]
Mode = Literal["visible", "e2ee"]
#: A time with an explicit offset (RFC 3339); a time without one is refused, never guessed.
Time = Annotated[datetime, msgspec.Meta(tz=True)]
