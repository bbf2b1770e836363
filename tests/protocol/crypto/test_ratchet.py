"""Double Ratchet properties (Signal Double Ratchet rev 1 §3, §6)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.crypto.errors import CryptoError
from protocol.crypto.ratchet import (
    HEADER_BYTES,
    MAX_SKIP,
    MAX_STORED_SKIPPED,
    Header,
    Session,
    initiation_winner,
    kdf_ck,
    keep_own_session,
)
from tests.protocol.crypto.support import deterministic_random, establish


def test_round_trip_both_directions_with_dh_steps():
    alice, bob = establish()
    assert not bob.can_send
    for turn in range(4):
        for i in range(3):
            text = f"a{turn}.{i}".encode()
            assert bob.decrypt(alice.encrypt(text)) == text
        for i in range(2):
            text = f"b{turn}.{i}".encode()
            assert alice.decrypt(bob.encrypt(text)) == text


def test_responder_cannot_send_first():
    _, bob = establish()
    with pytest.raises(CryptoError) as err:
        bob.encrypt(b"hi")
    assert err.value.code == "invalid_state"


def test_header_layout():
    alice, _ = establish()
    alice.encrypt(b"0")
    message = alice.encrypt(b"hello")
    header = Header.from_bytes(message[:HEADER_BYTES])
    assert message[0] == 1
    assert header == Header(alice.ratchet_key, 0, 1)
    assert len(message) == HEADER_BYTES + 24 + len(b"hello") + 16


def test_kdf_ck_uses_0x01_for_message_key_and_0x02_for_chain_key():
    import hashlib
    import hmac

    ck = bytes(range(32))
    next_ck, mk = kdf_ck(ck)
    assert mk == hmac.new(ck, b"\x01", hashlib.sha256).digest()
    assert next_ck == hmac.new(ck, b"\x02", hashlib.sha256).digest()


# --- random interleavings ------------------------------------------------------------------

Op = st.one_of(
    st.tuples(st.just("send"), st.sampled_from("ab")),
    st.tuples(st.sampled_from(["deliver", "dup", "drop"]), st.integers(0, 10_000)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(Op, max_size=60), st.binary(min_size=4, max_size=4))
def test_random_interleavings_decrypt_exactly_the_delivered_messages(ops, label):
    alice, bob = establish(label=label)
    sessions = {"a": alice, "b": bob}
    in_flight: list[tuple[str, bytes, bytes]] = []  # (recipient, wire, plaintext)
    delivered: set[bytes] = set()
    count = 0
    for op, arg in ops:
        if op == "send":
            sender = sessions[arg]
            if not sender.can_send:
                continue
            count += 1
            text = f"{arg}{count}".encode()
            in_flight.append(("b" if arg == "a" else "a", sender.encrypt(text), text))
            continue
        if not in_flight:
            continue
        index = arg % len(in_flight)
        recipient, wire, text = in_flight[index]
        if op == "drop":
            in_flight.pop(index)
            continue
        if op == "deliver":
            in_flight.pop(index)  # "dup" leaves it in flight to be delivered again
        session = sessions[recipient]
        before = session.to_bytes()
        if text in delivered:
            with pytest.raises(CryptoError):
                session.decrypt(wire)
            assert session.to_bytes() == before
        else:
            assert session.decrypt(wire) == text
            delivered.add(text)


# --- tampering and replay ------------------------------------------------------------------


@pytest.fixture(scope="module")
def conversation():
    """A session mid-conversation (after DH steps) and the next messages to it."""
    alice, bob = establish(label=b"tamper")
    for _ in range(2):
        bob.decrypt(alice.encrypt(b"x"))
        alice.decrypt(bob.encrypt(b"y"))
    late = alice.encrypt(b"late")  # stays undelivered: its key will be a skipped key
    fresh = [alice.encrypt(f"m{i}".encode()) for i in range(2)]
    bob.decrypt(fresh[1])
    return bob.to_bytes(), late, fresh[0]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_flipped_bit_fails_and_leaves_state_unchanged(conversation, data):
    saved, late, skipped = conversation
    message = data.draw(st.sampled_from([late, skipped]))
    bit = data.draw(st.integers(0, len(message) * 8 - 1))
    tampered = bytearray(message)
    tampered[bit // 8] ^= 1 << (bit % 8)
    bob = Session.from_bytes(saved, random=deterministic_random(b"t"))
    with pytest.raises(CryptoError):
        bob.decrypt(bytes(tampered))
    assert bob.to_bytes() == saved
    assert bob.decrypt(message) in (b"late", b"m0")  # the genuine one still works


@pytest.mark.parametrize("cut", [0, 1, HEADER_BYTES, HEADER_BYTES + 24 + 15])
def test_truncated_messages_are_malformed(conversation, cut):
    saved, late, _ = conversation
    bob = Session.from_bytes(saved)
    with pytest.raises(CryptoError) as err:
        bob.decrypt(late[:cut])
    assert err.value.code == "malformed_message"
    assert bob.to_bytes() == saved


def test_replay_is_refused():
    alice, bob = establish()
    first, second = alice.encrypt(b"1"), alice.encrypt(b"2")
    assert bob.decrypt(second) == b"2"
    assert bob.decrypt(first) == b"1"  # from the skipped keys
    for replay in (first, second):
        before = bob.to_bytes()
        with pytest.raises(CryptoError) as err:
            bob.decrypt(replay)
        assert err.value.code in {"duplicate_message", "decryption_failed"}
        assert bob.to_bytes() == before
    # Replays from an older chain, after both sides ratcheted, fail too.
    alice.decrypt(bob.encrypt(b"r"))
    bob.decrypt(alice.encrypt(b"3"))
    with pytest.raises(CryptoError):
        bob.decrypt(first)


def test_forward_secrecy_old_keys_are_gone():
    alice, bob = establish()
    message = alice.encrypt(b"secret")
    assert bob.decrypt(message) == b"secret"
    snapshot = bob.to_bytes()  # what an attacker who seizes the device now would get
    for state in (bob, Session.from_bytes(snapshot)):
        with pytest.raises(CryptoError):
            state.decrypt(message)
    assert b"secret" not in snapshot


def test_post_compromise_security_heals_after_the_next_dh_step():
    alice, bob = establish(label=b"pcs")
    bob.decrypt(alice.encrypt(b"hello"))
    # The attacker copies Bob's whole state (root, chain and ratchet private keys) and
    # then watches the wire passively; its copy draws its own randomness.
    attacker = Session.from_bytes(bob.to_bytes(), random=deterministic_random(b"attacker"))
    same_chain = alice.encrypt(b"still readable")
    assert attacker.decrypt(same_chain) == b"still readable"
    assert bob.decrypt(same_chain) == b"still readable"
    # Bob's reply carries his next ratchet key (already in the stolen state); Alice's
    # answer on her new chain is DH(A2, B1): still exposed.
    alice.decrypt(bob.encrypt(b"reply"))
    exposed = alice.encrypt(b"exposed")
    assert bob.decrypt(exposed) == b"exposed"
    assert attacker.decrypt(exposed) == b"exposed"
    # Bob now ratchets with fresh randomness the attacker lacks (B2); Alice answers on
    # DH(A3, B2). From here on the stolen state is useless.
    alice.decrypt(bob.encrypt(b"new key"))
    for i in range(3):
        healed = alice.encrypt(f"healed {i}".encode())
        assert bob.decrypt(healed) == f"healed {i}".encode()
        with pytest.raises(CryptoError):
            attacker.decrypt(healed)


def test_max_skip_is_respected_without_corrupting_state():
    alice, bob = establish()
    messages = [alice.encrypt(f"{i}".encode()) for i in range(MAX_SKIP + 2)]
    before = bob.to_bytes()
    with pytest.raises(CryptoError) as err:
        bob.decrypt(messages[MAX_SKIP + 1])  # needs 1001 skipped keys
    assert err.value.code == "too_many_skipped"
    assert bob.to_bytes() == before
    assert bob.decrypt(messages[MAX_SKIP]) == str(MAX_SKIP).encode()  # exactly 1000: fine
    assert bob.stored_skipped_keys == MAX_SKIP
    assert bob.decrypt(messages[3]) == b"3"
    assert bob.decrypt(messages[MAX_SKIP + 1]) == str(MAX_SKIP + 1).encode()


def test_forged_far_ahead_header_is_refused_before_any_work():
    alice, bob = establish()
    bob.decrypt(alice.encrypt(b"0"))
    genuine = alice.encrypt(b"1")
    header = Header.from_bytes(genuine[:HEADER_BYTES])
    forged = Header(header.ratchet_key, header.pn, 2**32 - 1).to_bytes() + genuine[HEADER_BYTES:]
    before = bob.to_bytes()
    with pytest.raises(CryptoError) as err:
        bob.decrypt(forged)
    assert err.value.code == "too_many_skipped"
    assert bob.to_bytes() == before
    assert bob.decrypt(genuine) == b"1"


def test_stored_skipped_keys_are_capped_oldest_first():
    alice, bob = establish()
    chains = []
    for _ in range(3):  # three chains of 1001 messages, only the last delivered
        chain = [alice.encrypt(b"%d" % i) for i in range(MAX_SKIP + 1)]
        bob.decrypt(chain[-1])
        alice.decrypt(bob.encrypt(b"ack"))  # a DH step on both sides
        chains.append(chain)
    assert bob.stored_skipped_keys == MAX_STORED_SKIPPED
    with pytest.raises(CryptoError):
        bob.decrypt(chains[0][0])  # evicted
    assert bob.decrypt(chains[1][0]) == b"0"
    assert bob.decrypt(chains[2][999]) == b"999"


# --- persistence ---------------------------------------------------------------------------


def test_state_round_trips_mid_conversation():
    alice, bob = establish()
    late = alice.encrypt(b"late")
    bob.decrypt(alice.encrypt(b"now"))
    restored = Session.from_bytes(bob.to_bytes())
    assert restored.to_bytes() == bob.to_bytes()
    assert restored.decrypt(late) == b"late"
    assert alice.decrypt(restored.encrypt(b"back")) == b"back"


def test_corrupt_or_unknown_state_is_refused():
    import msgspec

    alice, _ = establish()
    raw = msgspec.msgpack.decode(alice.to_bytes())
    for bad, code in [
        (b"\xc1", "invalid_state"),
        (msgspec.msgpack.encode([1, 2]), "invalid_state"),
        (msgspec.msgpack.encode({**raw, "version": 99}), "unsupported_version"),
        (msgspec.msgpack.encode({**raw, "version": 0}), "unsupported_version"),
        (msgspec.msgpack.encode({**raw, "rk": b"short"}), "invalid_state"),
        (msgspec.msgpack.encode({**raw, "extra": 1}), "invalid_state"),
    ]:
        with pytest.raises(CryptoError) as err:
            Session.from_bytes(bad)
        assert err.value.code == code


def test_migration_hook_upgrades_old_state():
    import msgspec

    from protocol.crypto.ratchet import SessionState, migrate_state

    alice, bob = establish()
    late = alice.encrypt(b"late")
    bob.decrypt(alice.encrypt(b"now"))
    current = msgspec.msgpack.decode(bob.to_bytes())
    # A hypothetical version 0 that called the skipped keys "mkskipped".
    v0 = {k: v for k, v in current.items() if k != "skipped"}
    v0.update(version=0, mkskipped=current["skipped"])

    def v0_to_v1(raw):
        raw = dict(raw)
        raw["skipped"] = raw.pop("mkskipped")
        raw["version"] = 1
        return raw

    migrated = migrate_state(v0, migrations={0: v0_to_v1})
    restored = Session(msgspec.convert(migrated, SessionState))
    assert restored.decrypt(late) == b"late"
    with pytest.raises(CryptoError) as err:
        migrate_state(v0, migrations={0: lambda raw: raw})  # forgot to bump the version
    assert err.value.code == "invalid_state"


# --- simultaneous initiation ---------------------------------------------------------------


def test_simultaneous_initiation_tie_break_is_symmetric():
    assert initiation_winner("alice", "bob") == initiation_winner("bob", "alice") == "alice"
    assert keep_own_session("alice", "bob")
    assert not keep_own_session("bob", "alice")
    with pytest.raises(ValueError):
        initiation_winner("alice", "alice")


def test_simultaneous_initiation_converges_on_the_winners_session():
    from protocol.crypto.x3dh import initiate, respond
    from tests.protocol.crypto.support import Party

    alice, bob = Party.make("alice"), Party.make("bob")
    # Both start at once: each initiates X3DH against the other's bundle and sends.
    a_started = initiate(alice.identity, "alice", "bob", bob.bundle(), "e2ee")
    b_started = initiate(bob.identity, "bob", "alice", alice.bundle(), "e2ee")
    a_own = Session.initiator(
        a_started.agreement.shared_key, a_started.agreement.associated_data,
        a_started.peer_ratchet_key,
    )  # fmt: skip
    b_own = Session.initiator(
        b_started.agreement.shared_key, b_started.agreement.associated_data,
        b_started.peer_ratchet_key,
    )  # fmt: skip
    from_alice, from_bob = a_own.encrypt(b"hi bob"), b_own.encrypt(b"hi alice")
    # Each side applies the same rule on receiving the other's initial message.
    assert keep_own_session("alice", "bob")  # alice keeps hers, ignores bob's initial
    assert not keep_own_session("bob", "alice")  # bob drops his own and responds
    agreed = respond(bob.identity, "bob", "alice", a_started.header, bob.spk, bob.opk, "e2ee")
    b_session = Session.responder(agreed.shared_key, agreed.associated_data, bob.spk)
    assert b_session.decrypt(from_alice) == b"hi bob"
    # Bob re-sends what he had sent on his losing session, on the winning one.
    assert a_own.decrypt(b_session.encrypt(b"hi alice")) == b"hi alice"
    with pytest.raises(CryptoError):
        a_own.decrypt(from_bob)  # the losing session's message never opens here
