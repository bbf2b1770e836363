"""X25519 key pairs, the Diffie-Hellman function, and the agechat identity key pair.

One identity, as in Signal: an Ed25519 signing key whose X25519 form (libsodium's
``crypto_sign_ed25519_{pk,sk}_to_curve25519``) is used for X3DH (PROTOCOL.md §6.4.1). Every
key-sized value is size-checked where it enters.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing

from protocol.crypto.errors import CryptoError
from protocol.crypto.kdf import equal
from protocol.identity import verify

KEY_BYTES = 32
SIGNATURE_BYTES = 64
_ZERO = b"\x00" * KEY_BYTES

#: Source of randomness: n -> n random bytes. Injected so known-answer tests are deterministic.
Random = Callable[[int], bytes]


def check_size(value: bytes, size: int = KEY_BYTES, what: str = "key") -> bytes:
    """Return ``value`` if it is ``size`` bytes, else raise ``CryptoError('invalid_key')``."""
    if not isinstance(value, bytes) or len(value) != size:
        raise CryptoError("invalid_key", f"{what} must be {size} bytes")
    return value


@dataclass(frozen=True, slots=True)
class X25519KeyPair:
    """An X25519 key pair (RFC 7748). ``private`` is never shown in ``repr``."""

    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def from_private(cls, private: bytes) -> X25519KeyPair:
        check_size(private, what="X25519 private key")
        return cls(private, nacl.bindings.crypto_scalarmult_base(private))

    @classmethod
    def generate(cls, random: Random = os.urandom) -> X25519KeyPair:
        return cls.from_private(check_size(random(KEY_BYTES), what="random output"))


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519(private, public); an all-zero result is a protocol failure.

    RFC 7748 §6.1: checking for the all-zero value rejects low-order public keys, the
    contributory-behaviour check Signal's X3DH and Double Ratchet rely on. libsodium
    already refuses it (PyNaCl raises ``nacl.exceptions.RuntimeError``); the explicit
    compare keeps the rule visible and independent of the binding.
    """
    check_size(private, what="X25519 private key")
    check_size(public, what="X25519 public key")
    try:
        shared = nacl.bindings.crypto_scalarmult(private, public)
    except nacl.exceptions.RuntimeError as exc:
        raise CryptoError("weak_key") from exc
    if equal(shared, _ZERO):
        raise CryptoError("weak_key")
    return shared


def ed25519_public_to_x25519(identity_key: bytes) -> bytes:
    """The X25519 public key of an Ed25519 identity public key (libsodium conversion)."""
    check_size(identity_key, what="Ed25519 identity key")
    try:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(identity_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as exc:
        raise CryptoError("invalid_key", "not a valid Ed25519 public key") from exc


@dataclass(frozen=True, slots=True)
class IdentityKeyPair:
    """An account's Ed25519 identity (from its 32-byte seed) and the X25519 form of it."""

    seed: bytes = field(repr=False)
    public: bytes
    dh: X25519KeyPair = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> IdentityKeyPair:
        check_size(seed, what="Ed25519 seed")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        dh_private = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret)
        return cls(seed, public, X25519KeyPair.from_private(dh_private))

    @classmethod
    def generate(cls, random: Random = os.urandom) -> IdentityKeyPair:
        return cls.from_seed(check_size(random(KEY_BYTES), what="random output"))

    def sign(self, message: bytes) -> bytes:
        """A detached Ed25519 signature (deterministic, RFC 8032)."""
        return nacl.signing.SigningKey(self.seed).sign(message).signature


#: Ed25519 verification lives in protocol.identity (also used for auth and declarations).
verify_signature = verify
