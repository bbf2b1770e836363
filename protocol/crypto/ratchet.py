"""The Double Ratchet (Signal, "The Double Ratchet Algorithm", revision 1, §3).

Instantiation (PROTOCOL.md §6.4; Double Ratchet §5.2's recommendations for all
but ENCRYPT, where we use an AEAD as §3.1 allows):

- GENERATE_DH / DH: X25519 (``protocol.crypto.keys``), all-zero output refused.
- KDF_RK(rk, dh_out) = HKDF-SHA256(salt=rk, ikm=dh_out, info=ROOT_KDF_INFO, 64 B)
  → (new root key, chain key).
- KDF_CK(ck): message key = HMAC-SHA256(ck, 0x01), next chain key = HMAC-SHA256(ck, 0x02).
- ENCRYPT(mk, plaintext, AD ‖ header): XChaCha20-Poly1305 (IETF) keyed with ``mk``
  itself and a random 24-byte nonce sent with the message. §3.1 allows exactly this
  ("chosen randomly and transmitted"): each mk is a fresh 32-byte PRF output used for one
  message, which is what the AEAD key needs, so an extra HKDF step would add cost and no
  security.
- Header: fixed 41 bytes, ``version (1) ‖ ratchet public key (32) ‖ PN (u32 BE) ‖ N
  (u32 BE)``; a message on the wire is ``header ‖ nonce (24) ‖ ciphertext ‖ tag (16)``.
  The AEAD's associated data is the X3DH AD followed by the 41 header bytes (§3.4
  CONCAT; the header has a fixed size, so the split is unambiguous).

A decryption changes the session only once the message has authenticated (§3.5: "if an
exception is raised ... the message is discarded and changes to the state object are
discarded"): every new value is computed into locals and committed after the AEAD opens.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
import nacl.bindings
import nacl.exceptions

from protocol.crypto.errors import CryptoError
from protocol.crypto.kdf import hkdf_sha256, hmac_sha256
from protocol.crypto.keys import KEY_BYTES, Random, X25519KeyPair, check_size, x25519

#: HKDF info for KDF_RK (Double Ratchet §5.2: "info ... distinct from other uses of HKDF").
ROOT_KDF_INFO: Final = b"agechat/ratchet/root/v1"
#: KDF_CK inputs (Double Ratchet §5.2): 0x01 for the message key, 0x02 for the next chain key.
_MESSAGE_KEY_INPUT: Final = b"\x01"
_CHAIN_KEY_INPUT: Final = b"\x02"
HEADER_VERSION: Final = 1
HEADER_BYTES: Final = 41
NONCE_BYTES: Final = 24
TAG_BYTES: Final = 16
#: Double Ratchet §3.2 MAX_SKIP: most message keys skipped in one chain at once.
MAX_SKIP: Final = 1000
#: Most skipped message keys kept in total; the oldest are evicted first (§6.4).
MAX_STORED_SKIPPED: Final = 2000
#: Version of the serialised session state; bump it and add a ``MIGRATIONS`` entry.
STATE_VERSION: Final = 1
_HEADER = struct.Struct(">B32sII")
_U32_MAX = 2**32 - 1


# --- §3.1 external functions -------------------------------------------------------------


def kdf_rk(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    """KDF_RK (Double Ratchet §3.1, §5.2): HKDF(salt=rk, ikm=dh_out) → (rk', ck)."""
    out = hkdf_sha256(dh_output, salt=root_key, info=ROOT_KDF_INFO, length=64)
    return out[:32], out[32:]


def kdf_ck(chain_key: bytes) -> tuple[bytes, bytes]:
    """KDF_CK (Double Ratchet §3.1, §5.2): → (next chain key, message key)."""
    return hmac_sha256(chain_key, _CHAIN_KEY_INPUT), hmac_sha256(chain_key, _MESSAGE_KEY_INPUT)


@dataclass(frozen=True, slots=True)
class Header:
    """HEADER(dh_pair, pn, n) (Double Ratchet §3.1), fixed 41 bytes on the wire."""

    ratchet_key: bytes
    pn: int
    n: int

    def to_bytes(self) -> bytes:
        return _HEADER.pack(HEADER_VERSION, self.ratchet_key, self.pn, self.n)

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        if len(data) != HEADER_BYTES:
            raise CryptoError("malformed_message", "header must be 41 bytes")
        version, ratchet_key, pn, n = _HEADER.unpack(data)
        if version != HEADER_VERSION:
            raise CryptoError("unsupported_version", f"header version {version}")
        return cls(ratchet_key, pn, n)


def aead_encrypt(key: bytes, plaintext: bytes, associated_data: bytes, random: Random) -> bytes:
    """ENCRYPT (Double Ratchet §3.1): nonce ‖ XChaCha20-Poly1305(key, nonce, pt, ad)."""
    nonce = check_size(random(NONCE_BYTES), NONCE_BYTES, "random nonce")
    return nonce + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, associated_data, nonce, key
    )


