"""docs/PROTOCOL.md stays true: its worked example is recomputed and its tables are complete."""

from __future__ import annotations

import base64
import json
import re
from datetime import date, datetime
from pathlib import Path

import nacl.signing

from protocol.codec import decode_client_frame, decode_relay_frame
from protocol.errors import WIRE_ERRORS
from protocol.frames import CLIENT_FRAME_TYPES, RELAY_FRAME_TYPES
from protocol.identity import auth_message, declaration_message, dh_key_for
from protocol.policy import band

DOC = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
KEY = nacl.signing.SigningKey(bytes(range(32)))


def frames(prefix: str) -> list[str]:
    return [line[2:] for line in DOC.splitlines() if line.startswith(prefix + " {")]


def test_every_wire_error_code_is_documented():
    missing = [code for code in WIRE_ERRORS if f"`{code}`" not in DOC]
    assert missing == []


def test_every_frame_type_is_documented():
    for frame_type in CLIENT_FRAME_TYPES | RELAY_FRAME_TYPES:
        assert f"| `{frame_type}` |" in DOC


def test_example_frames_decode():
    assert frames("→") and frames("←")
    for raw in frames("→"):
        decode_client_frame(raw)
    for raw in frames("←"):
        decode_relay_frame(raw)


def test_example_keys_and_signatures_are_reproducible():
    public = bytes(KEY.verify_key)
    assert base64.b64encode(public).decode() in DOC
    assert base64.b64encode(dh_key_for(public)).decode() in DOC

    registration = json.loads(re.search(r'^\{"handle":"alice".*$', DOC, re.M).group(0))
    decl = registration["declaration"]
    declared_at = datetime.fromisoformat(decl["declared_at"].replace("Z", "+00:00"))
    signed = declaration_message("alice", "adult", public, declared_at)
    assert signed.hex() in DOC
    assert base64.b64encode(KEY.sign(signed).signature).decode() == decl["signature"]
    assert decl["band"] == band(date.fromisoformat(registration["birthdate"]), declared_at.date())

    challenge = decode_relay_frame(frames("←")[0])
    signed = auth_message(challenge.relay_id, challenge.nonce, "alice")
    assert signed.hex() in DOC
    auth = decode_client_frame(frames("→")[0])
    assert auth.signature == KEY.sign(signed).signature


def test_the_encrypted_example_is_reproducible():
    """§8 "An encrypted message": the documented random stream and keys give the documented
    bundle, associated data, commitment, envelope and relay tag — and Bob can read it."""
    import hashlib
    from datetime import UTC

    import msgspec

    from protocol.codec import encode_frame
    from protocol.crypto import (
        IdentityKeyPair,
        PrekeyBundle,
        Session,
        X25519KeyPair,
        frank,
        initiate,
        relay_tag,
        respond,
        sign_prekey,
        unfrank,
    )
    from protocol.crypto.franking import timestamp_micros
    from protocol.e2ee import Envelope, decode_body, encode_body
    from protocol.frames import Bundle, Deliver, Send

    def sha(label: str) -> bytes:
        return hashlib.sha256(label.encode()).digest()

    calls: list[int] = []

    def random(n: int) -> bytes:
        out = sha(f"agechat example random {len(calls)}")[:n]
        calls.append(n)
        return out

    alice = IdentityKeyPair.from_seed(bytes(range(32)))
    bob = IdentityKeyPair.from_seed(bytes(range(32, 64)))
    spk = X25519KeyPair.from_private(sha("agechat example signed prekey"))
    opk = X25519KeyPair.from_private(sha("agechat example one-time prekey"))
    (bundle_line,) = [f for f in frames("←") if f.startswith('{"type":"bundle"')]
    bundle = decode_relay_frame(bundle_line)
    assert isinstance(bundle, Bundle) and bundle.signed_prekey and bundle.one_time_prekey
    assert bundle.identity_key == bob.public
    assert bundle.signed_prekey.public == spk.public
    assert bundle.signed_prekey.signature == sign_prekey(bob, spk.public)
    assert bundle.one_time_prekey.public == opk.public
    d = bundle.declaration
    signed = declaration_message("bob", d.band, bob.public, d.declared_at)
    assert nacl.signing.SigningKey(bytes(range(32, 64))).sign(signed).signature == d.signature

    prekeys = PrekeyBundle(bob.public, 1, spk.public, bundle.signed_prekey.signature, 7, opk.public)
    started = initiate(alice, "alice", "bob", prekeys, "e2ee", random=random)
    assert started.agreement.associated_data.hex() in DOC
    assert started.agreement.shared_key.hex() in DOC
    session = Session.initiator(
        started.agreement.shared_key,
        started.agreement.associated_data,
        started.peer_ratchet_key,
        random=random,
    )
    franked = frank("Hi Bob, privately.", "e2ee", random=random)
    body = encode_body(Envelope(session.encrypt(franked.plaintext), started.header))
    assert calls == [32, 32, 32, 24]
    send = Send(
        id="ZTJlZS1tZXNzYWdlLTAx", to="bob", mode="e2ee", body=body, commitment=franked.commitment
    )
    assert "→ " + encode_frame(send) in DOC
    fk = msgspec.msgpack.decode(franked.plaintext)["franking_key"]
    assert base64.b64encode(fk).decode() in DOC

    sent_at = datetime(2026, 11, 23, 15, 0, 2, 500000, tzinfo=UTC)
    tag = relay_tag(b"\x5a" * 32, franked.commitment, "alice", "bob", timestamp_micros(sent_at))
    (deliver_line,) = [f for f in frames("←") if '"mode":"e2ee"' in f and "deliver" in f]
    deliver = decode_relay_frame(deliver_line)
    assert isinstance(deliver, Deliver)
    assert (deliver.body, deliver.franking_tag, deliver.sent_at) == (body, tag, sent_at)

    # Bob's side: X3DH from his private keys, then the ratchet, then the commitment.
    envelope = decode_body(deliver.body)
    assert envelope.initial is not None
    agreement = respond(bob, "bob", "alice", envelope.initial, spk, opk, "e2ee")
    bob_session = Session.responder(agreement.shared_key, agreement.associated_data, spk)
    inner = unfrank(bob_session.decrypt(envelope.message), deliver.commitment, "e2ee")
    assert inner.text == "Hi Bob, privately."
