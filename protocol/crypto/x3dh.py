"""X3DH key agreement (Signal, "The X3DH Key Agreement Protocol", revision 1).

Parameters (X3DH §2.1): curve X25519, hash SHA-256, info ``X3DH_INFO``. Identity keys are
Ed25519 and converted to X25519 for the DH steps (PROTOCOL.md §6.4.1); the signed prekey
is signed with the Ed25519 identity over ``0x05 ‖ SPK``.

The associated data (X3DH §3.3) is ``Encode(IK_A) ‖ Encode(IK_B)`` followed by what §3.3
and §4.8 ("Identity binding") suggest appending: a context label, both handles and the
conversation mode, so a relay that lies about either party or about the mode produces a
session that cannot decrypt (PROTOCOL.md §6.4). Every field is length-prefixed
(u16 big-endian), so no two different field lists give the same bytes. ``Encode`` of an
Ed25519 identity key is its length prefix and its 32 bytes; that layout is also what
Syndace's ``x3dh`` produces when its ``_encode_public_key`` is defined the same way, which
the interop test relies on.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import get_args

from protocol.crypto.errors import CryptoError
from protocol.crypto.kdf import hkdf_sha256
from protocol.crypto.keys import (
    SIGNATURE_BYTES,
    IdentityKeyPair,
    Random,
    X25519KeyPair,
    check_size,
    ed25519_public_to_x25519,
    verify_signature,
    x25519,
)
from protocol.types import Mode

#: X3DH §2.1 "info": an ASCII string identifying the application (and its version).
X3DH_INFO = b"agechat/x3dh/v1"
#: Label that starts the appended part of the associated data.
AD_CONTEXT = b"agechat/x3dh-ad/v1"
#: X3DH §2.2 Encode(PK) for a Curve25519 key: 0x05 then the 32-byte u-coordinate.
CURVE25519_KEY_TYPE = b"\x05"
#: X3DH §2.2 KDF: F is 32 0xFF bytes for X25519, the salt is HashLen zero bytes.
_F = b"\xff" * 32
_ZERO_SALT = b"\x00" * 32
_MODES: frozenset[str] = frozenset(get_args(Mode))


def _length_prefixed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def _check_id(value: int | None, what: str) -> None:
    if value is not None and not 0 <= value < 2**32:
        raise CryptoError("invalid_key", f"{what} must be a u32")


@dataclass(frozen=True, slots=True)
class PrekeyBundle:
    """What a responder publishes (X3DH §3.2): IK_B, SPK_B with Sig(IK_B, Encode(SPK_B)), OPK_B?"""

    identity_key: bytes
    spk_id: int
    spk_public: bytes
    spk_signature: bytes
    opk_id: int | None = None
    opk_public: bytes | None = None

    def __post_init__(self) -> None:
        check_size(self.identity_key, what="identity key")
        check_size(self.spk_public, what="signed prekey")
        check_size(self.spk_signature, SIGNATURE_BYTES, "signed prekey signature")
        _check_id(self.spk_id, "spk_id")
        _check_id(self.opk_id, "opk_id")
        if (self.opk_id is None) != (self.opk_public is None):
            raise CryptoError("invalid_key", "one-time prekey id and key go together")
        if self.opk_public is not None:
            check_size(self.opk_public, what="one-time prekey")


@dataclass(frozen=True, slots=True)
class InitialHeader:
    """The X3DH part of Alice's initial message (X3DH §3.3): IK_A, EK_A, prekeys used."""

    identity_key: bytes
    ephemeral_key: bytes
    spk_id: int
    opk_id: int | None = None

    def __post_init__(self) -> None:
        check_size(self.identity_key, what="identity key")
        check_size(self.ephemeral_key, what="ephemeral key")
        _check_id(self.spk_id, "spk_id")
        _check_id(self.opk_id, "opk_id")


@dataclass(frozen=True, slots=True)
class Agreement:
    """The X3DH output both sides share: SK (32 B) and AD (X3DH §3.3, §3.4)."""

    shared_key: bytes = field(repr=False)
    associated_data: bytes


@dataclass(frozen=True, slots=True)
class Initiated:
    """The initiator's result: the agreement, the header to send, Bob's first ratchet key.

    ``peer_ratchet_key`` is SPK_B: Double Ratchet §5.1 ("Integration with X3DH") uses
    Bob's signed prekey as his initial ratchet public key.
    """

    agreement: Agreement
    header: InitialHeader
    peer_ratchet_key: bytes


