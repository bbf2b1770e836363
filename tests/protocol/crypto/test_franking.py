"""Message franking: a genuine report verifies, anything altered does not."""

import pytest

from protocol.crypto.errors import CryptoError
from protocol.crypto.franking import commitment, frank, relay_tag, unfrank, verify_report
from tests.protocol.crypto.support import deterministic_random, establish

RELAY_SECRET = b"\x42" * 32
WHEN = 1_767_225_600_000


def _sent(text="you are being abusive", *, label=b"frank"):
    """Send one franked message through a real session; return what each party holds."""
    alice, bob = establish()
    franked = frank(text, "e2ee", random=deterministic_random(label))
    wire = alice.encrypt(franked.plaintext)
    tag = relay_tag(RELAY_SECRET, franked.commitment, "alice", "bob", WHEN)  # relay, on delivery
    inner = unfrank(bob.decrypt(wire), franked.commitment, "e2ee")  # recipient
    return inner, franked.commitment, tag


def _report(inner, c, tag, **changes):
    fields = dict(
        text=inner.text, franking_key=inner.franking_key, reported_commitment=c,
        reported_tag=tag, sender="alice", recipient="bob", timestamp=WHEN, mode="e2ee",
    )  # fmt: skip
    fields.update(changes)
    return verify_report(RELAY_SECRET, **fields)


def test_genuine_report_verifies():
    inner, c, tag = _sent()
    assert inner.text == "you are being abusive"
    assert _report(inner, c, tag)


@pytest.mark.parametrize(
    "changes",
    [
        {"text": "you are being abusive!"},
        {"text": ""},
        {"franking_key": b"\x00" * 32},
        {"sender": "carol"},
        {"recipient": "carol"},
        {"timestamp": WHEN + 1},
        {"mode": "visible"},
        {"reported_commitment": b"\x00" * 32},
        {"reported_tag": b"\x00" * 32},
        {"reported_tag": b"\x00" * 31},
        {"franking_key": b"\x00" * 31},
    ],
)
def test_altered_reports_fail(changes):
    inner, c, tag = _sent()
    assert not _report(inner, c, tag, **changes)


def test_franking_key_and_tag_from_another_message_fail():
    inner, c, tag = _sent()
    other_inner, other_c, other_tag = _sent("hello", label=b"other")
    assert not _report(inner, c, other_tag)
    assert not _report(inner, c, tag, franking_key=other_inner.franking_key)
    assert not _report(inner, other_c, other_tag)
    # A relay tag is bound to the relay's secret.
    assert not verify_report(
        b"\x43" * 32, text=inner.text, franking_key=inner.franking_key, reported_commitment=c,
        reported_tag=tag, sender="alice", recipient="bob", timestamp=WHEN, mode="e2ee",
    )  # fmt: skip


def test_recipient_drops_a_message_whose_commitment_does_not_match():
    franked = frank("hi", "e2ee", random=deterministic_random(b"x"))
    other = frank("hi", "e2ee", random=deterministic_random(b"y"))
    with pytest.raises(CryptoError) as err:
        unfrank(franked.plaintext, other.commitment, "e2ee")
    assert err.value.code == "franking_mismatch"
    with pytest.raises(CryptoError) as err:
        unfrank(franked.plaintext, franked.commitment, "visible")
    assert err.value.code == "franking_mismatch"
    with pytest.raises(CryptoError) as err:
        unfrank(b"not msgpack \xc1", franked.commitment, "e2ee")
    assert err.value.code == "invalid_plaintext"


def test_fields_are_length_prefixed_and_keys_checked():
    assert relay_tag(RELAY_SECRET, b"\x01" * 32, "ab", "c", 1) != relay_tag(
        RELAY_SECRET, b"\x01" * 32, "a", "bc", 1
    )
    with pytest.raises(CryptoError):
        relay_tag(b"short", b"\x01" * 32, "a", "b", 1)
    with pytest.raises(CryptoError):
        commitment(b"\x01" * 16, "text", "e2ee")
    with pytest.raises(ValueError):
        relay_tag(RELAY_SECRET, b"\x01" * 32, "a", "b", -1)


def test_each_message_gets_a_fresh_franking_key():
    a = frank("same", "e2ee")
    b = frank("same", "e2ee")
    assert a.commitment != b.commitment
