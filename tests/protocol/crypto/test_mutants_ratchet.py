"""Fixed out-of-order cases the random interleaving test only reaches by chance (issue 17).

The Double Ratchet spec's own example (rev. 1, §2.6 "Out-of-order messages"): Bob sends
B1, B2, B3 on one ratchet key; Alice receives only B1, answers, and Bob's next message B4
comes on his *next* ratchet key with PN = 3. B4 triggers a DH ratchet step at Alice, and
before it she must store the keys of B2 and B3 from her *previous* receiving chain
(SkipMessageKeys(state, header.pn), §3.5), or the late B2 and B3 are lost for good.
"""

from __future__ import annotations

import msgspec
import pytest

from protocol.crypto.errors import CryptoError
from protocol.crypto.ratchet import (
    HEADER_BYTES,
    NONCE_BYTES,
    STATE_VERSION,
    TAG_BYTES,
    Header,
    Session,
    aead_decrypt,
    aead_encrypt,
    initiation_winner,
    migrate_state,
)
from tests.protocol.crypto.support import deterministic_random, establish


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


# --- every failure's code (and sentence), and the boundaries ------------------------------
# (protocol/crypto/errors.py: callers match on the code; the sentence is pinned here too,
# as it is what a log or a bug report shows.)


def crypto_error(call, *args, **kwargs) -> CryptoError:
    with pytest.raises(CryptoError) as info:
        call(*args, **kwargs)
    return info.value


def test_header_errors():
    short = crypto_error(Header.from_bytes, bytes(HEADER_BYTES - 1))
    assert (short.code, str(short)) == (
        "malformed_message",
        "malformed_message: header must be 41 bytes",
    )
    assert crypto_error(Header.from_bytes, bytes(HEADER_BYTES + 1)).code == "malformed_message"
    v2 = Header(bytes(32), 0, 0).to_bytes().replace(b"\x01", b"\x02", 1)
    error = crypto_error(Header.from_bytes, v2)
    assert (error.code, str(error)) == (
        "unsupported_version",
        "unsupported_version: header version 2",
    )


def test_aead_boundaries_and_errors():
    key = bytes(range(32))
    short = crypto_error(aead_decrypt, key, bytes(NONCE_BYTES + TAG_BYTES - 1), b"")
    assert (short.code, str(short)) == (
        "malformed_message",
        "malformed_message: ciphertext too short",
    )
    # Nonce and tag with an empty ciphertext: long enough, and doesn't authenticate.
    forged = crypto_error(aead_decrypt, key, bytes(NONCE_BYTES + TAG_BYTES), b"")
    assert (forged.code, str(forged)) == (
        "decryption_failed",
        "decryption_failed: The message does not authenticate with this session.",
    )
    sealed = aead_encrypt(key, b"", b"ad", deterministic_random(b"n"))
    assert len(sealed) == NONCE_BYTES + TAG_BYTES
    assert aead_decrypt(key, sealed, b"ad") == b""
    bad_random = crypto_error(aead_encrypt, key, b"x", b"", lambda n: bytes(n - 1))
    assert (bad_random.code, str(bad_random)) == (
        "invalid_key",
        "invalid_key: random nonce must be 24 bytes",
    )


def test_message_length_boundary():
    alice, bob = establish(label=b"len")
    empty = alice.encrypt(b"")
    assert len(empty) == HEADER_BYTES + NONCE_BYTES + TAG_BYTES  # the shortest message
    short = crypto_error(bob.decrypt, empty[:-1])
    assert (short.code, str(short)) == ("malformed_message", "malformed_message: message too short")
    assert bob.decrypt(empty) == b""


def test_a_forged_header_on_the_first_message_fails_cleanly():
    """PN on the initiator's first received message names no chain it has: a forged PN > 0
    must fail as a CryptoError, state untouched (the header is authenticated)."""
    alice, bob = establish(label=b"pn")
    bob.decrypt(alice.encrypt(b"A1"))
    genuine = bob.encrypt(b"B1")
    header = Header.from_bytes(genuine[:HEADER_BYTES])
    forged = Header(header.ratchet_key, 5, header.n).to_bytes() + genuine[HEADER_BYTES:]
    before = alice.to_bytes()
    assert crypto_error(alice.decrypt, forged).code == "decryption_failed"
    assert alice.to_bytes() == before
    assert alice.decrypt(genuine) == b"B1"


