"""Private keys at rest: Argon2id (nacl.pwhash) derives a key that seals them in a SecretBox.

The parameters travel with the sealed key, so a profile stays readable if the defaults
change. A wrong passphrase fails the Poly1305 check and surfaces as `bad_passphrase`.
"""

from __future__ import annotations

import msgspec
import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from client.errors import ClientError


class KdfLimits(msgspec.Struct, frozen=True):
    opslimit: int
    memlimit: int


#: libsodium's "interactive" Argon2id cost (64 MiB): what profiles use.
INTERACTIVE = KdfLimits(
    nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
)
#: The cheapest cost libsodium allows. Only for tests that create many profiles.
MINIMUM = KdfLimits(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)


class SealedSecret(msgspec.Struct, frozen=True, kw_only=True):
    kdf: str = "argon2id13"
    salt: bytes
    opslimit: int
    memlimit: int
    box: bytes  # SecretBox nonce ‖ ciphertext


def _derive(passphrase: str, salt: bytes, limits: KdfLimits) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase.encode(),
        salt,
        opslimit=limits.opslimit,
        memlimit=limits.memlimit,
    )


def seal(secret: bytes, passphrase: str, limits: KdfLimits = INTERACTIVE) -> SealedSecret:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    key = _derive(passphrase, salt, limits)
    box = nacl.secret.SecretBox(key).encrypt(secret)
    return SealedSecret(
        salt=salt, opslimit=limits.opslimit, memlimit=limits.memlimit, box=bytes(box)
    )


def unseal(sealed: SealedSecret, passphrase: str) -> bytes:
    if sealed.kdf != "argon2id13" or len(sealed.salt) != nacl.pwhash.argon2id.SALTBYTES:
        raise ClientError("profile_corrupt", f"unknown key derivation {sealed.kdf!r}")
    try:
        key = _derive(passphrase, sealed.salt, KdfLimits(sealed.opslimit, sealed.memlimit))
    except (ValueError, TypeError, nacl.exceptions.CryptoError) as exc:
        raise ClientError(
            "profile_corrupt", f"the key's KDF parameters are unusable ({exc})"
        ) from None
    try:
        return nacl.secret.SecretBox(key).decrypt(sealed.box)
    except nacl.exceptions.CryptoError:
        raise ClientError("bad_passphrase") from None
