from datetime import UTC, datetime

import nacl.signing

from protocol.identity import auth_message, declaration_message, dh_key_for, rfc3339, verify


def test_signatures_are_bound_to_their_context():
    key = nacl.signing.SigningKey(b"\x01" * 32)
    pub = bytes(key.verify_key)
    msg = auth_message("relay-a", b"\x00" * 32, "alice")
    sig = key.sign(msg).signature
    assert verify(pub, msg, sig)
    assert not verify(pub, auth_message("relay-b", b"\x00" * 32, "alice"), sig)
    assert not verify(pub, auth_message("relay-a", b"\x01" * 32, "alice"), sig)
    assert not verify(pub, auth_message("relay-a", b"\x00" * 32, "alicf"), sig)
    decl = declaration_message("alice", "adult", pub, datetime(2026, 1, 1, tzinfo=UTC))
    assert not verify(pub, decl, sig)


def test_length_prefixes_keep_fields_apart():
    # "ab"+"c" and "a"+"bc" must not sign the same bytes.
    assert auth_message("ab", b"c" * 32, "xyz") != auth_message("a", b"bc" + b"c" * 31, "xyz")


def test_verify_rejects_malformed_inputs_without_raising():
    assert not verify(b"short", b"m", b"\x00" * 64)
    assert not verify(b"\x00" * 32, b"m", b"\x00" * 10)
    assert not verify(b"\xff" * 32, b"m", b"\x00" * 64)


def test_dh_key_is_the_libsodium_conversion():
    key = nacl.signing.SigningKey(b"\x02" * 32)
    assert dh_key_for(bytes(key.verify_key)) == bytes(key.to_curve25519_private_key().public_key)


def test_rfc3339_is_utc_seconds_with_z():
    from datetime import timedelta, timezone

    moment = datetime(2026, 1, 1, 12, 0, 0, 999, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2026-01-01T10:00:00Z"