def aead_decrypt(key: bytes, body: bytes, associated_data: bytes) -> bytes:
    """DECRYPT (Double Ratchet §3.1); any failure is ``decryption_failed``."""
    if len(body) < NONCE_BYTES + TAG_BYTES:
        raise CryptoError("malformed_message", "ciphertext too short")
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            body[NONCE_BYTES:], associated_data, body[:NONCE_BYTES], key
        )
    except nacl.exceptions.CryptoError as exc:
        raise CryptoError("decryption_failed") from exc


# --- saved state ---------------------------------------------------------------------------

Key = Annotated[bytes, msgspec.Meta(min_length=KEY_BYTES, max_length=KEY_BYTES)]
Counter = Annotated[int, msgspec.Meta(ge=0, le=_U32_MAX)]


class SessionState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The serialised form of a ``Session`` (Double Ratchet §3.2 state variables).

    It holds secret keys: the client stores it encrypted at rest. ``skipped`` lists
    ``(ratchet key, N, message key)`` oldest first.
    """

    version: int
    dhs_private: Key
    dhr: Key | None
    rk: Key
    cks: Key | None
    ckr: Key | None
    ns: Counter
    nr: Counter
    pn: Counter
    ad: bytes
    skipped: list[tuple[Key, Counter, Key]]


Migration = Callable[[dict[str, Any]], dict[str, Any]]
#: ``MIGRATIONS[v]`` turns a version-``v`` state dict into a version-``v + 1`` one.
MIGRATIONS: dict[int, Migration] = {}


def migrate_state(
    raw: dict[str, Any],
    *,
    migrations: dict[int, Migration] | None = None,
    current: int = STATE_VERSION,
) -> dict[str, Any]:
    """Bring a decoded state dict up to ``current`` one version at a time."""
    steps = MIGRATIONS if migrations is None else migrations
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > current:
        raise CryptoError("unsupported_version", f"session state version {version!r}")
    while version < current:
        if version not in steps:
            raise CryptoError("unsupported_version", f"no migration from state version {version}")
        raw = steps[version](raw)
        if raw.get("version") != version + 1:
            raise CryptoError("invalid_state", f"migration from {version} did not bump version")
        version += 1
    return raw


# --- the session ---------------------------------------------------------------------------


class Session:
    """One side of a Double Ratchet conversation. Not thread-safe; persist with ``to_bytes``.

    ``random`` (nonces, new ratchet keys) is not part of the saved state: pass it again to
    ``from_bytes``.
    """

    __slots__ = (
        "_ad",
        "_ckr",
        "_cks",
        "_dhr",
        "_dhs",
        "_nr",
        "_ns",
        "_pn",
        "_random",
        "_rk",
        "_skipped",
    )

    def __init__(self, state: SessionState, random: Random = os.urandom) -> None:
        self._random = random
        self._dhs = X25519KeyPair.from_private(state.dhs_private)
        self._dhr = state.dhr
        self._rk = state.rk
        self._cks = state.cks
        self._ckr = state.ckr
        self._ns, self._nr, self._pn = state.ns, state.nr, state.pn
        self._ad = state.ad
        self._skipped: dict[tuple[bytes, int], bytes] = {(k, n): mk for k, n, mk in state.skipped}

    @classmethod
    def initiator(
        cls,
        shared_key: bytes,
        associated_data: bytes,
        peer_ratchet_key: bytes,
        *,
        random: Random = os.urandom,
    ) -> Session:
        """RatchetInitAlice (Double Ratchet §3.3): SK from X3DH, Bob's SPK as his ratchet key."""
        check_size(shared_key, what="shared key")
        dhs = X25519KeyPair.generate(random)
        rk, cks = kdf_rk(shared_key, x25519(dhs.private, check_size(peer_ratchet_key)))
        state = SessionState(
            version=STATE_VERSION,
            dhs_private=dhs.private,
            dhr=peer_ratchet_key,
            rk=rk,
            cks=cks,
            ckr=None,
            ns=0,
            nr=0,
            pn=0,
            ad=associated_data,
            skipped=[],
        )
        return cls(state, random)

    @classmethod
    def responder(
        cls,
        shared_key: bytes,
        associated_data: bytes,
        own_ratchet_key: X25519KeyPair,
        *,
        random: Random = os.urandom,
    ) -> Session:
        """RatchetInitBob (Double Ratchet §3.3): his SPK pair is his first ratchet pair."""
        state = SessionState(
            version=STATE_VERSION,
            dhs_private=own_ratchet_key.private,
            dhr=None,
            rk=check_size(shared_key, what="shared key"),
            cks=None,
            ckr=None,
            ns=0,
            nr=0,
            pn=0,
            ad=associated_data,
            skipped=[],
        )
        return cls(state, random)

    @property
    def ratchet_key(self) -> bytes:
        """Our current ratchet public key (what the next header carries)."""
        return self._dhs.public

    @property
    def can_send(self) -> bool:
        """False for a responder until the initiator's first message has been decrypted."""
        return self._cks is not None

    @property
    def stored_skipped_keys(self) -> int:
        return len(self._skipped)

    def encrypt(self, plaintext: bytes) -> bytes:
        """RatchetEncrypt (Double Ratchet §3.4): header ‖ nonce ‖ ciphertext ‖ tag."""
        if self._cks is None:
            raise CryptoError("invalid_state", "a responder cannot send before it receives")
        if self._ns > _U32_MAX:
            raise CryptoError("invalid_state", "sending chain exhausted")
        next_ck, mk = kdf_ck(self._cks)
        header = Header(self._dhs.public, self._pn, self._ns).to_bytes()
        body = aead_encrypt(mk, plaintext, self._ad + header, self._random)
        self._cks, self._ns = next_ck, self._ns + 1
        return header + body

    def decrypt(self, message: bytes) -> bytes:
        """RatchetDecrypt (Double Ratchet §3.5); the state changes only on success."""
        if len(message) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES:
            raise CryptoError("malformed_message", "message too short")
        header_bytes = message[:HEADER_BYTES]
        header = Header.from_bytes(header_bytes)
        body = message[HEADER_BYTES:]
        ad = self._ad + header_bytes

        # TrySkippedMessageKeys: a late message whose key was stored when it was skipped.
        skipped_key = (header.ratchet_key, header.n)
        mk = self._skipped.get(skipped_key)
        if mk is not None:
            plaintext = aead_decrypt(mk, body, ad)
            del self._skipped[skipped_key]
            return plaintext

        new_skipped: list[tuple[tuple[bytes, int], bytes]] = []
        dhs, dhr, rk, cks, ckr = self._dhs, self._dhr, self._rk, self._cks, self._ckr
        ns, nr, pn = self._ns, self._nr, self._pn
        if header.ratchet_key != dhr:
            # SkipMessageKeys(state, header.pn) on the old chain, then DHRatchet (§3.5).
            if ckr is not None and dhr is not None:
                ckr, nr = _skip(ckr, nr, header.pn, dhr, new_skipped)
            pn, ns, nr, dhr = ns, 0, 0, header.ratchet_key
            rk, ckr = kdf_rk(rk, x25519(dhs.private, dhr))
            dhs = X25519KeyPair.generate(self._random)
            rk, cks = kdf_rk(rk, x25519(dhs.private, dhr))
        elif ckr is None:
            raise CryptoError("decryption_failed", "no receiving chain for this ratchet key")
        elif header.n < nr:
            # Its key was used (or skipped and since evicted): a replay or a stale copy.
            raise CryptoError("duplicate_message")
        ckr, nr = _skip(ckr, nr, header.n, dhr, new_skipped)
        ckr, mk = kdf_ck(ckr)
        plaintext = aead_decrypt(mk, body, ad)

        # Authenticated: commit.
        self._dhs, self._dhr, self._rk, self._cks, self._ckr = dhs, dhr, rk, cks, ckr
        self._ns, self._nr, self._pn = ns, nr + 1, pn
        if new_skipped:
            self._skipped.update(new_skipped)
            excess = len(self._skipped) - MAX_STORED_SKIPPED
            for old in list(self._skipped)[: max(excess, 0)]:
                del self._skipped[old]
        return plaintext

    # --- persistence -------------------------------------------------------------------

    def state(self) -> SessionState:
        return SessionState(
            version=STATE_VERSION,
            dhs_private=self._dhs.private,
            dhr=self._dhr,
            rk=self._rk,
            cks=self._cks,
            ckr=self._ckr,
            ns=self._ns,
            nr=self._nr,
            pn=self._pn,
            ad=self._ad,
            skipped=[(k, n, mk) for (k, n), mk in self._skipped.items()],
        )

    def to_bytes(self) -> bytes:
        """The session as msgpack (secret: encrypt it before it touches a disk)."""
        return msgspec.msgpack.encode(self.state())

    @classmethod
    def from_bytes(cls, data: bytes, *, random: Random = os.urandom) -> Session:
        """Load a saved session, migrating older state versions first."""
        try:
            raw = msgspec.msgpack.decode(data)
        except msgspec.DecodeError as exc:
            raise CryptoError("invalid_state", "not msgpack") from exc
        if not isinstance(raw, dict):
            raise CryptoError("invalid_state", "not a state object")
        try:
            state = msgspec.convert(migrate_state(raw), SessionState)
        except msgspec.ValidationError as exc:
            raise CryptoError("invalid_state", str(exc)) from exc
        return cls(state, random)


