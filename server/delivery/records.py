"""The relay's stored records, independent of the storage backend.

The per-message records are msgspec Structs rather than frozen dataclasses: several are
made for every message, and a Struct is made in a tenth of the time."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime

import msgspec

from protocol.attachments import AttachmentRef
from protocol.crypto.franking import relay_tag, timestamp_micros
from protocol.frames import Deliver, Kind, Mode
from protocol.ids import RANDOM_BYTES, time_ordered_id


def relay_message_id(at: datetime) -> str:
    """The id of one of the relay's own events made at ``at``: time-ordered, like the
    clients' (protocol/ids.py)."""
    return time_ordered_id(int(at.timestamp() * 1000), secrets.token_bytes(RANDOM_BYTES))


@dataclass(frozen=True, slots=True)
class AccountRecord:
    handle: str
    display_name: str
    identity_key: bytes
    dh_identity_key: bytes
    birthdate: date
    declaration: bytes  # the signed AgeDeclaration as the client sent it (JSON)
    created_at: datetime


class NewMessage(msgspec.Struct, frozen=True):
    """A `send` the relay has validated and is about to store."""

    sender: str
    msg_id: str
    recipient: str
    conversation: str
    mode: Mode
    body: str
    sent_at: datetime
    kind: Kind = "message"
    code: str | None = None
    request: bool = False
    #: e2ee only: the sender's franking commitment (PROTOCOL.md §6.4).
    commitment: bytes | None = None
    #: The blob the message names (protocol.attachments.AttachmentRef), or None.
    attachment: AttachmentRef | None = None


class StoredMessage(msgspec.Struct, frozen=True):
    """A message as stored: ``seq`` orders one recipient's queue."""

    seq: int
    sender: str
    msg_id: str
    recipient: str
    conversation: str
    mode: Mode
    body: str | None  # None once the recipient acknowledged it (body deleted)
    sent_at: datetime
    kind: Kind = "message"
    code: str | None = None
    request: bool = False
    commitment: bytes | None = None  # e2ee only; None once acknowledged
    attachment: AttachmentRef | None = None

    def franking_tag(self, franking_secret: bytes) -> bytes | None:
        """The relay's tag binding the commitment to sender, recipient and time (§6.4)."""
        if self.commitment is None:
            return None
        return relay_tag(
            franking_secret,
            self.commitment,
            self.sender,
            self.recipient,
            timestamp_micros(self.sent_at),
        )

    def to_deliver(self, franking_secret: bytes) -> Deliver:
        """The `deliver` frame; an e2ee message carries its commitment and the relay's tag."""
        return Deliver(
            id=self.msg_id,
            sender=self.sender,
            to=self.recipient,
            conversation=self.conversation,
            mode=self.mode,
            body=self.body or "",
            sent_at=self.sent_at,
            kind=self.kind,
            code=self.code,
            request=self.request,
            commitment=self.commitment,
            franking_tag=self.franking_tag(franking_secret),
            attachment=msgspec.UNSET if self.attachment is None else self.attachment,
        )


class AckRecord(msgspec.Struct, frozen=True):
    """The recipient stored the message ``(sender, msg_id)``."""

    recipient: str
    sender: str
    msg_id: str
