"""Franking with an `e2ee` attachment (protocol/crypto/franking.py, PROTOCOL.md §6.4.5, §6.6):
the attachment's key rides in the franked plaintext and the file's SHA-256 in the commitment,
so a verified report proves which file a message carried — and a message without one is
franked byte for byte as before (the pinned values below were computed before the change)."""

from __future__ import annotations

import hashlib
import hmac
import struct

import msgspec
import pytest

from protocol.crypto.attachment import (
    AttachmentKey,
    FileDecryptor,
    encrypt_chunks,
    new_file_key,
    verify_digest,
)
from protocol.crypto.errors import CryptoError
from protocol.crypto.franking import (
    ATTACHMENT_COMMITMENT_CONTEXT,
    COMMITMENT_CONTEXT,
    FrankedPlaintext,
    commitment,
    frank,
    relay_tag,
    unfrank,
    verify_report,
)
from tests.protocol.crypto.support import deterministic_random, establish

FK = bytes(range(32))
FILE = b"a holiday photo, in bytes" * 1000
DIGEST = hashlib.sha256(FILE).digest()
RELAY_SECRET = b"\x42" * 32
WHEN = 1_767_225_600_000

# frank(text, mode, random=FK) before the attachment field existed: (plaintext, commitment).
BEFORE = {
    ("hi", "e2ee"): (
        "82a474657874a26869ac6672616e6b696e675f6b6579c420"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "4ab16cbf513fe0589a0755fab86ea5ab4e9ccd02dfb1f1f43d4cc2e99667624f",
    ),
    ("héllo 👋", "e2ee"): (
        "82a474657874ab68c3a96c6c6f20f09f918bac6672616e6b696e675f6b6579c420"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "b2537427776daeba54c53e49d843b7489bd06e7fc1d4ed1ae1d20f44c2508df3",
    ),
    ("", "visible"): (
        "82a474657874a0ac6672616e6b696e675f6b6579c420"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "2eb3e325c5db61400cd50c7d9f623c8e1fc5ec2b1007af8799d74436989d1b2e",
    ),
}


