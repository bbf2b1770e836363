"""X3DH (Signal X3DH rev 1 §3.3, §3.4): both sides agree, and every binding holds."""

import dataclasses

import pytest

from protocol.crypto.errors import CryptoError
from protocol.crypto.keys import IdentityKeyPair, X25519KeyPair
from protocol.crypto.x3dh import (
    InitialHeader,
    PrekeyBundle,
    associated_data,
    initiate,
    respond,
    sign_prekey,
)
from tests.protocol.crypto.support import Party, deterministic_random

ALICE, BOB = Party.make("alice"), Party.make("bob")


@pytest.mark.parametrize("with_opk", [True, False])
def test_both_sides_derive_the_same_key_and_ad(with_opk):
    started = initiate(ALICE.identity, "alice", "bob", BOB.bundle(with_opk=with_opk), "e2ee")
    opk = BOB.opk if with_opk else None
    agreed = respond(BOB.identity, "bob", "alice", started.header, BOB.spk, opk, "e2ee")
    assert agreed == started.agreement
    assert len(agreed.shared_key) == 32
    assert started.peer_ratchet_key == BOB.spk.public
    assert started.header.opk_id == (42 if with_opk else None)
    assert started.header.identity_key == ALICE.identity.public


def test_one_time_prekey_changes_the_key():
    rnd = b"x3dh-opk"
    with_opk = initiate(ALICE.identity, "alice", "bob", BOB.bundle(), "e2ee",
                        random=deterministic_random(rnd))  # fmt: skip
    without = initiate(ALICE.identity, "alice", "bob", BOB.bundle(with_opk=False), "e2ee",
                       random=deterministic_random(rnd))  # fmt: skip
    assert with_opk.agreement.shared_key != without.agreement.shared_key


def test_forged_prekey_signature_is_refused():
    bundle = BOB.bundle()
    mallory = IdentityKeyPair.from_seed(b"\x66" * 32)
    forged = dataclasses.replace(bundle, spk_signature=sign_prekey(mallory, BOB.spk.public))
    other_spk = X25519KeyPair.from_private(b"\x77" * 32)
    swapped = dataclasses.replace(bundle, spk_public=other_spk.public)
    bad_bytes = dataclasses.replace(bundle, spk_signature=bytes(64))
    for bad in (forged, swapped, bad_bytes):
        with pytest.raises(CryptoError) as err:
            initiate(ALICE.identity, "alice", "bob", bad, "e2ee")
        assert err.value.code == "bad_prekey_signature"


def test_signature_covers_the_0x05_encoding():
    # Sig(IK, Encode(SPK)) with Encode = 0x05 ‖ pub (PROTOCOL.md §6.4.1); a signature over the bare
    # key must not verify.
    raw_sig = BOB.identity.sign(BOB.spk.public)
    bundle = dataclasses.replace(BOB.bundle(), spk_signature=raw_sig)
    with pytest.raises(CryptoError):
        initiate(ALICE.identity, "alice", "bob", bundle, "e2ee")


@pytest.mark.parametrize(
    ("bob_sees", "what"),
    [
        (("alicf", "bob", "e2ee"), "initiator handle"),
        (("alice", "bobb", "e2ee"), "responder handle"),
        (("alice", "bob", "visible"), "mode"),
    ],
)
def test_ad_binds_handles_and_mode(bob_sees, what):
    started = initiate(ALICE.identity, "alice", "bob", BOB.bundle(), "e2ee")
    initiator, responder, mode = bob_sees
    agreed = respond(BOB.identity, responder, initiator, started.header, BOB.spk, BOB.opk, mode)
    assert agreed.shared_key == started.agreement.shared_key  # same DH outputs...
    assert agreed.associated_data != started.agreement.associated_data, what  # ...other AD


def test_ad_layout_is_length_prefixed_fields():
    ad = associated_data(b"\x01" * 32, b"\x02" * 32, "alice", "bob", "e2ee")
    assert ad == (
        b"\x00\x20" + b"\x01" * 32 + b"\x00\x20" + b"\x02" * 32
        + b"\x00\x12agechat/x3dh-ad/v1" + b"\x00\x05alice" + b"\x00\x03bob" + b"\x00\x04e2ee"
    )  # fmt: skip
    with pytest.raises(CryptoError) as err:
        associated_data(b"\x01" * 32, b"\x02" * 32, "alice", "bob", "plaintext")
    assert err.value.code == "invalid_mode"


def test_wrong_identity_or_prekeys_give_a_different_key():
    started = initiate(ALICE.identity, "alice", "bob", BOB.bundle(), "e2ee")
    # Bob answering with another SPK, OPK or identity derives a different SK.
    other = X25519KeyPair.from_private(b"\x55" * 32)
    for spk, opk, ik in [
        (other, BOB.opk, BOB.identity),
        (BOB.spk, other, BOB.identity),
        (BOB.spk, BOB.opk, IdentityKeyPair.from_seed(b"\x56" * 32)),
    ]:
        agreed = respond(ik, "bob", "alice", started.header, spk, opk, "e2ee")
        assert agreed.shared_key != started.agreement.shared_key


def test_prekey_presence_must_match_the_header():
    started = initiate(ALICE.identity, "alice", "bob", BOB.bundle(), "e2ee")
    with pytest.raises(CryptoError) as err:
        respond(BOB.identity, "bob", "alice", started.header, BOB.spk, None, "e2ee")
    assert err.value.code == "prekey_mismatch"
    no_opk = initiate(ALICE.identity, "alice", "bob", BOB.bundle(with_opk=False), "e2ee")
    with pytest.raises(CryptoError):
        respond(BOB.identity, "bob", "alice", no_opk.header, BOB.spk, BOB.opk, "e2ee")


def test_malformed_bundles_and_headers_are_refused():
    good = BOB.bundle()
    for change in (
        {"identity_key": b"\x01" * 31},
        {"spk_public": b"\x01" * 33},
        {"spk_signature": b"\x01" * 63},
        {"opk_public": None},
        {"opk_id": -1},
        {"spk_id": 2**32},
    ):
        with pytest.raises(CryptoError) as err:
            dataclasses.replace(good, **change)
        assert err.value.code == "invalid_key"
    with pytest.raises(CryptoError):
        InitialHeader(ALICE.identity.public, b"\x00" * 16, 1)


def test_low_order_ephemeral_key_is_refused():
    header = InitialHeader(ALICE.identity.public, b"\x00" * 32, 7, None)
    with pytest.raises(CryptoError) as err:
        respond(BOB.identity, "bob", "alice", header, BOB.spk, None, "e2ee")
    assert err.value.code == "weak_key"


def test_low_order_prekey_in_a_signed_bundle_is_refused():
    zero = b"\x00" * 32
    bundle = PrekeyBundle(BOB.identity.public, 1, zero, sign_prekey(BOB.identity, zero))
    with pytest.raises(CryptoError) as err:
        initiate(ALICE.identity, "alice", "bob", bundle, "e2ee")
    assert err.value.code == "weak_key"
