"""Interoperability with Syndace's independent ``x3dh`` and ``doubleratchet`` packages.

Both are configured with agechat's choices: Ed25519 identity keys converted for DH,
SHA-256, ``X3DH_INFO``, ``Encode(SPK) = 0x05 ‖ pub``, ``Encode(IK) = u16 length ‖ pub``
with our handles and mode as the AD appendix; KDF_RK = HKDF-SHA256 with
``ROOT_KDF_INFO``; KDF_CK = separate HMACs (constant ``0x02 0x01``: their chain takes
the first 32 bytes as the next chain key, so HMAC(ck, 0x02) is the chain key and
HMAC(ck, 0x01) the message key); AEAD = XChaCha20-Poly1305 keyed with the message key
and a random nonce prepended (through libsodium directly, not our wrapper); AD = X3DH
AD ‖ our 41-byte header. Their X25519 comes from ``cryptography`` and their signatures
from ``xeddsa``, so only the protocol layout is shared. Test-only dependencies: the
module is skipped when they are not installed.
"""

from __future__ import annotations

import os
import struct

import nacl.bindings
import nacl.exceptions
import pytest

x3dh = pytest.importorskip("x3dh")
doubleratchet = pytest.importorskip("doubleratchet")
from doubleratchet.recommended import (  # noqa: E402
    diffie_hellman_ratchet_curve25519,
    kdf_hkdf,
    kdf_separate_hmacs,
)
from doubleratchet.recommended.crypto_provider import HashFunction as DRHash  # noqa: E402
from x3dh.identity_key_pair import IdentityKeyPairSeed  # noqa: E402

from protocol.crypto.ratchet import (  # noqa: E402
    HEADER_BYTES,
    MAX_SKIP,
    MAX_STORED_SKIPPED,
    ROOT_KDF_INFO,
    Header,
    Session,
)
from protocol.crypto.x3dh import (  # noqa: E402  # noqa: E402
    AD_CONTEXT,
    X3DH_INFO,
    InitialHeader,
    PrekeyBundle,
    initiate,
    respond,
)
from tests.protocol.crypto.support import Party  # noqa: E402


