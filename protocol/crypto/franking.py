"""Message franking (Facebook, "Messenger Secret Conversations" technical whitepaper, and
Grubbs, Lu, Ristenpart, "Message Franking via Committing AEAD", CRYPTO 2017).

The sender picks a fresh franking key ``fk`` per message and commits to the text:
``commitment = HMAC-SHA256(fk, context ‖ mode ‖ text)``. ``fk`` travels *inside* the
end-to-end ciphertext (``FrankedPlaintext`` is what the ratchet encrypts); the commitment
travels beside it, where the relay sees it and binds it to the routing facts with a key
only it knows: ``tag = HMAC-SHA256(relay_secret, context ‖ commitment ‖ sender ‖ recipient
‖ timestamp)``. The recipient checks the commitment when it decrypts and drops the
message on a mismatch; to report, it hands the relay ``(text, fk, commitment, tag,
sender, recipient, timestamp)`` and the relay recomputes both. The relay learns nothing
about messages nobody reports. Fields are length-prefixed (u16 BE), the timestamp is a
u64 BE integer (whatever unit the caller uses, the same on both sides); the mode binds
the commitment to the conversation's mode (PROTOCOL.md §6.4).

A message may carry an `e2ee` attachment (PROTOCOL.md §6.6): its ``AttachmentKey`` rides in
the franked plaintext and the file's SHA-256 in the commitment, so a verified report also
proves which file the message carried. Without an attachment every byte is as before.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, get_args

import msgspec

from protocol.crypto.attachment import DIGEST_BYTES, AttachmentKey
from protocol.crypto.errors import CryptoError
from protocol.crypto.kdf import equal, hmac_sha256
from protocol.crypto.keys import Random, check_size
from protocol.types import Mode

FRANKING_KEY_BYTES: Final = 32
TAG_BYTES: Final = 32
#: Shortest relay secret accepted (it is an HMAC key; 32 random bytes is the norm).
RELAY_SECRET_MIN_BYTES: Final = 32
COMMITMENT_CONTEXT: Final = b"agechat/franking/commitment/v1"
#: The context of a commitment to a message that carries an attachment (``commitment``).
ATTACHMENT_COMMITMENT_CONTEXT: Final = b"agechat/franking/commitment+attachment/v1"
RELAY_TAG_CONTEXT: Final = b"agechat/franking/relay-tag/v1"
_MODES: frozenset[str] = frozenset(get_args(Mode))
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class FrankedPlaintext(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The bytes the ratchet encrypts: the text and its franking key (msgpack map), and the
    attachment's key and digest when there is one. ``omit_defaults``: a message without an
    attachment encodes exactly as before the field existed (a two-key map)."""

    text: str
    franking_key: Annotated[
        bytes, msgspec.Meta(min_length=FRANKING_KEY_BYTES, max_length=FRANKING_KEY_BYTES)
    ]
    attachment: AttachmentKey | None = None
    #: A group message's group id (PROTOCOL.md §6.8): inside the ciphertext, so the relay
    #: can't move a member's copy into another conversation. Absent in a direct message.
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Franked:
    """What ``frank`` returns: the plaintext to encrypt and the commitment to send beside it."""

    plaintext: bytes
    commitment: bytes


def _length_prefixed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def commitment(
    franking_key: bytes, text: str, mode: str, attachment_digest: bytes | None = None
) -> bytes:
    """HMAC-SHA256(fk, context ‖ mode ‖ text): the sender's commitment to the text; with an
    attachment, HMAC-SHA256(fk, attachment context ‖ mode ‖ LP(sha256 of the file) ‖ text).

    Why the two forms can't collide (PROTOCOL.md §6.4.5, §6.6): each input starts with a
    length-prefixed context and the two contexts differ, so the first field alone tells the
    forms apart, whatever bytes the text holds. Reusing the v1 context and inserting
    ``LP("attachment") ‖ LP(digest)`` after the mode would not do: the text is the unprefixed
    tail, so a plain message whose text began with those very bytes (a NUL, a newline,
    "attachment", and a digest ground until it is valid UTF-8) would give the same input.
    Within each form every field but the text is length-prefixed, so it parses one way only.
    """
    check_size(franking_key, FRANKING_KEY_BYTES, "franking key")
    if mode not in _MODES:
        raise CryptoError("invalid_mode")
    if attachment_digest is None:
        # Exactly the v1 input (§6.4.5): unchanged, so every earlier commitment still holds.
        prefix = _length_prefixed(COMMITMENT_CONTEXT, mode.encode())
    else:
        check_size(attachment_digest, DIGEST_BYTES, "attachment digest")
        prefix = _length_prefixed(ATTACHMENT_COMMITMENT_CONTEXT, mode.encode(), attachment_digest)
    return hmac_sha256(franking_key, prefix + text.encode())


