"""WebSocket frames (PROTOCOL.md §4–§6): msgspec Structs in two tagged unions.

Every frame is a JSON object whose ``type`` field names it. Decoding validates types and
sizes in the same step, so a handler only ever sees a well-formed frame. Byte fields travel
as standard base64 (msgspec's JSON encoding of ``bytes``); times are RFC 3339 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from protocol.limits import MAX_ACK_REFS, MAX_BODY_CHARS, NONCE_BYTES, SIGNATURE_BYTES

Handle = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{3,32}$")]
MessageId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
ConversationId = Annotated[str, msgspec.Meta(max_length=80)]
Body = Annotated[str, msgspec.Meta(max_length=MAX_BODY_CHARS)]
Signature = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]
Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]
Mode = Literal["visible", "e2ee"]


class Frame(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every frame; the subclass's tag is its ``type``."""


# --- client → relay -------------------------------------------------------------------


class Auth(Frame, tag="auth"):
    """Answer to `challenge`: the Ed25519 signature over ``auth_message(...)`` (§3)."""

    handle: Handle
    signature: Signature


class Send(Frame, tag="send"):
    """One message to one account. ``id`` is chosen by the sender and makes resends idempotent."""

    id: MessageId
    to: Handle
    mode: Mode
    body: Body


class MessageRef(msgspec.Struct, frozen=True, kw_only=True):
    """Names one delivered message: the sender's handle and the sender's id for it."""

    sender: Handle = msgspec.field(name="from")
    id: MessageId


class Ack(Frame, tag="ack"):
    """The recipient has stored these messages; the relay deletes them."""

    refs: Annotated[list[MessageRef], msgspec.Meta(min_length=1, max_length=MAX_ACK_REFS)]


# --- relay → client -------------------------------------------------------------------


class Challenge(Frame, tag="challenge"):
    """First frame on every connection."""

    nonce: Nonce
    relay_id: str
    server_time: datetime


class Ready(Frame, tag="ready"):
    """Authentication succeeded."""

    handle: Handle
    server_time: datetime


class Synced(Frame, tag="synced"):
    """Everything that was queued for this account when it connected has been sent."""


class Accepted(Frame, tag="accepted"):
    """The relay stored the `send` with this id durably (or had already stored it)."""

    id: MessageId
    conversation: ConversationId
    sent_at: datetime


class Deliver(Frame, tag="deliver"):
    """A message for the connected account. Acknowledge it with `ack` once stored."""

    id: MessageId
    sender: Handle = msgspec.field(name="from")
    to: Handle
    conversation: ConversationId
    mode: Mode
    body: Body
    sent_at: datetime


class Error(Frame, tag="error"):
    """A refusal. ``ref`` is the id of the `send` it refers to, when there is one."""

    code: str
    message: str
    ref: str | None = None


ClientFrame = Auth | Send | Ack
RelayFrame = Challenge | Ready | Synced | Accepted | Deliver | Error

CLIENT_FRAME_TYPES: frozenset[str] = frozenset({"auth", "send", "ack"})
RELAY_FRAME_TYPES: frozenset[str] = frozenset(
    {"challenge", "ready", "synced", "accepted", "deliver", "error"}
)


def conversation_id(a: str, b: str) -> str:
    """The id of the one-to-one conversation between two handles, the same from both ends."""
    first, second = sorted((a, b))
    return f"dm:{first}:{second}"