def _lp(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


APPENDIX = _lp(AD_CONTEXT, b"alice", b"bob", b"e2ee")  # initiator alice, responder bob


class TheirX3DH(x3dh.BaseState):
    @staticmethod
    def _encode_public_key(key_format, pub):
        if key_format is x3dh.IdentityKeyFormat.CURVE_25519:
            return b"\x05" + pub
        return _lp(pub)


def their_x3dh(seed: bytes) -> TheirX3DH:
    state = TheirX3DH.create(
        x3dh.IdentityKeyFormat.ED_25519, x3dh.HashFunction.SHA_256, X3DH_INFO,
        IdentityKeyPairSeed(seed),
    )  # fmt: skip
    state.generate_pre_keys(1)
    return state


class RootKDF(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function():
        return DRHash.SHA_256

    @staticmethod
    def _get_info():
        return ROOT_KDF_INFO


class ChainKDF(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function():
        return DRHash.SHA_256


class XChaCha(doubleratchet.AEAD):
    @staticmethod
    async def encrypt(plaintext, key, associated_data):
        nonce = os.urandom(24)
        return nonce + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, associated_data, nonce, key
        )

    @staticmethod
    async def decrypt(ciphertext, key, associated_data):
        try:
            return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext[24:], associated_data, ciphertext[:24], key
            )
        except nacl.exceptions.CryptoError as exc:
            raise doubleratchet.AuthenticationFailedException() from exc


class TheirRatchet(doubleratchet.DoubleRatchet):
    @staticmethod
    def _build_associated_data(associated_data, header):
        return associated_data + _our_header(header)


CONFIG = (
    diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet, RootKDF, ChainKDF, b"\x02\x01",
    MAX_SKIP, MAX_STORED_SKIPPED, XChaCha,
)  # fmt: skip


def _our_header(header) -> bytes:
    return Header(
        header.ratchet_pub, header.previous_sending_chain_length, header.sending_chain_length
    ).to_bytes()


def to_theirs(wire: bytes):
    ours = Header.from_bytes(wire[:HEADER_BYTES])
    header = doubleratchet.Header(ours.ratchet_key, ours.pn, ours.n)
    return doubleratchet.EncryptedMessage(header=header, ciphertext=wire[HEADER_BYTES:])


def to_ours(message) -> bytes:
    return _our_header(message.header) + message.ciphertext


async def _converse(ours: Session, theirs: TheirRatchet, ad: bytes) -> None:
    """Both directions, several DH steps, one out-of-order pair each way."""
    for turn in range(3):
        first = ours.encrypt(b"ours %d a" % turn)
        second = ours.encrypt(b"ours %d b" % turn)
        assert await theirs.decrypt_message(to_theirs(second), ad) == b"ours %d b" % turn
        assert await theirs.decrypt_message(to_theirs(first), ad) == b"ours %d a" % turn
        a = await theirs.encrypt_message(b"theirs %d a" % turn, ad)
        b = await theirs.encrypt_message(b"theirs %d b" % turn, ad)
        assert ours.decrypt(to_ours(b)) == b"theirs %d b" % turn
        assert ours.decrypt(to_ours(a)) == b"theirs %d a" % turn


async def test_their_initiator_our_responder():
    bob = Party.make("bob")
    alice = their_x3dh(b"\x0a" * 32)
    bundle = x3dh.Bundle(
        identity_key=bob.identity.public,
        signed_pre_key=bob.spk.public,
        signed_pre_key_sig=bob.bundle().spk_signature,
        pre_keys=frozenset({bob.opk.public}),
    )
    sk, ad, header = await alice.get_shared_secret_active(bundle, APPENDIX)
    ours_header = InitialHeader(header.identity_key, header.ephemeral_key, 7, 42)
    agreed = respond(bob.identity, "bob", "alice", ours_header, bob.spk, bob.opk, "e2ee")
    assert (agreed.shared_key, agreed.associated_data) == (sk, ad)

    their_alice, first = await TheirRatchet.encrypt_initial_message(
        *CONFIG, sk, bob.spk.public, b"hello from syndace", ad
    )
    our_bob = Session.responder(agreed.shared_key, agreed.associated_data, bob.spk)
    assert our_bob.decrypt(to_ours(first)) == b"hello from syndace"
    await _converse(our_bob, their_alice, ad)


async def test_our_initiator_their_responder():
    alice = Party.make("alice")
    bob = their_x3dh(b"\x0b" * 32)
    published = bob.bundle
    opk = next(iter(published.pre_keys))
    bundle = PrekeyBundle(
        identity_key=published.identity_key,
        spk_id=1,
        spk_public=published.signed_pre_key,
        spk_signature=published.signed_pre_key_sig,  # made by xeddsa, checked by libsodium
        opk_id=2,
        opk_public=opk,
    )
    started = initiate(alice.identity, "alice", "bob", bundle, "e2ee")
    their_header = x3dh.Header(
        identity_key=started.header.identity_key,
        ephemeral_key=started.header.ephemeral_key,
        signed_pre_key=bundle.spk_public,
        pre_key=opk,
    )
    sk, ad, spk_pair = await bob.get_shared_secret_passive(their_header, APPENDIX)
    assert (sk, ad) == (started.agreement.shared_key, started.agreement.associated_data)

    our_alice = Session.initiator(sk, ad, started.peer_ratchet_key)
    first = our_alice.encrypt(b"hello from agechat")
    their_bob, plaintext = await TheirRatchet.decrypt_initial_message(
        *CONFIG, sk, spk_pair.priv, to_theirs(first), ad
    )
    assert plaintext == b"hello from agechat"
    # Their side now sends first in this pair, so swap roles in the helper's first step.
    reply = await their_bob.encrypt_message(b"reply", ad)
    assert our_alice.decrypt(to_ours(reply)) == b"reply"
    await _converse(our_alice, their_bob, ad)


async def test_tampered_message_fails_on_both_sides():
    bob = Party.make("bob")
    alice = their_x3dh(b"\x0c" * 32)
    bundle = x3dh.Bundle(
        identity_key=bob.identity.public,
        signed_pre_key=bob.spk.public,
        signed_pre_key_sig=bob.bundle().spk_signature,
        pre_keys=frozenset(),
    )
    sk, ad, header = await alice.get_shared_secret_active(bundle, APPENDIX, require_pre_key=False)
    agreed = respond(
        bob.identity, "bob", "alice", InitialHeader(header.identity_key, header.ephemeral_key, 7),
        bob.spk, None, "e2ee",
    )  # fmt: skip
    assert agreed.shared_key == sk
    _, first = await TheirRatchet.encrypt_initial_message(
        *CONFIG,
        sk,
        bob.spk.public,
        b"x",
        ad + b"!",  # a different AD: must not open
    )
    from protocol.crypto.errors import CryptoError

    with pytest.raises(CryptoError):
        Session.responder(sk, ad, bob.spk).decrypt(to_ours(first))
