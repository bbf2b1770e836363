"""Constrained field types shared by frames and HTTP bodies (PROTOCOL.md §1)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocol.limits import MAX_BODY_CHARS, NONCE_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

Handle = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{3,32}$")]
MessageId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
ConversationId = Annotated[str, msgspec.Meta(max_length=80)]
Body = Annotated[str, msgspec.Meta(max_length=MAX_BODY_CHARS)]
Signature = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]
Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]
PublicKey = Annotated[bytes, msgspec.Meta(min_length=PUBLIC_KEY_BYTES, max_length=PUBLIC_KEY_BYTES)]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Mode = Literal["visible", "e2ee"]