def lp(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def attachment(**changes) -> AttachmentKey:
    fields = dict(key=bytes(range(100, 132)), sha256=DIGEST, name="photo.jpg", type="image/jpeg")
    fields.update(changes)
    return AttachmentKey(size=len(FILE), **fields)


def fixed(n: int) -> bytes:
    return FK[:n]


# --- nothing changes without an attachment -----------------------------------------------


@pytest.mark.parametrize(("text", "mode"), sorted(BEFORE))
def test_without_an_attachment_every_byte_is_as_before(text, mode):
    plaintext, c = BEFORE[text, mode]
    franked = frank(text, mode, random=fixed)
    assert franked.plaintext.hex() == plaintext
    assert franked.commitment.hex() == c
    assert commitment(FK, text, mode).hex() == c
    assert commitment(FK, text, mode, None).hex() == c
    assert msgspec.msgpack.encode(FrankedPlaintext(text=text, franking_key=FK)).hex() == plaintext
    inner = unfrank(bytes.fromhex(plaintext), bytes.fromhex(c), mode)
    assert (inner.text, inner.franking_key, inner.attachment) == (text, FK, None)


def test_the_plain_commitment_is_the_v1_input():
    expected = hmac.digest(FK, lp(COMMITMENT_CONTEXT, b"e2ee") + b"hi", hashlib.sha256)
    assert commitment(FK, "hi", "e2ee") == expected


# --- with an attachment ------------------------------------------------------------------


def test_the_attachment_commitment_is_the_documented_input():
    expected = hmac.digest(
        FK, lp(ATTACHMENT_COMMITMENT_CONTEXT, b"e2ee", DIGEST) + b"look", hashlib.sha256
    )
    assert commitment(FK, "look", "e2ee", DIGEST) == expected
    assert frank("look", "e2ee", attachment=attachment(), random=fixed).commitment == expected


def test_the_attachment_changes_the_commitment():
    plain = commitment(FK, "look", "e2ee")
    with_file = commitment(FK, "look", "e2ee", DIGEST)
    other_file = commitment(FK, "look", "e2ee", hashlib.sha256(b"another file").digest())
    assert len({plain, with_file, other_file}) == 3


def test_a_plain_text_can_not_imitate_an_attachment_commitment():
    """The text is the unprefixed tail: under the v1 context, a plain message whose text began
    with LP("attachment") ‖ LP(digest) would collide with an attachment message whenever the
    digest is valid UTF-8 (groundable). The separate context rules that out."""
    digest = b"a" * 32  # stands for a digest ground until it is ASCII
    naive_tail = lp(b"attachment", digest)
    naive = hmac.digest(FK, lp(COMMITMENT_CONTEXT, b"e2ee") + naive_tail + b"hi", hashlib.sha256)
    impostor = naive_tail.decode() + "hi"  # a valid str: NUL, newline, "attachment", ...
    assert commitment(FK, impostor, "e2ee") == naive  # what the naive framing would allow
    assert commitment(FK, "hi", "e2ee", digest) != commitment(FK, impostor, "e2ee")


def test_the_franked_plaintext_carries_the_attachment_key():
    key = attachment()
    franked = frank("look", "e2ee", attachment=key, random=fixed)
    assert franked.plaintext.startswith(
        b"\x83\xa4text\xa4look\xacfranking_key\xc4\x20" + FK + b"\xaaattachment\x85\xa3key\xc4\x20"
    )
    inner = unfrank(franked.plaintext, franked.commitment, "e2ee")
    assert inner.attachment == key
    assert inner.text == "look"


def test_a_different_digest_fails_unfrank():
    franked = frank("look", "e2ee", attachment=attachment(), random=fixed)
    inner = msgspec.msgpack.decode(franked.plaintext, type=FrankedPlaintext)
    other = hashlib.sha256(b"another file").digest()
    swapped = msgspec.structs.replace(
        inner, attachment=msgspec.structs.replace(inner.attachment, sha256=other)
    )
    with pytest.raises(CryptoError) as caught:
        unfrank(msgspec.msgpack.encode(swapped), franked.commitment, "e2ee")
    assert caught.value.code == "franking_mismatch"


def test_removing_or_adding_the_attachment_fails_unfrank():
    franked = frank("look", "e2ee", attachment=attachment(), random=fixed)
    stripped = msgspec.msgpack.encode(FrankedPlaintext(text="look", franking_key=FK))
    with pytest.raises(CryptoError) as caught:
        unfrank(stripped, franked.commitment, "e2ee")
    assert caught.value.code == "franking_mismatch"
    plain = frank("look", "e2ee", random=fixed)
    added = msgspec.msgpack.encode(
        FrankedPlaintext(text="look", franking_key=FK, attachment=attachment())
    )
    with pytest.raises(CryptoError) as caught:
        unfrank(added, plain.commitment, "e2ee")
    assert caught.value.code == "franking_mismatch"


def test_only_the_digest_is_committed():
    """The key, name, type and size are not in the commitment: the digest pins the file, and a
    recipient checks the decrypted file against it (verify_digest) before trusting anything."""
    franked = frank("look", "e2ee", attachment=attachment(), random=fixed)
    renamed = msgspec.msgpack.encode(
        FrankedPlaintext(text="look", franking_key=FK, attachment=attachment(name="x.png"))
    )
    assert unfrank(renamed, franked.commitment, "e2ee").attachment.name == "x.png"


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "../../etc/passwd"},
        {"name": "a\x1bb"},
        {"type": "image"},
    ],
)
def test_an_invalid_attachment_key_is_undecryptable(bad):
    franked = frank("look", "e2ee", attachment=attachment(), random=fixed)
    raw = msgspec.msgpack.decode(franked.plaintext)
    raw["attachment"].update(bad)
    with pytest.raises(CryptoError) as caught:
        unfrank(msgspec.msgpack.encode(raw), franked.commitment, "e2ee")
    assert caught.value.code == "invalid_plaintext"


