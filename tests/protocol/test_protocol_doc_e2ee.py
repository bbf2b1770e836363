"""docs/PROTOCOL.md §6.4 and §8 stay true for end-to-end encrypted messages.

The worked example's encrypted messages ("An encrypted message", "A second message", "Bob
replies") are recomputed here twice from the inputs §8 documents (seeds, prekey labels,
the random streams, the times and the relay secret):

- by a small implementation written from §6.4's text alone — libsodium primitives, the
  standard library's hmac/hashlib and struct, nothing from ``protocol.crypto`` — which
  must produce every pinned hex value, the AD, SK, franking data, envelopes and frames;
- by the real code (``protocol.crypto``, ``protocol.e2ee``), which must produce the same
  bodies from the same random streams, and then decrypt as Bob (both of Alice's messages)
  and as Alice (Bob's reply).

``check_worked_example`` reads everything from the text it is given, so the last test can
alter each documented value in turn and see the check fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
import nacl.bindings
import nacl.signing
import pytest

from protocol.codec import decode_client_frame, decode_relay_frame, encode_frame
from protocol.crypto import IdentityKeyPair, Session, X25519KeyPair, respond, unfrank
from protocol.crypto import PrekeyBundle as CodePrekeyBundle
from protocol.crypto import frank as code_frank
from protocol.crypto import initiate as code_initiate
from protocol.crypto.franking import timestamp_micros
from protocol.crypto.ratchet import MAX_SKIP, MAX_STORED_SKIPPED, ROOT_KDF_INFO
from protocol.crypto.x3dh import AD_CONTEXT, X3DH_INFO
from protocol.e2ee import Envelope, decode_body, encode_body
from protocol.frames import Accepted, Bundle, Deliver, Send
from protocol.identity import declaration_message

DOC = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
RELAY_SECRET = b"\x5a" * 32
ALICE_STREAM, BOB_STREAM = "agechat example random", "agechat example bob random"

TEXT_1 = "Hi Bob, privately."
TEXT_2 = "Are you free on Saturday?"
TEXT_3 = "Yes! Saturday works."
ID_1, ID_2, ID_3 = "ZTJlZS1tZXNzYWdlLTAx", "ZTJlZS1tZXNzYWdlLTAy", "ZTJlZS1yZXBseS0wMQ"


# --- reading the document ------------------------------------------------------------------


def section(doc: str, start: str, end: str) -> str:
    return doc[doc.index(start) : doc.index(end, doc.index(start))]


def encrypted_example(doc: str) -> str:
    return doc[doc.index("**An encrypted message** (§6.4)") :]


def pinned(doc: str) -> dict[str, bytes]:
    """Every ``- `name` = `hex``` line of §8's encrypted example."""
    found = re.findall(r"^- `([^`]+)` = `([0-9a-f]+)`", encrypted_example(doc), re.M)
    values = dict(found)
    assert len(values) == len(found), "a pinned name appears twice"
    return {name: bytes.fromhex(hex_) for name, hex_ in values.items()}


def frame_lines(doc: str, prefix: str) -> list[str]:
    return [line[2:] for line in encrypted_example(doc).splitlines() if line.startswith(prefix)]


def one_frame(doc: str, prefix: str, needle: str) -> str:
    (line,) = [f for f in frame_lines(doc, prefix) if needle in f]
    return line


# --- §6.4 written out independently --------------------------------------------------------


