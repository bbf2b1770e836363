"""The body of an ``e2ee`` message on the wire (PROTOCOL.md §6.4). Pure: bytes in, bytes out.

The body string is the standard base64 of an envelope:

    version (u8 = 1) ‖ kind (u8: 0 = message, 1 = initial)
    ‖ [kind 1 only: IK_A (32) ‖ EK_A (32) ‖ spk_id (u32 BE) ‖ opk_id (u32 BE) ‖ has_opk (u8)]
    ‖ Double Ratchet message (header 41 ‖ nonce 24 ‖ ciphertext ‖ tag 16)

Kind 1 carries the X3DH initial header (X3DH §3.3): the initiator sends it with every
message until the first reply arrives (so a lost first message doesn't strand the
session). The relay checks only the shape: that an ``e2ee`` body is an envelope and a
``visible`` one is not (PROTOCOL.md §6.1: plaintext into an e2ee conversation
and ciphertext into a visible one are both refused).
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Final

from protocol.crypto.errors import CryptoError
from protocol.crypto.ratchet import HEADER_BYTES, NONCE_BYTES, TAG_BYTES
from protocol.crypto.x3dh import InitialHeader

ENVELOPE_VERSION: Final = 1
KIND_MESSAGE: Final = 0
KIND_INITIAL: Final = 1
_INITIAL = struct.Struct(">32s32sIIB")
#: The shortest Double Ratchet message: an empty plaintext.
MIN_RATCHET_MESSAGE: Final = HEADER_BYTES + NONCE_BYTES + TAG_BYTES


@dataclass(frozen=True, slots=True)
class Envelope:
    message: bytes
    initial: InitialHeader | None = None

    def to_bytes(self) -> bytes:
        if self.initial is None:
            return bytes((ENVELOPE_VERSION, KIND_MESSAGE)) + self.message
        return bytes((ENVELOPE_VERSION, KIND_INITIAL)) + pack_initial(self.initial) + self.message

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if len(data) < 2 or data[0] != ENVELOPE_VERSION or data[1] not in (0, 1):
            raise CryptoError("malformed_message", "not an agechat e2ee envelope")
        rest = data[2:]
        initial = None
        if data[1] == KIND_INITIAL:
            initial = unpack_initial(rest)
            rest = rest[_INITIAL.size :]
        if len(rest) < MIN_RATCHET_MESSAGE:
            raise CryptoError("malformed_message", "ratchet message too short")
        return cls(rest, initial)


def pack_initial(header: InitialHeader) -> bytes:
    """The initial header's bytes as they appear in a kind-1 envelope."""
    return _INITIAL.pack(
        header.identity_key,
        header.ephemeral_key,
        header.spk_id,
        header.opk_id if header.opk_id is not None else 0,
        header.opk_id is not None,
    )


def unpack_initial(data: bytes) -> InitialHeader:
    if len(data) < _INITIAL.size:
        raise CryptoError("malformed_message", "initial header truncated")
    ik, ek, spk_id, opk_id, has_opk = _INITIAL.unpack_from(data)
    if has_opk not in (0, 1):
        raise CryptoError("malformed_message", "bad one-time prekey flag")
    return InitialHeader(ik, ek, spk_id, opk_id if has_opk else None)


def encode_body(envelope: Envelope) -> str:
    return base64.b64encode(envelope.to_bytes()).decode("ascii")


def decode_body(body: str) -> Envelope:
    try:
        raw = base64.b64decode(body.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise CryptoError("malformed_message", "the body is not base64") from exc
    return Envelope.from_bytes(raw)


#: A visible body at least this long that is one base64 (or hex) token of binary data is
#: refused (PROTOCOL.md §6.1): 100 characters lets hashes up to SHA-256 in hex through.
OPAQUE_MIN_CHARS: Final = 100


def is_opaque_blob(body: str) -> bool:
    """Is ``body`` one long token of encoded binary data (base64, base64url or hex of
    bytes that aren't UTF-8 text) rather than something a person wrote?

    A speed bump, not a guarantee: a client can always disguise data as words. What it
    stops is the plain way of putting ciphertext of another scheme into a chat that is
    meant to be visible to safety checks.
    """
    token = body.strip()
    if len(token) < OPAQUE_MIN_CHARS or any(c.isspace() for c in token):
        return False
    if len(set(token)) < 16:  # "aaaaaa…", "hahaha…": a person, not random bytes
        return False
    for alphabet in (None, b"-_"):
        try:
            raw = base64.b64decode(token.encode("ascii"), altchars=alphabet, validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False


#: The first two base64 characters of every envelope: they encode the version byte and the
#: top four bits of the kind byte (0 or 1, so always zero). A body that starts otherwise
#: can't be an envelope, and most visible text is turned away by this alone, cheaply.
_ENVELOPE_PREFIX: Final = base64.b64encode(bytes((ENVELOPE_VERSION, 0, 0))).decode()[:2]


def is_envelope(body: str) -> bool:
    """Does ``body`` have the shape of an e2ee envelope? (The relay's mode check.)"""
    if not body.startswith(_ENVELOPE_PREFIX):
        return False
    try:
        decode_body(body)
    except CryptoError:
        return False
    return True
