"""The client's E2EE layer (client.e2ee) with its real sealed store, two parties in-process.

The relay is not needed to test how sessions start, converge and persist: bundles are
built from each party's own published prekeys, exactly as the relay would hand them out.
End-to-end runs against a real relay are in tests/e2e/test_e2ee.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import nacl.signing
import pytest

from client.crypto_store import CryptoStore
from client.declaration import sign_declaration
from client.e2ee import EndToEnd
from client.errors import ClientError
from protocol.crypto import CryptoError, IdentityKeyPair, initiation_winner
from protocol.e2ee import decode_body
from protocol.frames import Bundle, OneTimePrekey, SignedPrekey

ADULT = date(1990, 1, 1)
TEEN = date(2011, 1, 1)


def now() -> datetime:
    return datetime.now(UTC)


async def keep(_decrypted) -> None:
    """Where the client stores the plaintext before the session is saved (nothing here)."""


@dataclass
class Party:
    handle: str
    seed: bytes
    birthdate: date
    e2ee: EndToEnd
    signed: SignedPrekey
    one_time: list[OneTimePrekey]
    key_changes: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def store(self) -> CryptoStore:
        return self.e2ee.store

    def bundle(self, *, with_one_time: bool = True, mode: str = "e2ee") -> Bundle:
        signing = nacl.signing.SigningKey(self.seed)
        opk = self.one_time.pop(0) if with_one_time and self.one_time else None
        return Bundle(
            rid="rid-00000001",
            handle=self.handle,
            mode=mode,  # type: ignore[arg-type]
            identity_key=bytes(signing.verify_key),
            declaration=sign_declaration(signing, self.handle, self.birthdate, now()),
            signed_prekey=self.signed,
            one_time_prekey=opk,
        )


async def make_party(
    tmp: Path,
    handle: str,
    birthdate: date = ADULT,
    seed: bytes | None = None,
    clock=now,
) -> Party:
    seed = seed or os.urandom(32)
    store = CryptoStore(tmp / handle / f"e2ee-{seed[:4].hex()}.sqlite3", seed)
    await store.open()
    changes: list[tuple[str, bool]] = []

    async def on_change(peer: str, was_verified: bool) -> None:
        changes.append((peer, was_verified))

    from protocol.policy import band

    e2ee = EndToEnd(
        store,
        IdentityKeyPair.from_seed(seed),
        handle,
        own_band=lambda: band(birthdate, now().date()),
        clock=clock,
        on_key_change=on_change,
    )
    signed, one_time = await e2ee.prekeys_due()
    assert signed is not None and len(one_time) == 50
    await e2ee.mark_published(signed, True)
    return Party(handle, seed, birthdate, e2ee, signed, one_time, changes)


async def send(sender: Party, recipient: Party, text: str, *, bundle: bool = False) -> tuple:
    if bundle or not await sender.e2ee.has_session(recipient.handle):
        b = recipient.bundle()
        await sender.e2ee.learn_bundle(recipient.handle, b)
    else:
        b = None
    out = await sender.e2ee.encrypt(recipient.handle, text, b)
    return out.body, out.commitment


async def receive(recipient: Party, sender: Party, message: tuple) -> str:
    decrypted = await recipient.e2ee.decrypt(sender.handle, message[0], message[1], keep)
    return decrypted.text


@pytest.fixture
async def pair(tmp_path: Path):
    alice = await make_party(tmp_path, "alice")
    bob = await make_party(tmp_path, "bob")
    yield alice, bob
    await alice.store.close()
    await bob.store.close()


async def test_first_messages_carry_the_initial_header_until_the_reply(pair):
    alice, bob = pair
    first = await send(alice, bob, "one")
    second = await send(alice, bob, "two")
    h1, h2 = decode_body(first[0]).initial, decode_body(second[0]).initial
    assert h1 is not None and h1 == h2  # the same X3DH start on every message until a reply
    used_opk = h1.opk_id
    assert used_opk is not None
    # Out of order: the second arrives first and still starts the session.
    assert await receive(bob, alice, second) == "two"
    assert await receive(bob, alice, first) == "one"
    # X3DH §3.4: the one-time prekey's private half is gone once used.
    assert await bob.store.prekey("one_time", used_opk) is None
    reply = await send(bob, alice, "reply")
    assert decode_body(reply[0]).initial is None
    assert await receive(alice, bob, reply) == "reply"
    third = await send(alice, bob, "three")
    assert decode_body(third[0]).initial is None  # the reply ended the initial phase
    assert await receive(bob, alice, third) == "three"


async def test_without_one_time_prekeys_x3dh_uses_the_signed_prekey_alone(pair):
    alice, bob = pair
    bob.one_time.clear()
    await alice.e2ee.learn_bundle("bob", bob.bundle(with_one_time=False))
    out = await alice.e2ee.encrypt("bob", "no opk", bob.bundle(with_one_time=False))
    header = decode_body(out.body).initial
    assert header is not None and header.opk_id is None
    assert (await bob.e2ee.decrypt("alice", out.body, out.commitment, keep)).text == "no opk"


async def test_simultaneous_starts_converge_on_the_winners_session(pair):
    alice, bob = pair
    # Both start before either hears from the other.
    a1 = await send(alice, bob, "hi from alice")
    b1 = await send(bob, alice, "hi from bob")
    assert decode_body(a1[0]).initial is not None and decode_body(b1[0]).initial is not None
    assert await receive(bob, alice, a1) == "hi from alice"
    assert await receive(alice, bob, b1) == "hi from bob"
    winner = initiation_winner("alice", "bob")
    assert winner == "alice"
    # Everything afterwards decrypts, and both now send on alice's session.
    for i in range(3):
        a = await send(alice, bob, f"a{i}")
        b = await send(bob, alice, f"b{i}")
        assert await receive(bob, alice, a) == f"a{i}"
        assert await receive(alice, bob, b) == f"b{i}"
    bob_active = [s for s in await bob.store.sessions("alice") if s.active]
    alice_active = [s for s in await alice.store.sessions("bob") if s.active]
    assert len(bob_active) == len(alice_active) == 1
    assert bob_active[0].their_ephemeral is not None  # bob answers alice's session
    assert alice_active[0].their_ephemeral is None  # alice kept the one she started
    last = await send(alice, bob, "settled")
    assert decode_body(last[0]).initial is None


async def test_tampered_commitment_and_replays_are_refused(pair):
    alice, bob = pair
    body, commitment = await send(alice, bob, "hello")
    forged = bytes([commitment[0] ^ 1]) + commitment[1:]
    with pytest.raises(CryptoError) as caught:
        await bob.e2ee.decrypt("alice", body, forged, keep)
    assert caught.value.code == "franking_mismatch"
    body2, commitment2 = await send(alice, bob, "again")
    assert await receive(bob, alice, (body2, commitment2)) == "again"
    with pytest.raises(CryptoError) as caught:
        await bob.e2ee.decrypt("alice", body2, commitment2, keep)
    assert caught.value.code == "duplicate_message"


async def test_safety_numbers_match_on_both_sides(pair):
    alice, bob = pair
    message = await send(alice, bob, "hi")
    await receive(bob, alice, message)
    mine = await alice.e2ee.safety_number("bob")
    theirs = await bob.e2ee.safety_number("alice")
    assert mine.number == theirs.number
    assert len(mine.number.replace(" ", "")) == 60 and len(mine.number.split()) == 12
    assert not mine.verified
    assert (await alice.e2ee.verify("bob")).verified


async def test_a_changed_key_warns_and_stops_sending_to_a_verified_peer(tmp_path, pair):
    alice, bob = pair
    await receive(bob, alice, await send(alice, bob, "hi"))
    await alice.e2ee.verify("bob")
    # Bob's key is replaced (a new device, or a relay swapping keys: alice can't tell).
    new_bob = await make_party(tmp_path, "bob")
    await alice.e2ee.learn_bundle("bob", new_bob.bundle())
    assert alice.key_changes == [("bob", True)]
    record = await alice.e2ee.peer("bob")
    assert record is not None and record.key_changed and record.send_blocked
    assert not record.verified
    with pytest.raises(ClientError) as caught:
        await alice.e2ee.encrypt("bob", "still there?", new_bob.bundle())
    assert caught.value.code == "safety_number_changed"
    # The warning is sticky: learning the same new key again doesn't clear it.
    await alice.e2ee.learn_bundle("bob", new_bob.bundle())
    assert (await alice.e2ee.peer("bob")).send_blocked  # type: ignore[union-attr]
    accepted = await alice.e2ee.accept_key("bob")
    assert not accepted.key_changed and not accepted.verified
    out = await alice.e2ee.encrypt("bob", "new session", new_bob.bundle())
    assert (
        await new_bob.e2ee.decrypt("alice", out.body, out.commitment, keep)
    ).text == "new session"
    await new_bob.store.close()


async def test_a_changed_key_in_an_initial_message_warns_an_unverified_peer(tmp_path, pair):
    alice, bob = pair
    await receive(bob, alice, await send(alice, bob, "hi"))
    impostor = await make_party(tmp_path, "alice")  # same handle, another key
    message = await send(impostor, bob, "it's me, new phone")
    assert await receive(bob, impostor, message) == "it's me, new phone"
    assert bob.key_changes == [("alice", False)]
    record = await bob.e2ee.peer("alice")
    assert record is not None and record.key_changed and not record.send_blocked
    await impostor.store.close()


async def test_only_a_minor_declaration_permits_the_clear(tmp_path, pair):
    alice, bob = pair
    teen = await make_party(tmp_path, "teen", TEEN)
    await alice.e2ee.learn_bundle("bob", bob.bundle(mode="visible"))
    with pytest.raises(ClientError) as caught:
        alice.e2ee.check_visible(await alice.e2ee.peer("bob"))
    assert caught.value.code == "downgrade_refused"
    with pytest.raises(ClientError):
        alice.e2ee.check_visible(None)  # no declaration at all: fail closed
    await alice.e2ee.learn_bundle("teen", teen.bundle(mode="visible"))
    alice.e2ee.check_visible(await alice.e2ee.peer("teen"))  # their own declaration: minor
    teen.e2ee.check_visible(None)  # a minor's own client may always send in the clear
    await teen.store.close()


async def test_a_declaration_signed_by_another_key_counts_for_nothing(pair):
    alice, bob = pair
    genuine = bob.bundle(mode="visible")
    other = nacl.signing.SigningKey.generate()
    fake = sign_declaration(other, "bob", TEEN, now())
    rigged = Bundle(
        rid=genuine.rid,
        handle="bob",
        mode="visible",
        identity_key=genuine.identity_key,
        declaration=fake,
        signed_prekey=genuine.signed_prekey,
    )
    record = await alice.e2ee.learn_bundle("bob", rigged)
    assert record.declared_band is None
    with pytest.raises(ClientError):
        alice.e2ee.check_visible(record)


async def test_sessions_and_prekeys_are_sealed_at_rest_and_survive_a_restart(tmp_path, pair):
    alice, bob = pair
    unused = bob.one_time[-1].id
    opk = await bob.store.prekey("one_time", unused)
    spk = await bob.store.current_signed_prekey()
    assert opk is not None and spk is not None
    await receive(bob, alice, await send(alice, bob, "before restart"))
    files = list((tmp_path / "bob").iterdir())
    raw = b"".join(p.read_bytes() for p in files)
    assert spk.private not in raw and opk.private not in raw
    # Restart bob: a new store object over the same file, unlocked by the same seed.
    path = next(p for p in files if p.suffix == ".sqlite3")
    await bob.store.close()
    reopened = CryptoStore(path, bob.seed)
    await reopened.open()
    bob.e2ee.store = reopened
    assert await receive(bob, alice, await send(alice, bob, "after restart")) == "after restart"
    # Another seed cannot open the sealed rows.
    stranger = CryptoStore(path, os.urandom(32))
    await stranger.open()
    with pytest.raises(ClientError) as caught:
        await stranger.sessions("alice")
    assert caught.value.code == "profile_corrupt"
    await stranger.close()


async def test_signed_prekeys_rotate_and_the_old_one_answers_for_a_grace_period(tmp_path):
    from datetime import timedelta

    from client.e2ee import SIGNED_PREKEY_GRACE, SIGNED_PREKEY_ROTATION

    offset = [timedelta(0)]
    alice = await make_party(tmp_path, "alice")
    bob = await make_party(tmp_path, "bob", clock=lambda: now() + offset[0])
    old_bundle = bob.bundle()  # fetched by alice before the rotation, used after it
    assert await bob.e2ee.prekeys_due() == (None, [])  # nothing due yet
    offset[0] = SIGNED_PREKEY_ROTATION + timedelta(hours=1)
    signed, _ = await bob.e2ee.prekeys_due()
    assert signed is not None and signed.id != old_bundle.signed_prekey.id
    await bob.e2ee.mark_published(signed, False)
    # A first message made with the old signed prekey still starts a session.
    await alice.e2ee.learn_bundle("bob", old_bundle)
    late = await alice.e2ee.encrypt("bob", "late hello", old_bundle)
    assert (await bob.e2ee.decrypt("alice", late.body, late.commitment, keep)).text == "late hello"
    # After the grace period the old private key is gone.
    offset[0] += SIGNED_PREKEY_GRACE + timedelta(hours=1)
    await bob.e2ee.prekeys_due()
    assert await bob.store.prekey("signed", old_bundle.signed_prekey.id) is None
    assert await bob.store.prekey("signed", signed.id) is not None
    await alice.store.close()
    await bob.store.close()


# --- what a malicious relay or peer might try (found in review) -----------------------------


async def test_a_swapped_key_with_its_own_minor_declaration_cannot_downgrade(tmp_path, pair):
    alice, bob = pair
    await alice.e2ee.learn_bundle("bob", bob.bundle())
    await alice.e2ee.verify("bob")
    # The relay swaps in a key it controls and signs "bob is 16" with it.
    fake = await make_party(tmp_path, "bob", TEEN)
    record = await alice.e2ee.learn_bundle("bob", fake.bundle(mode="visible"))
    assert record.key_changed and record.send_blocked
    assert not alice.e2ee.may_be_visible(record)
    # Unverified peers too: a declaration from a key that just changed counts for nothing.
    carol = await make_party(tmp_path, "carol")
    await alice.e2ee.learn_bundle("carol", carol.bundle())
    fake_carol = await make_party(tmp_path, "carol", TEEN)
    record = await alice.e2ee.learn_bundle("carol", fake_carol.bundle(mode="visible"))
    assert record.key_changed and not record.send_blocked
    assert not alice.e2ee.may_be_visible(record)
    for p in (fake, carol, fake_carol):
        await p.store.close()


async def test_an_old_minor_declaration_no_longer_permits_the_clear(tmp_path, pair):
    from datetime import timedelta

    from client.e2ee import MINOR_DECLARATION_MAX_AGE

    alice, _ = pair
    teen = await make_party(tmp_path, "teen", TEEN)
    bundle = teen.bundle(mode="visible")
    signing = nacl.signing.SigningKey(teen.seed)
    old = sign_declaration(signing, "teen", TEEN, now() - MINOR_DECLARATION_MAX_AGE - timedelta(1))
    stale = Bundle(
        **{**{f: getattr(bundle, f) for f in bundle.__struct_fields__}, "declaration": old}
    )
    assert not alice.e2ee.may_be_visible(await alice.e2ee.learn_bundle("teen", stale))
    assert alice.e2ee.may_be_visible(await alice.e2ee.learn_bundle("teen", bundle))
    await teen.store.close()


async def test_an_unauthenticated_first_message_changes_nothing(pair):
    from protocol.e2ee import Envelope, encode_body

    alice, bob = pair
    await receive(bob, alice, await send(alice, bob, "hi"))
    await alice.e2ee.verify("bob")
    await bob.e2ee.verify("alice")
    before = await bob.e2ee.peer("alice")
    sessions_before = await bob.store.sessions("alice")
    header = decode_body((await send(alice, bob, "again"))[0]).initial  # a real header...
    garbage = Envelope(os.urandom(120), type(header)(os.urandom(32), os.urandom(32), 1, None))
    with pytest.raises(CryptoError):
        await bob.e2ee.decrypt("alice", encode_body(garbage), os.urandom(32), keep)
    assert await bob.e2ee.peer("alice") == before  # no key pinned, no warning, still verified
    assert bob.key_changes == []
    assert len(await bob.store.sessions("alice")) == len(sessions_before)


async def test_concurrent_top_ups_never_reuse_a_one_time_prekey_id(pair):
    import asyncio

    alice, _ = pair
    batches = await asyncio.gather(*(alice.e2ee.new_one_time_prekeys(50) for _ in range(3)))
    ids = [k.id for batch in batches for k in batch]
    assert len(ids) == len(set(ids)) == 150


async def test_a_crash_before_the_plaintext_is_stored_loses_nothing(pair):
    alice, bob = pair
    message = await send(alice, bob, "don't lose me")

    async def crash(_decrypted) -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        await bob.e2ee.decrypt("alice", message[0], message[1], crash)
    # The relay redelivers: the session wasn't advanced, so it decrypts again.
    assert await receive(bob, alice, message) == "don't lose me"


async def test_a_replayed_first_message_cannot_start_a_second_session(pair):
    alice, bob = pair
    bob.one_time.clear()  # no one-time prekey: only the replay record stops a replay
    await alice.e2ee.learn_bundle("bob", bob.bundle(with_one_time=False))
    first = await alice.e2ee.encrypt("bob", "transfer 100", bob.bundle(with_one_time=False))
    assert (await bob.e2ee.decrypt("alice", first.body, first.commitment, keep)).text
    await bob.store.delete_sessions("alice")  # evicted, or lost
    with pytest.raises(CryptoError) as caught:
        await bob.e2ee.decrypt("alice", first.body, first.commitment, keep)
    assert caught.value.code == "duplicate_message"


async def test_verify_refuses_when_the_number_shown_is_no_longer_current(tmp_path, pair):
    alice, bob = pair
    await alice.e2ee.learn_bundle("bob", bob.bundle())
    shown = (await alice.e2ee.safety_number("bob")).number
    new_bob = await make_party(tmp_path, "bob")
    await alice.e2ee.learn_bundle("bob", new_bob.bundle())  # the key changes meanwhile
    with pytest.raises(ClientError) as caught:
        await alice.e2ee.verify("bob", shown)
    assert caught.value.code == "safety_number_changed"
    assert not (await alice.e2ee.peer("bob")).verified  # type: ignore[union-attr]
    current = (await alice.e2ee.safety_number("bob")).number
    assert (await alice.e2ee.verify("bob", current)).verified
    await new_bob.store.close()