def frank(
    text: str,
    mode: str,
    *,
    attachment: AttachmentKey | None = None,
    group: str | None = None,
    random: Random = os.urandom,
) -> Franked:
    """Sender side: a fresh franking key, the inner plaintext carrying it (and the
    attachment's key, if any, and the group a group message is for), the commitment (to
    the text and the file's digest)."""
    fk = check_size(random(FRANKING_KEY_BYTES), FRANKING_KEY_BYTES, "random output")
    inner = msgspec.msgpack.encode(
        FrankedPlaintext(text=text, franking_key=fk, attachment=attachment, group=group)
    )
    digest = None if attachment is None else attachment.sha256
    return Franked(inner, commitment(fk, text, mode, digest))


def unfrank(plaintext: bytes, received_commitment: bytes, mode: str) -> FrankedPlaintext:
    """Recipient side, after decryption: decode and check the commitment (drop on mismatch)."""
    try:
        inner = msgspec.msgpack.decode(plaintext, type=FrankedPlaintext)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # Text that isn't UTF-8 is as undecryptable as any other bad plaintext.
        raise CryptoError("invalid_plaintext") from exc
    digest = None if inner.attachment is None else inner.attachment.sha256
    expected = commitment(inner.franking_key, inner.text, mode, digest)
    if not equal(expected, received_commitment):
        raise CryptoError("franking_mismatch")
    return inner


def timestamp_micros(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch of a tz-aware ``moment``: the relay tag's
    timestamp (PROTOCOL.md §6.4). Exact integer arithmetic, no float on the way."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the moment must carry a UTC offset")
    return (moment - _EPOCH) // _MICROSECOND


def relay_tag(
    relay_secret: bytes, message_commitment: bytes, sender: str, recipient: str, timestamp: int
) -> bytes:
    """Relay side, on delivery: HMAC-SHA256(relay_secret, context ‖ c ‖ from ‖ to ‖ time)."""
    if len(relay_secret) < RELAY_SECRET_MIN_BYTES:
        raise CryptoError("invalid_key", "relay secret too short")
    check_size(message_commitment, TAG_BYTES, "commitment")
    if not 0 <= timestamp < 2**64:
        raise ValueError("timestamp must fit in a u64")
    data = _length_prefixed(
        RELAY_TAG_CONTEXT,
        message_commitment,
        sender.encode(),
        recipient.encode(),
        struct.pack(">Q", timestamp),
    )
    return hmac_sha256(relay_secret, data)


def verify_report(
    relay_secret: bytes,
    *,
    text: str,
    franking_key: bytes,
    reported_commitment: bytes,
    reported_tag: bytes,
    sender: str,
    recipient: str,
    timestamp: int,
    mode: str,
    attachment_digest: bytes | None = None,
) -> bool:
    """Relay side, on a report: is this the text ``sender`` sent ``recipient`` at ``timestamp``
    (and, given ``attachment_digest``, with the file of that SHA-256 attached)?"""
    if len(franking_key) != FRANKING_KEY_BYTES or len(reported_commitment) != TAG_BYTES:
        return False
    if len(reported_tag) != TAG_BYTES:
        return False
    if attachment_digest is not None and len(attachment_digest) != DIGEST_BYTES:
        return False
    recomputed = commitment(franking_key, text, mode, attachment_digest)
    expected_tag = relay_tag(relay_secret, recomputed, sender, recipient, timestamp)
    # Both compares run whatever the first one says (constant time, no early exit).
    same_commitment = equal(recomputed, reported_commitment)
    same_tag = equal(expected_tag, reported_tag)
    return same_commitment & same_tag