def test_a_digest_of_the_wrong_size_is_refused():
    with pytest.raises(CryptoError) as caught:
        commitment(FK, "look", "e2ee", DIGEST[:31])
    assert caught.value.code == "invalid_key"


# --- reports -----------------------------------------------------------------------------


def _report(inner, c, tag, **changes):
    fields = dict(
        text=inner.text, franking_key=inner.franking_key, reported_commitment=c,
        reported_tag=tag, sender="alice", recipient="bob", timestamp=WHEN, mode="e2ee",
        attachment_digest=inner.attachment.sha256 if inner.attachment else None,
    )  # fmt: skip
    fields.update(changes)
    return verify_report(RELAY_SECRET, **fields)


def test_a_file_travels_end_to_end_and_its_report_names_it():
    """Alice encrypts a file, uploads only ciphertext, franks the key into the message; Bob
    decrypts the message, the blob and checks the digest; his report proves which file."""
    alice, bob = establish()
    file_key = new_file_key(random=deterministic_random(b"file key"))
    blob = b"".join(encrypt_chunks(file_key, [FILE[i : i + 999] for i in range(0, len(FILE), 999)]))
    assert FILE not in blob
    key = AttachmentKey(
        key=file_key, sha256=DIGEST, name="photo.jpg", type="image/jpeg", size=len(FILE)
    )
    franked = frank("look", "e2ee", attachment=key, random=deterministic_random(b"fk"))
    wire = alice.encrypt(franked.plaintext)
    tag = relay_tag(RELAY_SECRET, franked.commitment, "alice", "bob", WHEN)

    inner = unfrank(bob.decrypt(wire), franked.commitment, "e2ee")
    assert inner.attachment is not None
    decryptor = FileDecryptor(inner.attachment.key)
    received = decryptor.feed(blob) + decryptor.finish()
    verify_digest(inner.attachment.sha256, hashlib.sha256(received).digest())
    assert received == FILE and len(received) == inner.attachment.size

    assert _report(inner, franked.commitment, tag)
    assert not _report(inner, franked.commitment, tag, attachment_digest=None)
    assert not _report(inner, franked.commitment, tag, attachment_digest=bytes(32))
    assert not _report(inner, franked.commitment, tag, attachment_digest=DIGEST[:31])
    assert not _report(inner, franked.commitment, tag, text="look!")


def test_a_plain_report_is_unchanged():
    franked = frank("hi", "e2ee", random=fixed)
    inner = unfrank(franked.plaintext, franked.commitment, "e2ee")
    tag = relay_tag(RELAY_SECRET, franked.commitment, "alice", "bob", WHEN)
    assert _report(inner, franked.commitment, tag)
    assert not _report(inner, franked.commitment, tag, attachment_digest=DIGEST)


def test_the_worked_example_of_the_protocol_draft():
    """The §6.6 draft's franking example: text "a file", fk = 0x20..0x3f, the vector file's key."""
    vector = b"agechat attachment vector: one short file, one final chunk.\n"
    key = AttachmentKey(
        key=bytes(range(32)),
        sha256=hashlib.sha256(vector).digest(),
        name="vector.txt",
        type="text/plain",
        size=len(vector),
    )
    fk = bytes(range(32, 64))
    franked = frank("a file", "e2ee", attachment=key, random=lambda n: fk[:n])
    assert franked.plaintext.hex() == (
        "83a474657874a6612066696c65ac6672616e6b696e675f6b6579c420"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "aa6174746163686d656e7485a36b6579c420"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "a6736861323536c420ec8892c6d404b83ce0d58f78f084f06d4160931460489cf53ce3f4c960384ae0"
        "a46e616d65aa766563746f722e747874a474797065aa746578742f706c61696ea473697a653c"
    )
    assert franked.commitment.hex() == (
        "3ba00aa30396f34ab127c166baf5185a1cd13911e8605ae16b9354f7f3cc8b79"
    )
