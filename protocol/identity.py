"""Identity keys and the two things they sign: auth challenges and age declarations.

One identity, as in Signal: the Ed25519 signing key, and its X25519 form obtained with
libsodium's ``crypto_sign_ed25519_pk_to_curve25519`` (PROTOCOL.md §6.4.1). Every signed message
starts with a context string naming its purpose and length-prefixes each field, so no
signature can be replayed as another kind (PROTOCOL.md §3.2, §3.3).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import nacl.bindings
import nacl.exceptions
import nacl.signing

from protocol.limits import PUBLIC_KEY_BYTES, SIGNATURE_BYTES

AUTH_CONTEXT = b"agechat/auth/v1"
DECLARATION_CONTEXT = b"agechat/age-declaration/v1"


def _length_prefixed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def auth_message(relay_id: str, nonce: bytes, handle: str) -> bytes:
    """The bytes a client signs to answer a challenge (PROTOCOL.md §3.2)."""
    return _length_prefixed(AUTH_CONTEXT, relay_id.encode(), nonce, handle.encode())


def declaration_message(
    handle: str, band: str, identity_key: bytes, declared_at: datetime
) -> bytes:
    """The bytes of a signed age-band declaration (PROTOCOL.md §3.3)."""
    return _length_prefixed(
        DECLARATION_CONTEXT,
        handle.encode(),
        band.encode(),
        identity_key,
        rfc3339(declared_at).encode(),
    )


def rfc3339(moment: datetime) -> str:
    """UTC time with second precision and a Z, the one spelling used in signed messages."""
    if moment.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dh_key_for(identity_key: bytes) -> bytes:
    """The X25519 public key that belongs to an Ed25519 identity public key."""
    if len(identity_key) != PUBLIC_KEY_BYTES:
        raise ValueError("identity key must be 32 bytes")
    return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(identity_key)


def verify(identity_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``identity_key``."""
    if len(identity_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(identity_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True
