"""HKDF-SHA256 (RFC 5869), HMAC-SHA256 and constant-time comparison.

PyNaCl has neither HKDF nor HMAC, so these come from the standard library's ``hmac`` and
``hashlib`` (PROTOCOL.md §6.4); the RFC 5869 appendix A test cases run
through this module in tests/protocol/crypto/test_primitives.py.
"""

from __future__ import annotations

import hashlib
import hmac

#: SHA-256 output size, RFC 5869 "HashLen".
HASH_LEN = 32
#: RFC 5869 §2.3: L <= 255*HashLen.
MAX_OUTPUT = 255 * HASH_LEN


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of ``data`` under ``key``."""
    return hmac.digest(key, data, hashlib.sha256)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM); an empty salt means HashLen zero bytes."""
    return hmac_sha256(salt or b"\x00" * HASH_LEN, ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 §2.3: T(i) = HMAC-Hash(PRK, T(i-1) | info | i), OKM = first L octets."""
    if len(prk) < HASH_LEN:
        raise ValueError("PRK must be at least HashLen bytes (RFC 5869 §2.3)")
    if not 0 < length <= MAX_OUTPUT:
        raise ValueError(f"HKDF-SHA256 output length must be 1..{MAX_OUTPUT}")
    blocks: list[bytes] = []
    previous = b""
    for counter in range(1, -(-length // HASH_LEN) + 1):
        previous = hmac_sha256(prk, previous + info + bytes([counter]))
        blocks.append(previous)
    return b"".join(blocks)[:length]


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 extract-then-expand. ``info`` names the purpose: every use has its own."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality for tags and commitments (never ``==`` on secrets)."""
    return hmac.compare_digest(a, b)
