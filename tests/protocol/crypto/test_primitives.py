"""Published vectors through our wrappers: RFC 5869, RFC 7748, draft-irtf-cfrg-xchacha-03."""

import nacl.bindings
import pytest

from protocol.crypto.errors import CryptoError
from protocol.crypto.kdf import equal, hkdf_expand, hkdf_extract, hkdf_sha256, hmac_sha256
from protocol.crypto.keys import (
    IdentityKeyPair,
    X25519KeyPair,
    check_size,
    ed25519_public_to_x25519,
    x25519,
)

h = bytes.fromhex

# RFC 5869 Appendix A, test cases 1-3 (SHA-256): IKM, salt, info, L, PRK, OKM.
RFC5869 = [
    (
        b"\x0b" * 22,
        bytes(range(0x00, 0x0D)),
        bytes(range(0xF0, 0xFA)),
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        b"\x0b" * 22,
        b"",
        b"",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_hkdf_rfc5869(ikm, salt, info, length, prk, okm):
    assert hkdf_extract(salt, ikm).hex() == prk
    assert hkdf_expand(h(prk), info, length).hex() == okm
    assert hkdf_sha256(ikm, salt=salt, info=info, length=length).hex() == okm


def test_hkdf_refuses_impossible_lengths():
    with pytest.raises(ValueError):
        hkdf_expand(b"\x00" * 32, b"", 255 * 32 + 1)
    with pytest.raises(ValueError):
        hkdf_expand(b"\x00" * 32, b"", 0)


def test_hmac_and_equal():
    # RFC 4231 test case 2.
    assert (
        hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex()
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert equal(b"abc", b"abc")
    assert not equal(b"abc", b"abd")
    assert not equal(b"abc", b"ab")


# RFC 7748 §5.2: scalar, u-coordinate, output.
RFC7748_X25519 = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]


@pytest.mark.parametrize(("scalar", "u", "out"), RFC7748_X25519)
def test_x25519_rfc7748_vectors(scalar, u, out):
    assert x25519(h(scalar), h(u)).hex() == out


def test_x25519_rfc7748_iterated():
    # RFC 7748 §5.2: k = u = 9; k, u = X25519(k, u), k; after 1 and 1000 iterations.
    k = u = (9).to_bytes(32, "little")
    for i in range(1000):
        k, u = x25519(k, u), k
        if i == 0:
            assert k.hex() == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


def test_x25519_rfc7748_alice_bob():
    # RFC 7748 §6.1.
    alice = X25519KeyPair.from_private(
        h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = X25519KeyPair.from_private(
        h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert alice.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert bob.public.hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert x25519(alice.private, bob.public).hex() == shared
    assert x25519(bob.private, alice.public).hex() == shared


@pytest.mark.parametrize(
    "low_order",
    [
        b"\x00" * 32,  # the identity point
        (1).to_bytes(32, "little"),  # order 4
        h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),  # order 8
    ],
)
def test_x25519_all_zero_output_is_a_protocol_failure(low_order):
    with pytest.raises(CryptoError) as err:
        x25519(b"\x11" * 32, low_order)
    assert err.value.code == "weak_key"


def test_key_sizes_are_checked_where_they_enter():
    for bad in (b"", b"\x01" * 31, b"\x01" * 33):
        with pytest.raises(CryptoError) as err:
            x25519(bad, b"\x09" + b"\x00" * 31)
        assert err.value.code == "invalid_key"
        with pytest.raises(CryptoError):
            X25519KeyPair.from_private(bad)
        with pytest.raises(CryptoError):
            IdentityKeyPair.from_seed(bad)
    with pytest.raises(CryptoError):
        check_size(b"\x00" * 24, 32)


def test_identity_dh_key_is_the_libsodium_conversion():
    identity = IdentityKeyPair.from_seed(b"\x02" * 32)
    assert ed25519_public_to_x25519(identity.public) == identity.dh.public
    assert repr(b"\x02" * 32) not in repr(identity)  # secrets stay out of logs


def test_xchacha20poly1305_draft_irtf_cfrg_xchacha_03_a_3_1():
    # draft-irtf-cfrg-xchacha-03 Appendix A.3.1 (AEAD_XChaCha20_Poly1305).
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it."
    )
    aad = h("50515253c0c1c2c3c4c5c6c7")
    key = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
    nonce = h("404142434445464748494a4b4c4d4e4f5051525354555657")
    ciphertext = h(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
        "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
        "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
        "21f9664c97637da9768812f615c68b13b52e"
    )
    tag = h("c0875924c1c7987947deafd8780acf49")
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)
    assert sealed == ciphertext + tag
    assert (
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, aad, nonce, key)
        == plaintext
    )
    assert len(plaintext) == 114  # one line: the draft's line break is only wrapping
