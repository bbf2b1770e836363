"""Safety numbers (libsignal NumericFingerprintGenerator, version 0)."""

import pytest

from protocol.crypto.errors import CryptoError
from protocol.crypto.keys import IdentityKeyPair
from protocol.crypto.safety_number import (
    fingerprint_digits,
    format_safety_number,
    safety_number,
)

ALICE = IdentityKeyPair.from_seed(b"\x01" * 32).public
BOB = IdentityKeyPair.from_seed(b"\x02" * 32).public


def test_libsignal_known_answer():
    # signalapp/libsignal rust/protocol/src/fingerprint.rs, fingerprint_test_v1 (the
    # Java testVectorsVersion1): 33-byte serialised keys, 5200 iterations.
    alice = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
    bob = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
    a = fingerprint_digits(alice, b"+14152222222")
    b = fingerprint_digits(bob, b"+14153333333")
    assert min(a, b) + max(a, b) == "300354477692869396892869876765458257569162576843440918079131"


def test_same_number_on_both_sides():
    number = safety_number("alice", ALICE, "bob", BOB)
    assert number == safety_number("bob", BOB, "alice", ALICE)
    assert len(number) == 60 and number.isdigit()


def test_frozen_agechat_vector():
    # Ed25519 keys from seeds 0x01*32 (alice) and 0x02*32 (bob); frozen from this code.
    assert safety_number("alice", ALICE, "bob", BOB) == FROZEN


FROZEN = "075362714455560201043650082844788061801066304434201883017403"


def test_changes_with_either_key_or_handle():
    base = safety_number("alice", ALICE, "bob", BOB)
    mallory = IdentityKeyPair.from_seed(b"\x03" * 32).public
    assert safety_number("alice", mallory, "bob", BOB) != base
    assert safety_number("alice", ALICE, "bob", mallory) != base
    assert safety_number("alicf", ALICE, "bob", BOB) != base


def test_format_in_twelve_groups():
    text = format_safety_number(safety_number("alice", ALICE, "bob", BOB))
    groups = text.split(" ")
    assert len(groups) == 12 and all(len(g) == 5 for g in groups)
    with pytest.raises(ValueError):
        format_safety_number("123")


def test_key_size_is_checked():
    with pytest.raises(CryptoError):
        safety_number("alice", ALICE[:31], "bob", BOB)
