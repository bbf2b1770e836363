"""Fixed out-of-order cases the random interleaving test only reaches by chance (issue 17).

The Double Ratchet spec's own example (rev. 1, §2.6 "Out-of-order messages"): Bob sends
B1, B2, B3 on one ratchet key; Alice receives only B1, answers, and Bob's next message B4
comes on his *next* ratchet key with PN = 3. B4 triggers a DH ratchet step at Alice, and
before it she must store the keys of B2 and B3 from her *previous* receiving chain
(SkipMessageKeys(state, header.pn), §3.5), or the late B2 and B3 are lost for good.
"""

from __future__ import annotations

import pytest

from protocol.crypto.errors import CryptoError
from protocol.crypto.ratchet import HEADER_BYTES, Header
from tests.protocol.crypto.support import establish


def header(message: bytes) -> Header:
    return Header.from_bytes(message[:HEADER_BYTES])


def test_late_messages_from_the_previous_receiving_chain_after_a_dh_step():
    alice, bob = establish(label=b"spec-2.6")
    assert bob.decrypt(alice.encrypt(b"A1")) == b"A1"  # Bob can send from here on

    b1, b2, b3 = (bob.encrypt(t) for t in (b"B1", b"B2", b"B3"))
    old_key = bob.ratchet_key
    assert [header(m) for m in (b1, b2, b3)] == [Header(old_key, 0, n) for n in range(3)]
    assert alice.decrypt(b1) == b"B1"  # B2 and B3 are delayed

    assert bob.decrypt(alice.encrypt(b"A2")) == b"A2"  # Bob's DH ratchet step
    b4 = bob.encrypt(b"B4")
    assert bob.ratchet_key != old_key
    # PN: the length of Bob's previous sending chain; N: first on the new one.
    assert header(b4) == Header(bob.ratchet_key, 3, 0)

    assert alice.stored_skipped_keys == 0
    assert alice.decrypt(b4) == b"B4"  # Alice's DH ratchet step, storing B2's and B3's keys
    assert alice.stored_skipped_keys == 2

    assert alice.decrypt(b3) == b"B3"
    assert alice.decrypt(b2) == b"B2"
    assert alice.stored_skipped_keys == 0
    for replay in (b2, b3):  # each stored key opens its message once
        before = alice.to_bytes()
        with pytest.raises(CryptoError):
            alice.decrypt(replay)
        assert alice.to_bytes() == before
    # The conversation goes on in both directions.
    assert bob.decrypt(alice.encrypt(b"A3")) == b"A3"
    assert alice.decrypt(bob.encrypt(b"B5")) == b"B5"


def test_keys_skipped_on_a_chain_survive_the_next_dh_step():
    """Keys stored on one chain (A1, A2) stay usable after a DH step, next to keys skipped
    on the new chain (A4); the old chain had nothing left to skip (PN = its length)."""
    alice, bob = establish(label=b"spec-2.6-none")
    late = [alice.encrypt(b"A1"), alice.encrypt(b"A2")]  # Bob gets neither yet
    # Bob can't answer before he hears from Alice: deliver A3 first, also on that chain.
    a3 = alice.encrypt(b"A3")
    assert bob.decrypt(a3) == b"A3"  # skips A1, A2 on the same chain: 2 keys stored
    assert bob.stored_skipped_keys == 2
    assert alice.decrypt(bob.encrypt(b"B1")) == b"B1"  # Alice ratchets
    a4 = alice.encrypt(b"A4")
    a5 = alice.encrypt(b"A5")
    assert header(a5) == Header(alice.ratchet_key, 3, 1)
    assert bob.decrypt(a5) == b"A5"  # Bob ratchets; skips A4 on the new chain
    assert bob.stored_skipped_keys == 3
    assert [bob.decrypt(m) for m in (*late, a4)] == [b"A1", b"A2", b"A4"]
    assert bob.stored_skipped_keys == 0


def test_late_messages_across_two_dh_steps():
    """B2 from two chains back still opens: its key was stored at the first step."""
    alice, bob = establish(label=b"spec-2.6-two")
    bob.decrypt(alice.encrypt(b"A1"))
    b1, b2 = bob.encrypt(b"B1"), bob.encrypt(b"B2")
    alice.decrypt(b1)
    bob.decrypt(alice.encrypt(b"A2"))
    c1, c2 = bob.encrypt(b"C1"), bob.encrypt(b"C2")  # Bob's second chain
    assert header(c1).pn == 2
    alice.decrypt(c1)  # stores B2's key (PN = 2, one received)
    bob.decrypt(alice.encrypt(b"A3"))
    d1 = bob.encrypt(b"D1")  # Bob's third chain
    assert header(d1).pn == 2
    alice.decrypt(d1)  # stores C2's key
    assert alice.stored_skipped_keys == 2
    assert alice.decrypt(b2) == b"B2"
    assert alice.decrypt(c2) == b"C2"