def test_no_receiving_chain_yet():
    """The initiator has the responder's ratchet key but no receiving chain until the
    responder's first message: a message claiming that key fails."""
    alice, _ = establish(label=b"nochain")
    their_key = alice.state().dhr
    message = Header(their_key, 0, 0).to_bytes() + bytes(NONCE_BYTES + TAG_BYTES)
    error = crypto_error(alice.decrypt, message)
    assert (error.code, str(error)) == (
        "decryption_failed",
        "decryption_failed: no receiving chain for this ratchet key",
    )


def test_a_responder_cannot_send_and_a_chain_ends():
    alice, bob = establish(label=b"ends")
    error = crypto_error(bob.encrypt, b"hi")
    assert str(error) == "invalid_state: a responder cannot send before it receives"
    state = alice.state()
    state.ns = 2**32 - 1  # the last N a header can carry
    last = Session(state, deterministic_random(b"last"))
    message = last.encrypt(b"last")
    assert Header.from_bytes(message[:HEADER_BYTES]).n == 2**32 - 1
    error = crypto_error(last.encrypt, b"one more")
    assert (error.code, str(error)) == ("invalid_state", "invalid_state: sending chain exhausted")


def test_new_sessions_start_at_zero():
    alice, bob = establish(label=b"zero")
    a, b = alice.state(), bob.state()
    assert (a.version, a.ns, a.nr, a.pn, a.ckr, a.skipped) == (STATE_VERSION, 0, 0, 0, None, [])
    assert a.dhr is not None and a.cks is not None
    assert (b.version, b.ns, b.nr, b.pn, b.dhr, b.cks, b.ckr) == (
        STATE_VERSION,
        0,
        0,
        0,
        None,
        None,
        None,
    )
    for make in (Session.initiator, Session.responder):
        other = bytes(32) if make is Session.initiator else alice._dhs
        error = crypto_error(make, bytes(31), b"ad", other)
        assert (error.code, str(error)) == (
            "invalid_key",
            "invalid_key: shared key must be 32 bytes",
        )


def test_saved_state_errors_say_what_was_wrong():
    not_msgpack = crypto_error(Session.from_bytes, b"\xc1")
    assert str(not_msgpack) == "invalid_state: not msgpack"
    not_object = crypto_error(Session.from_bytes, msgspec.msgpack.encode([1]))
    assert str(not_object) == "invalid_state: not a state object"
    alice, _ = establish(label=b"saved")
    raw = msgspec.msgpack.decode(alice.to_bytes())
    bad = crypto_error(Session.from_bytes, msgspec.msgpack.encode({**raw, "ns": -1}))
    assert bad.code == "invalid_state"
    assert str(bad).startswith("invalid_state: Expected `int` >= 0 - at `$.ns`")


def test_a_restored_session_uses_the_random_it_is_given():
    alice, _ = establish(label=b"restore")
    saved = alice.to_bytes()
    one = Session.from_bytes(saved, random=deterministic_random(b"same"))
    two = Session.from_bytes(saved, random=deterministic_random(b"same"))
    assert one.encrypt(b"x") == two.encrypt(b"x")


def test_state_migrations_step_one_version_at_a_time():
    steps = {
        0: lambda raw: {**raw, "version": 1, "seen": [*raw["seen"], 0]},
        1: lambda raw: {**raw, "version": 2, "seen": [*raw["seen"], 1]},
    }
    assert migrate_state({"version": 0, "seen": []}, migrations=steps, current=2) == {
        "version": 2,
        "seen": [0, 1],
    }
    assert migrate_state({"version": 2, "seen": []}, migrations=steps, current=2)["seen"] == []
    for version, sentence in [
        (True, "unsupported_version: session state version True"),
        ("1", "unsupported_version: session state version '1'"),
        (3, "unsupported_version: session state version 3"),
        (None, "unsupported_version: session state version None"),
    ]:
        error = crypto_error(migrate_state, {"version": version}, migrations=steps, current=2)
        assert str(error) == sentence
    gap = crypto_error(migrate_state, {"version": 0}, migrations={}, current=1)
    assert str(gap) == "unsupported_version: no migration from state version 0"
    stuck = crypto_error(migrate_state, {"version": 0}, migrations={0: dict}, current=1)
    assert str(stuck) == "invalid_state: migration from 0 did not bump version"


def test_initiation_winner_refuses_one_handle_twice():
    with pytest.raises(ValueError, match=r"^a conversation has two different handles$"):
        initiation_winner("ann", "ann")