def lp(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.digest(salt, ikm, "sha256")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out, counter = out + block, counter + 1
    return out[:length]


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def dh(private: bytes, public: bytes) -> bytes:
    out = nacl.bindings.crypto_scalarmult(private, public)
    assert out != bytes(32)
    return out


def public_of(private: bytes) -> bytes:
    return nacl.bindings.crypto_scalarmult_base(private)


def kdf_rk(rk: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    out = hkdf(rk, dh_out, b"agechat/ratchet/root/v1", 64)
    return out[:32], out[32:]


def kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """(message key, next chain key)."""
    return hmac256(ck, b"\x01"), hmac256(ck, b"\x02")


def header(ratchet_public: bytes, pn: int, n: int) -> bytes:
    return b"\x01" + ratchet_public + struct.pack(">II", pn, n)


def aead(mk: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, mk)


def msgpack_str(s: bytes) -> bytes:
    if len(s) < 32:
        return bytes([0xA0 | len(s)]) + s
    if len(s) < 256:
        return b"\xd9" + bytes([len(s)]) + s
    return b"\xda" + struct.pack(">H", len(s)) + s


def franked_plaintext(text: str, fk: bytes) -> bytes:
    """The map as §6.4.5 says the reference client writes it: text first, shortest forms."""
    return (
        b"\x82"
        + msgpack_str(b"text")
        + msgpack_str(text.encode())
        + msgpack_str(b"franking_key")
        + b"\xc4\x20"
        + fk
    )


def commitment(fk: bytes, text: str) -> bytes:
    return hmac256(fk, lp(b"agechat/franking/commitment/v1", b"e2ee") + text.encode())


def relay_tag(c: bytes, sender: str, to: str, micros: int) -> bytes:
    data = lp(
        b"agechat/franking/relay-tag/v1",
        c,
        sender.encode(),
        to.encode(),
        struct.pack(">Q", micros),
    )
    return hmac256(RELAY_SECRET, data)


def stream(label: str) -> Callable[[int], bytes]:
    """§8: the i-th request for n bytes gives the first n of SHA-256("<label> i")."""
    calls: list[int] = []

    def random(n: int) -> bytes:
        out = hashlib.sha256(f"{label} {len(calls)}".encode()).digest()[:n]
        calls.append(n)
        return out

    random.calls = calls  # type: ignore[attr-defined]
    return random


def sha(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclass
class Expected:
    """What the independent implementation derives for the worked example."""

    values: dict[str, bytes]
    ad: bytes
    sk: bytes
    bodies: dict[str, str]
    commitments: dict[str, bytes]
    sent_at: dict[str, datetime]


def derive(bundle: Bundle, sent_at: dict[str, datetime]) -> Expected:
    alice_seed, bob_seed = bytes(range(32)), bytes(range(32, 64))
    ik_a = bytes(nacl.signing.SigningKey(alice_seed).verify_key)
    ik_b = bytes(nacl.signing.SigningKey(bob_seed).verify_key)
    # §6.4.1: the X25519 forms, by libsodium and by the documented SHA-512 recipe.
    ik_a_x_private = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(alice_seed + ik_a)
    clamped = bytearray(hashlib.sha512(alice_seed).digest()[:32])
    clamped[0] &= 0b11111000
    clamped[31] &= 0b01111111
    clamped[31] |= 0b01000000
    assert bytes(clamped) == ik_a_x_private
    ik_b_x = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ik_b)
    spk_private = sha("agechat example signed prekey")
    opk_private = sha("agechat example one-time prekey")
    alice_random, bob_random = stream(ALICE_STREAM), stream(BOB_STREAM)

    spk = bundle.signed_prekey
    opk = bundle.one_time_prekey
    assert spk is not None and opk is not None
    nacl.signing.VerifyKey(bundle.identity_key).verify(b"\x05" + spk.public, spk.signature)

    v: dict[str, bytes] = {"IK_B x25519": ik_b_x}
    # §6.4.2 X3DH, as the initiator.
    ek_private = alice_random(32)
    v["EK_A"] = public_of(ek_private)
    v["DH1"] = dh(ik_a_x_private, spk.public)
    v["DH2"] = dh(ek_private, ik_b_x)
    v["DH3"] = dh(ek_private, spk.public)
    v["DH4"] = dh(ek_private, opk.public)
    ikm = b"\xff" * 32 + v["DH1"] + v["DH2"] + v["DH3"] + v["DH4"]
    sk = hkdf(bytes(32), ikm, b"agechat/x3dh/v1", 32)
    ad = lp(ik_a, ik_b, b"agechat/x3dh-ad/v1", b"alice", b"bob", b"e2ee")
    # The responder's side of the same table gives the same values.
    ik_a_x = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ik_a)
    ik_b_x_private = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(bob_seed + ik_b)
    assert dh(spk_private, ik_a_x) == v["DH1"]
    assert dh(ik_b_x_private, v["EK_A"]) == v["DH2"]
    assert dh(spk_private, v["EK_A"]) == v["DH3"]
    assert dh(opk_private, v["EK_A"]) == v["DH4"]

    # §6.4.3: the initiator's first chain, on Bob's signed prekey as his ratchet key.
    a1_private = alice_random(32)
    v["A1"] = public_of(a1_private)
    v["DH(A1, SPK_B)"] = dh(a1_private, spk.public)
    v["RK1"], v["CK(A1,0)"] = kdf_rk(sk, v["DH(A1, SPK_B)"])
    v["MK(A1,0)"], v["CK(A1,1)"] = kdf_ck(v["CK(A1,0)"])
    v["MK(A1,1)"], v["CK(A1,2)"] = kdf_ck(v["CK(A1,1)"])

    # §6.4.4: Alice's envelopes are kind 1 until a reply comes.
    initial = b"\x01\x01" + ik_a + v["EK_A"] + struct.pack(">IIB", spk.id, opk.id, 1)
    bodies, commitments = {}, {}
    for n, (msg_id, text) in enumerate(((ID_1, TEXT_1), (ID_2, TEXT_2))):
        fk = alice_random(32)
        v[f"plaintext(A1,{n})"] = franked_plaintext(text, fk)
        v[f"header(A1,{n})"] = header(v["A1"], 0, n)
        v[f"nonce(A1,{n})"] = alice_random(24)
        mk, hdr, nonce = v[f"MK(A1,{n})"], v[f"header(A1,{n})"], v[f"nonce(A1,{n})"]
        v[f"ciphertext(A1,{n})"] = aead(mk, nonce, v[f"plaintext(A1,{n})"], ad + hdr)
        message = hdr + nonce + v[f"ciphertext(A1,{n})"]
        bodies[msg_id] = base64.b64encode(initial + message).decode()
        commitments[msg_id] = commitment(fk, text)
    v["franking key (A1,1)"] = v["plaintext(A1,1)"][-32:]

    # Bob, decrypting Alice's first message: a DH ratchet step with a fresh key B1.
    rk1, ckr = kdf_rk(sk, dh(spk_private, v["A1"]))
    assert (rk1, ckr) == (v["RK1"], v["CK(A1,0)"])
    b1_private = bob_random(32)
    v["B1"] = public_of(b1_private)
    v["DH(B1, A1)"] = dh(b1_private, v["A1"])
    v["RK2"], v["CK(B1,0)"] = kdf_rk(v["RK1"], v["DH(B1, A1)"])
    v["MK(B1,0)"], v["CK(B1,1)"] = kdf_ck(v["CK(B1,0)"])
    v["franking key (B1,0)"] = bob_random(32)
    v["plaintext(B1,0)"] = franked_plaintext(TEXT_3, v["franking key (B1,0)"])
    v["header(B1,0)"] = header(v["B1"], 0, 0)
    v["nonce(B1,0)"] = bob_random(24)
    v["ciphertext(B1,0)"] = aead(
        v["MK(B1,0)"], v["nonce(B1,0)"], v["plaintext(B1,0)"], ad + v["header(B1,0)"]
    )
    reply = v["header(B1,0)"] + v["nonce(B1,0)"] + v["ciphertext(B1,0)"]
    bodies[ID_3] = base64.b64encode(b"\x01\x00" + reply).decode()  # the responder: kind 0
    commitments[ID_3] = commitment(v["franking key (B1,0)"], TEXT_3)

    # Alice, decrypting the reply: the same step from her side, then her next ratchet key.
    assert kdf_rk(v["RK1"], dh(a1_private, v["B1"])) == (v["RK2"], v["CK(B1,0)"])
    a2_private = alice_random(32)
    v["A2"] = public_of(a2_private)
    v["DH(A2, B1)"] = dh(a2_private, v["B1"])
    v["RK3"], v["CK(A2,0)"] = kdf_rk(v["RK2"], v["DH(A2, B1)"])
    v["header(A2,0)"] = header(v["A2"], 2, 0)

    assert alice_random.calls == [32, 32, 32, 24, 32, 24, 32]  # type: ignore[attr-defined]
    assert bob_random.calls == [32, 32, 24]  # type: ignore[attr-defined]
    return Expected(v, ad, sk, bodies, commitments, sent_at)


# --- the check -----------------------------------------------------------------------------


def check_worked_example(doc: str) -> None:
    example = encrypted_example(doc)
    bundle = decode_relay_frame(one_frame(doc, "← ", '"type":"bundle"'))
    assert isinstance(bundle, Bundle) and bundle.handle == "bob"
    assert bundle.signed_prekey is not None and bundle.one_time_prekey is not None
    assert (bundle.signed_prekey.id, bundle.one_time_prekey.id) == (1, 7)
    bob = IdentityKeyPair.from_seed(bytes(range(32, 64)))
    assert bundle.identity_key == bob.public
    spk = X25519KeyPair.from_private(sha("agechat example signed prekey"))
    opk = X25519KeyPair.from_private(sha("agechat example one-time prekey"))
    assert bundle.signed_prekey.public == spk.public
    assert bundle.one_time_prekey.public == opk.public
    d = bundle.declaration
    signed = declaration_message("bob", d.band, bob.public, d.declared_at)
    assert nacl.signing.SigningKey(bytes(range(32, 64))).sign(signed).signature == d.signature
    assert (d.handle, d.identity_key, d.band) == ("bob", bob.public, "adult")

    accepted = {}
    for line in frame_lines(doc, "← "):
        frame = decode_relay_frame(line)
        if isinstance(frame, Accepted):
            accepted[frame.id] = frame
    sent_at = {i: accepted[i].sent_at for i in (ID_1, ID_2, ID_3)}
    assert sent_at[ID_1] < sent_at[ID_2] < sent_at[ID_3]
    expected = derive(bundle, sent_at)

    # Every pinned value, exactly; and nothing pinned that this test doesn't derive.
    assert pinned(doc) == expected.values
    ad_hex = re.search(r"associated data \(hex, (\d+) bytes\) is\n\n```\n([0-9a-f]+)\n```", example)
    assert ad_hex is not None
    assert bytes.fromhex(ad_hex.group(2)) == expected.ad
    assert int(ad_hex.group(1)) == len(expected.ad) == 106
    sk_hex = re.search(r"shared secret SK is `([0-9a-f]+)`", example)
    assert sk_hex is not None and bytes.fromhex(sk_hex.group(1)) == expected.sk

    # Franking of the first message, as the prose gives it (base64).
    fk_1 = expected.values["plaintext(A1,0)"][-32:]
    franking = re.search(r"franking key\s+`([^`]+)`, giving the commitment `([^`]+)`", example)
    assert franking is not None
    assert base64.b64decode(franking.group(1)) == fk_1
    assert base64.b64decode(franking.group(2)) == expected.commitments[ID_1]

    # The frames: each send and deliver line, byte for byte.
    routes = {ID_1: ("alice", "bob"), ID_2: ("alice", "bob"), ID_3: ("bob", "alice")}
    for msg_id, (_sender, to) in routes.items():
        send = Send(
            id=msg_id,
            to=to,
            mode="e2ee",
            body=expected.bodies[msg_id],
            commitment=expected.commitments[msg_id],
        )
        assert encode_frame(send) in frame_lines(doc, "→ ")
        assert accepted[msg_id].conversation == "dm:alice:bob"
    for msg_id in (ID_1, ID_3):
        sender, to = routes[msg_id]
        micros = timestamp_micros(sent_at[msg_id])
        assert f"({sender}, {to}, {micros:,} µs" in example
        deliver = Deliver(
            id=msg_id,
            sender=sender,
            to=to,
            conversation="dm:alice:bob",
            mode="e2ee",
            body=expected.bodies[msg_id],
            sent_at=sent_at[msg_id],
            commitment=expected.commitments[msg_id],
            franking_tag=relay_tag(expected.commitments[msg_id], sender, to, micros),
        )
        assert encode_frame(deliver) in frame_lines(doc, "← ")
    for line in frame_lines(doc, "→ "):
        decode_client_frame(line)

    check_the_code_agrees(bundle, expected)


def check_the_code_agrees(bundle: Bundle, expected: Expected) -> None:
    """The real implementation, given the same streams, sends the same bodies, and each
    side decrypts what the other sent."""
    alice = IdentityKeyPair.from_seed(bytes(range(32)))
    bob = IdentityKeyPair.from_seed(bytes(range(32, 64)))
    spk = X25519KeyPair.from_private(sha("agechat example signed prekey"))
    opk = X25519KeyPair.from_private(sha("agechat example one-time prekey"))
    alice_random, bob_random = stream(ALICE_STREAM), stream(BOB_STREAM)
    assert bundle.signed_prekey is not None and bundle.one_time_prekey is not None
    prekeys = CodePrekeyBundle(
        bob.public, 1, spk.public, bundle.signed_prekey.signature, 7, opk.public
    )
    started = code_initiate(alice, "alice", "bob", prekeys, "e2ee", random=alice_random)
    assert (started.agreement.shared_key, started.agreement.associated_data) == (
        expected.sk,
        expected.ad,
    )
    alice_session = Session.initiator(
        started.agreement.shared_key,
        started.agreement.associated_data,
        started.peer_ratchet_key,
        random=alice_random,
    )
    for msg_id, text in ((ID_1, TEXT_1), (ID_2, TEXT_2)):
        franked = code_frank(text, "e2ee", random=alice_random)
        body = encode_body(Envelope(alice_session.encrypt(franked.plaintext), started.header))
        assert (body, franked.commitment) == (expected.bodies[msg_id], expected.commitments[msg_id])

    # Bob: X3DH from his prekeys, then both messages in order, each checked against its
    # commitment; the first one's DH step draws his ratchet key B1.
    envelope = decode_body(expected.bodies[ID_1])
    assert envelope.initial is not None
    agreement = respond(bob, "bob", "alice", envelope.initial, spk, opk, "e2ee")
    bob_session = Session.responder(
        agreement.shared_key, agreement.associated_data, spk, random=bob_random
    )
    for msg_id, text in ((ID_1, TEXT_1), (ID_2, TEXT_2)):
        envelope = decode_body(expected.bodies[msg_id])
        assert envelope.initial is not None  # kind 1 until the first reply
        inner = unfrank(bob_session.decrypt(envelope.message), expected.commitments[msg_id], "e2ee")
        assert inner.text == text
    assert bob_session.ratchet_key == expected.values["B1"]
    franked = code_frank(TEXT_3, "e2ee", random=bob_random)
    body = encode_body(Envelope(bob_session.encrypt(franked.plaintext)))
    assert (body, franked.commitment) == (expected.bodies[ID_3], expected.commitments[ID_3])
    assert msgspec.msgpack.decode(franked.plaintext)["text"] == TEXT_3

    # Alice reads the reply: a DH ratchet step, then her next ratchet key A2 and PN = 2.
    reply = decode_body(expected.bodies[ID_3])
    assert reply.initial is None
    inner = unfrank(alice_session.decrypt(reply.message), expected.commitments[ID_3], "e2ee")
    assert inner.text == TEXT_3
    state = alice_session.state()
    assert alice_session.ratchet_key == expected.values["A2"]
    assert (state.rk, state.cks, state.pn, state.ns) == (
        expected.values["RK3"],
        expected.values["CK(A2,0)"],
        2,
        0,
    )
    assert alice_random.calls == [32, 32, 32, 24, 32, 24, 32]  # type: ignore[attr-defined]
    assert bob_random.calls == [32, 32, 24]  # type: ignore[attr-defined]


# --- tests ---------------------------------------------------------------------------------


def test_the_encrypted_example_is_reproducible():
    """§8's encrypted exchange: every documented value follows from its documented inputs,
    by §6.4's text and by the code, and Bob and Alice each read what the other sent."""
    check_worked_example(DOC)


def _alterations() -> list[tuple[str, str, str]]:
    """(what, old, new): one hex digit changed in each pinned value, the AD and SK, and one
    base64 character in each encrypted frame's body."""
    example = encrypted_example(DOC)
    out = []
    for name, value in pinned(DOC).items():
        hex_ = value.hex()
        flipped = hex_[:-1] + ("0" if hex_[-1] != "0" else "1")
        out.append((name, f"`{name}` = `{hex_}`", f"`{name}` = `{flipped}`"))
    for what, pattern in (
        ("AD", r"\n([0-9a-f]{200,})\n"),
        ("SK", r"shared secret SK is `([0-9a-f]+)`"),
    ):
        match = re.search(pattern, example)
        assert match is not None
        old = match.group(1)
        out.append((what, old, old[:10] + ("0" if old[10] != "0" else "1") + old[11:]))
    for line in frame_lines(DOC, "→ ") + frame_lines(DOC, "← "):
        body = re.search(r'"body":"(AQ[^"]+)"', line)
        if body is not None:
            old = body.group(1)
            out.append((line[:40], old, old[:60] + ("A" if old[60] != "A" else "B") + old[61:]))
    return list({old: (what, old, new) for what, old, new in out}.values())


@pytest.mark.parametrize(("what", "old", "new"), _alterations(), ids=lambda x: str(x)[:24])
def test_altering_a_documented_value_fails_the_check(what, old, new):
    assert old in DOC
    altered = DOC.replace(old, new)
    assert altered != DOC
    with pytest.raises(AssertionError):
        check_worked_example(altered)


def test_section_6_4_states_the_constants_the_code_uses():
    spec = section(DOC, "### 6.4 End-to-end encrypted messages", "## 7. Error codes")
    for constant in (X3DH_INFO, AD_CONTEXT, ROOT_KDF_INFO):
        assert f'"{constant.decode()}"' in spec
    assert f"`MAX_SKIP` = {MAX_SKIP}" in spec
    assert f"at most {MAX_STORED_SKIPPED} skipped keys" in spec
    assert "32 bytes of 0xFF ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4]" in spec
    assert "HMAC(ck, 0x01), next chain key = HMAC(ck, 0x02)" in spec
    assert "0x01 (version, u8) ‖ sender's ratchet public key (32) ‖ PN (u32 BE) ‖ N (u32 BE)" in (
        spec
    )


def test_the_example_times_follow_the_contact_being_accepted():
    """The encrypted messages are sent after Bob accepted Alice (§8's earlier frames)."""
    accepted_event = next(
        decode_relay_frame(line)
        for line in (ln[2:] for ln in DOC.splitlines() if ln.startswith("← {"))
        if '"code":"contact_accepted"' in line
    )
    first = decode_relay_frame(one_frame(DOC, "← ", f'"accepted","id":"{ID_1}"'))
    assert isinstance(accepted_event, Deliver) and isinstance(first, Accepted)
    assert accepted_event.sent_at < first.sent_at