def signed_prekey_message(spk_public: bytes) -> bytes:
    """The bytes the identity key signs for a signed prekey: Encode(SPK) = 0x05 ‖ pub."""
    return CURVE25519_KEY_TYPE + check_size(spk_public, what="signed prekey")


def sign_prekey(identity: IdentityKeyPair, spk_public: bytes) -> bytes:
    """Sig(IK, Encode(SPK)) (X3DH §3.2), an Ed25519 signature by the identity key."""
    return identity.sign(signed_prekey_message(spk_public))


def associated_data(
    initiator_key: bytes, responder_key: bytes, initiator: str, responder: str, mode: str
) -> bytes:
    """AD = Encode(IK_A) ‖ Encode(IK_B) ‖ context ‖ handle_A ‖ handle_B ‖ mode (X3DH §3.3)."""
    if mode not in _MODES:
        raise CryptoError("invalid_mode", f"mode must be one of {sorted(_MODES)}")
    check_size(initiator_key, what="identity key")
    check_size(responder_key, what="identity key")
    return _length_prefixed(
        initiator_key,
        responder_key,
        AD_CONTEXT,
        initiator.encode(),
        responder.encode(),
        mode.encode(),
    )


def _derive(dh_outputs: list[bytes]) -> bytes:
    # X3DH §2.2: KDF(KM) = HKDF(salt = 0*HashLen, IKM = F ‖ KM, info), 32 bytes.
    return hkdf_sha256(_F + b"".join(dh_outputs), salt=_ZERO_SALT, info=X3DH_INFO, length=32)


def initiate(
    identity: IdentityKeyPair,
    own_handle: str,
    peer_handle: str,
    bundle: PrekeyBundle,
    mode: str,
    *,
    random: Random = os.urandom,
) -> Initiated:
    """Alice's side (X3DH §3.3): verify SPK_B's signature, then derive SK and AD.

    The caller must already trust ``bundle.identity_key`` as ``peer_handle``'s key (the
    safety number covers it); this function only checks the bundle is self-consistent.
    """
    ad = associated_data(identity.public, bundle.identity_key, own_handle, peer_handle, mode)
    # X3DH §3.3: "Alice verifies the prekey signature and aborts the protocol if it fails."
    if not verify_signature(
        bundle.identity_key, signed_prekey_message(bundle.spk_public), bundle.spk_signature
    ):
        raise CryptoError("bad_prekey_signature")
    ephemeral = X25519KeyPair.generate(random)
    peer_dh_identity = ed25519_public_to_x25519(bundle.identity_key)
    outputs = [
        x25519(identity.dh.private, bundle.spk_public),  # DH1 = DH(IK_A, SPK_B)
        x25519(ephemeral.private, peer_dh_identity),  # DH2 = DH(EK_A, IK_B)
        x25519(ephemeral.private, bundle.spk_public),  # DH3 = DH(EK_A, SPK_B)
    ]
    if bundle.opk_public is not None:
        outputs.append(x25519(ephemeral.private, bundle.opk_public))  # DH4 = DH(EK_A, OPK_B)
    # X3DH §3.3: Alice deletes EK_A and the DH outputs; only SK leaves this function.
    header = InitialHeader(identity.public, ephemeral.public, bundle.spk_id, bundle.opk_id)
    return Initiated(Agreement(_derive(outputs), ad), header, bundle.spk_public)


def respond(
    identity: IdentityKeyPair,
    own_handle: str,
    peer_handle: str,
    header: InitialHeader,
    signed_prekey: X25519KeyPair,
    one_time_prekey: X25519KeyPair | None,
    mode: str,
) -> Agreement:
    """Bob's side (X3DH §3.4): the same SK and AD from his private keys.

    The caller looks up the prekeys named by ``header.spk_id``/``header.opk_id`` and, on
    success of the first message's decryption, deletes the one-time prekey (§3.4, §4.3).
    """
    if (header.opk_id is None) != (one_time_prekey is None):
        raise CryptoError("prekey_mismatch")
    ad = associated_data(header.identity_key, identity.public, peer_handle, own_handle, mode)
    peer_dh_identity = ed25519_public_to_x25519(header.identity_key)
    outputs = [
        x25519(signed_prekey.private, peer_dh_identity),  # DH1 = DH(SPK_B, IK_A)
        x25519(identity.dh.private, header.ephemeral_key),  # DH2 = DH(IK_B, EK_A)
        x25519(signed_prekey.private, header.ephemeral_key),  # DH3 = DH(SPK_B, EK_A)
    ]
    if one_time_prekey is not None:
        outputs.append(x25519(one_time_prekey.private, header.ephemeral_key))  # DH4
    return Agreement(_derive(outputs), ad)
