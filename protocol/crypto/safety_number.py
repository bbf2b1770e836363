"""Safety numbers: Signal's numeric fingerprint, version 0 (60 digits).

Algorithm as in libsignal's ``NumericFingerprintGenerator`` (Java) and
``rust/protocol/src/fingerprint.rs`` (signalapp/libsignal): for each party,
``h = version (u16 BE, 0) ‖ public key ‖ stable identifier`` and then ``iterations``
times ``h = SHA-512(h ‖ public key)``; the first 30 bytes, as six 5-byte big-endian
integers each mod 100000 and zero-padded to 5 digits, give that party's 30 digits. The
displayed number is the two halves with the smaller string first, so both sides see the
same 60 digits.

agechat's inputs: the **Ed25519 identity public key** (32 raw bytes; libsignal uses its
33-byte ``0x05 ‖ X25519`` serialisation, which is why its published vectors are checked
through ``fingerprint_digits`` directly) and the **handle** (UTF-8) as the stable
identifier. The X25519 form is derived from the Ed25519 key, so this covers both.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from protocol.crypto.keys import check_size

FINGERPRINT_VERSION: Final = 0
ITERATIONS: Final = 5200
DIGITS: Final = 60


def fingerprint_digits(public_key: bytes, stable_id: bytes, iterations: int = ITERATIONS) -> str:
    """One party's 30 digits (libsignal ``getFingerprint`` + ``getEncodedChunk``)."""
    if not 1 < iterations <= 1_000_000:
        raise ValueError("iterations must be in 2..1000000 (as libsignal requires)")
    digest = struct.pack(">H", FINGERPRINT_VERSION) + public_key + stable_id
    for _ in range(iterations):
        digest = hashlib.sha512(digest + public_key).digest()
    chunks = (int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 30, 5))
    return "".join(f"{chunk:05d}" for chunk in chunks)


def safety_number(own_handle: str, own_key: bytes, peer_handle: str, peer_key: bytes) -> str:
    """The 60-digit number both parties see (Ed25519 identity keys, handles as ids)."""
    own = fingerprint_digits(check_size(own_key, what="identity key"), own_handle.encode())
    peer = fingerprint_digits(check_size(peer_key, what="identity key"), peer_handle.encode())
    return own + peer if own < peer else peer + own


def format_safety_number(number: str) -> str:
    """Twelve groups of five digits separated by spaces, as Signal displays them."""
    if len(number) != DIGITS or not number.isdigit():
        raise ValueError("a safety number is 60 digits")
    return " ".join(number[i : i + 5] for i in range(0, DIGITS, 5))