def _skip(
    ck: bytes, nr: int, until: int, ratchet_key: bytes, out: list[tuple[tuple[bytes, int], bytes]]
) -> tuple[bytes, int]:
    """SkipMessageKeys (Double Ratchet §3.5): store keys nr..until-1, at most MAX_SKIP."""
    if until - nr > MAX_SKIP:
        raise CryptoError("too_many_skipped")
    while nr < until:
        ck, mk = kdf_ck(ck)
        out.append(((ratchet_key, nr), mk))
        nr += 1
    return ck, nr


# --- simultaneous initiation -----------------------------------------------------------


def initiation_winner(handle_a: str, handle_b: str) -> str:
    """Which handle's session survives when both sides initiated X3DH at the same time.

    Rule: the session *initiated by* the handle that sorts first (by UTF-8 bytes) wins.
    Both sides compute the same answer without talking. Each side keeps both sessions, so
    every message already sent on either still decrypts (client/e2ee.py), and from then on
    both *send* on the winner's session.
    """
    if handle_a == handle_b:
        raise ValueError("a conversation has two different handles")
    return handle_a if handle_a.encode() < handle_b.encode() else handle_b


def keep_own_session(own_handle: str, peer_handle: str) -> bool:
    """True if the session we initiated wins a simultaneous start (see ``initiation_winner``)."""
    return initiation_winner(own_handle, peer_handle) == own_handle
