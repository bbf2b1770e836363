"""The `e2ee` attachment cipher (protocol/crypto/attachment.py, PROTOCOL.md §6.6): round
trips at the chunk boundaries, pieces of any size, every kind of tampering refused with
its code, flat memory, the declared size, and fixed vectors decrypted from committed
ciphertext (the secretstream header is random by design, so a vector pins decryption)."""

from __future__ import annotations

import hashlib
import itertools
import random
import tracemalloc
from collections.abc import Iterator

import msgspec
import nacl.bindings
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.crypto.attachment import (
    CHUNK_BYTES,
    CHUNK_OVERHEAD,
    MAGIC,
    PREFIX_BYTES,
    SEALED_CHUNK_BYTES,
    AttachmentKey,
    FileDecryptor,
    FileEncryptor,
    ciphertext_size,
    decrypt_chunks,
    encrypt_chunks,
    new_file_key,
    verify_digest,
)
from protocol.crypto.errors import CryptoError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SIZES = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 5]

# A committed blob (made once by encrypt_chunks; the header is random by design).
VECTOR_PLAINTEXT = b"agechat attachment vector: one short file, one final chunk.\n"
VECTOR_SHA256 = "ec8892c6d404b83ce0d58f78f084f06d4160931460489cf53ce3f4c960384ae0"
VECTOR_BLOB = bytes.fromhex(
    "616765636861742d6174742d7631"  # "agechat-att-v1"
    "9feab0c90631bbce74e9db075d37b900978ff077b85c7ebc"  # secretstream header
    "a500b529bfc4e90daaaf0758d880b8a0b0f84c990d75124a7cc8a8f95ac696c593021ce342d241feff"
    "9d3e559edc380b88a7993a30a088aea36332d0a1a272f314e20e003abfd8ef05ef957528"  # final
)
EMPTY_FILE_BLOB = bytes.fromhex(
    "616765636861742d6174742d7631"
    "8a12f6fa89aea0024e6576708b6ca5cc90ba46dcbecdb6f9"
    "a46ad1bb1c5800efbd1bf8ee6a77cf9ae1"
)
#: The multi-chunk vector's plaintext: 70,000 bytes of a fixed pattern.
PATTERN_SIZE = 70_000
PATTERN_SHA256 = "0edc19550d3f9bf4e7e8ea028ba8f9916dc29653d1eea97613bb394becf7eeb3"


def pattern(size: int) -> bytes:
    return bytes(i * 31 % 251 for i in range(size))


def encrypt(plaintext: bytes, key: bytes = KEY, piece: int = 4096) -> bytes:
    pieces = (plaintext[i : i + piece] for i in range(0, len(plaintext), piece))
    return b"".join(encrypt_chunks(key, pieces))


def decrypt(blob: bytes, key: bytes = KEY, cuts: list[int] | None = None) -> bytes:
    decryptor = FileDecryptor(key)
    bounds = [0, *(cuts or []), len(blob)]
    out = [decryptor.feed(blob[a:b]) for a, b in itertools.pairwise(bounds)]
    return b"".join(out) + decryptor.finish()


def sealed_chunks(blob: bytes) -> list[bytes]:
    """The blob's chunks as the format lays them out (full ones, then the shorter final)."""
    body = blob[PREFIX_BYTES:]
    return [body[i : i + SEALED_CHUNK_BYTES] for i in range(0, len(body), SEALED_CHUNK_BYTES)]


def refused(blob: bytes, key: bytes = KEY) -> str:
    with pytest.raises(CryptoError) as caught:
        decrypt(blob, key)
    return caught.value.code


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_the_chunk_boundaries(size):
    plaintext = pattern(size)
    blob = encrypt(plaintext)
    assert len(blob) == ciphertext_size(size)
    assert blob.startswith(MAGIC)
    assert decrypt(blob) == plaintext
    assert b"".join(decrypt_chunks(KEY, [blob])) == plaintext


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(st.sampled_from(SIZES), st.integers(0, 3 * CHUNK_BYTES + 5)),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_with_pieces_of_any_size(size, seed):
    rng = random.Random(seed)
    plaintext = rng.randbytes(size)
    # Plaintext in random pieces (some empty), ciphertext fed back in other random pieces.
    cuts_in = sorted(rng.randrange(size + 1) for _ in range(rng.randrange(8)))
    bounds = [0, *cuts_in, size]
    pieces = [plaintext[a:b] for a, b in itertools.pairwise(bounds)]
    blob = b"".join(encrypt_chunks(KEY, pieces))
    assert len(blob) == ciphertext_size(size)
    cuts_out = sorted(rng.randrange(len(blob) + 1) for _ in range(rng.randrange(12)))
    assert decrypt(blob, cuts=cuts_out) == plaintext


def test_byte_by_byte_feeding_of_the_prefix_and_a_small_file():
    blob = encrypt(b"tiny")
    assert decrypt(blob, cuts=list(range(1, len(blob)))) == b"tiny"


def test_the_incremental_api_matches_the_generator():
    plaintext = pattern(2 * CHUNK_BYTES + 10)
    encryptor = FileEncryptor(KEY)
    blob = (
        encryptor.header()
        + encryptor.update(plaintext[:CHUNK_BYTES])
        + encryptor.update(plaintext[CHUNK_BYTES : 2 * CHUNK_BYTES])
        + encryptor.final(plaintext[2 * CHUNK_BYTES :])
    )
    assert len(blob) == ciphertext_size(len(plaintext))
    assert decrypt(blob) == plaintext


def test_a_full_last_chunk_ends_with_an_empty_final_chunk():
    encryptor = FileEncryptor(KEY)
    blob = encryptor.header() + encryptor.final(pattern(CHUNK_BYTES))
    assert len(blob) == ciphertext_size(CHUNK_BYTES) == PREFIX_BYTES + SEALED_CHUNK_BYTES + 17
    assert decrypt(blob) == pattern(CHUNK_BYTES)


def test_the_encryptor_refuses_misuse():
    encryptor = FileEncryptor(KEY)
    with pytest.raises(ValueError):
        encryptor.update(b"short")
    with pytest.raises(ValueError):
        encryptor.final(bytes(CHUNK_BYTES + 1))
    encryptor.final(b"")
    with pytest.raises(ValueError):
        encryptor.final(b"")
    with pytest.raises(ValueError):
        encryptor.update(bytes(CHUNK_BYTES))


def test_two_encryptions_of_one_file_differ_and_both_decrypt():
    a, b = encrypt(b"same file"), encrypt(b"same file")
    assert a != b  # a fresh random header every time (libsodium)
    assert decrypt(a) == decrypt(b) == b"same file"


# --- sizes and keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, 14 + 24 + 17),
        (1, 14 + 24 + 18),
        (CHUNK_BYTES - 1, 14 + 24 + CHUNK_BYTES + 16),
        (CHUNK_BYTES, 14 + 24 + (CHUNK_BYTES + 17) + 17),
        (16 * 1024 * 1024, 14 + 24 + 256 * (CHUNK_BYTES + 17) + 17),
    ],
)
def test_ciphertext_size(size, expected):
    assert ciphertext_size(size) == expected


def test_ciphertext_size_refuses_a_negative_size():
    with pytest.raises(ValueError):
        ciphertext_size(-1)


def test_file_keys_are_fresh_and_injectable():
    assert len(new_file_key()) == 32
    assert new_file_key() != new_file_key()
    assert new_file_key(random=lambda n: KEY[:n]) == KEY
    with pytest.raises(CryptoError) as caught:
        new_file_key(random=lambda n: b"\x00" * (n - 1))
    assert caught.value.code == "invalid_key"


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)])
def test_keys_of_the_wrong_size_are_refused(key):
    for make in (FileEncryptor, FileDecryptor):
        with pytest.raises(CryptoError) as caught:
            make(key)
        assert caught.value.code == "invalid_key"


# --- tampering --------------------------------------------------------------------------


def test_wrong_key_is_corrupt():
    for size in (0, 100, CHUNK_BYTES + 1):
        assert refused(encrypt(pattern(size)), OTHER_KEY) == "attachment_corrupt"


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 5])
def test_dropping_the_final_chunk_is_truncated(size):
    blob = encrypt(pattern(size))
    final = sealed_chunks(blob)[-1]
    assert len(final) < SEALED_CHUNK_BYTES
    assert refused(blob[: -len(final)]) == "attachment_truncated"


@pytest.mark.parametrize("size", [1, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 5])
def test_dropping_more_chunks_is_truncated(size):
    blob = encrypt(pattern(size))
    for kept in range(len(sealed_chunks(blob))):
        cut = blob[: PREFIX_BYTES + kept * SEALED_CHUNK_BYTES]
        assert refused(cut) == "attachment_truncated"


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_cutting_anywhere_is_refused(data):
    blob = encrypt(pattern(2 * CHUNK_BYTES + 7))
    cut = data.draw(st.integers(0, len(blob) - 1))
    assert refused(blob[:cut]) in {"attachment_truncated", "attachment_corrupt"}


def test_cutting_inside_a_chunk_is_corrupt_or_truncated():
    blob = encrypt(pattern(3 * CHUNK_BYTES + 5))
    assert refused(blob[: PREFIX_BYTES + 100]) == "attachment_corrupt"  # a partial chunk
    assert refused(blob[: PREFIX_BYTES + 5]) == "attachment_truncated"  # shorter than any
    assert refused(blob[:-1]) == "attachment_corrupt"  # the final chunk loses a byte
    assert refused(blob[: PREFIX_BYTES - 1]) == "attachment_truncated"  # inside the header
    assert refused(b"") == "attachment_truncated"


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_is_corrupt(data):
    blob = bytearray(encrypt(pattern(2 * CHUNK_BYTES + 7)))
    position = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    blob[position] ^= 1 << bit
    assert refused(bytes(blob)) == "attachment_corrupt"


@pytest.mark.parametrize("region", ["magic", "header", "first chunk", "tag byte", "mac", "last"])
def test_a_flipped_byte_in_every_region_is_corrupt(region):
    blob = bytearray(encrypt(pattern(CHUNK_BYTES + 10)))
    position = {
        "magic": 0,
        "header": len(MAGIC) + 3,
        "first chunk": PREFIX_BYTES + 1000,
        "tag byte": PREFIX_BYTES,  # the encrypted tag is the chunk's first byte
        "mac": PREFIX_BYTES + SEALED_CHUNK_BYTES - 1,
        "last": len(blob) - 1,
    }[region]
    blob[position] ^= 0x01
    assert refused(bytes(blob)) == "attachment_corrupt"


def test_reordered_or_duplicated_chunks_are_corrupt():
    blob = encrypt(pattern(3 * CHUNK_BYTES + 5))
    prefix, chunks = blob[:PREFIX_BYTES], sealed_chunks(blob)
    assert [len(c) for c in chunks] == [SEALED_CHUNK_BYTES] * 3 + [5 + CHUNK_OVERHEAD]
    swapped = prefix + chunks[1] + chunks[0] + chunks[2] + chunks[3]
    assert refused(swapped) == "attachment_corrupt"
    duplicated = prefix + chunks[0] + chunks[0] + chunks[1] + chunks[2] + chunks[3]
    assert refused(duplicated) == "attachment_corrupt"
    skipped = prefix + chunks[0] + chunks[2] + chunks[3]
    assert refused(skipped) == "attachment_corrupt"


def test_chunks_from_another_blob_under_the_same_key_are_corrupt():
    a, b = encrypt(pattern(CHUNK_BYTES + 1)), encrypt(pattern(CHUNK_BYTES + 1))
    assert refused(a[:PREFIX_BYTES] + b[PREFIX_BYTES:]) == "attachment_corrupt"


@pytest.mark.parametrize("extra", [b"\x00", bytes(CHUNK_OVERHEAD), bytes(SEALED_CHUNK_BYTES)])
def test_bytes_after_the_final_chunk_are_corrupt(extra):
    for size in (0, 10, CHUNK_BYTES):
        assert refused(encrypt(pattern(size)) + extra) == "attachment_corrupt"


def test_a_second_stream_appended_is_corrupt():
    assert refused(encrypt(b"one") + encrypt(b"two")) == "attachment_corrupt"


def test_wrong_magic_is_corrupt_as_soon_as_it_is_in():
    blob = encrypt(b"file")
    decryptor = FileDecryptor(KEY)
    assert decryptor.feed(b"agechat-att-v") == b""
    with pytest.raises(CryptoError) as caught:
        decryptor.feed(b"2")
    assert caught.value.code == "attachment_corrupt"
    assert refused(b"agechat-att-v2" + blob[len(MAGIC) :]) == "attachment_corrupt"
    assert refused(b"not an attachment") == "attachment_corrupt"


def test_tags_the_format_never_writes_are_corrupt():
    """Authentic streams in another framing (a short MESSAGE chunk, a full-size FINAL chunk,
    a FINAL chunk in the middle) are refused: the format is canonical."""
    secretstream = nacl.bindings
    message = secretstream.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
    final = secretstream.crypto_secretstream_xchacha20poly1305_TAG_FINAL

    def stream(*parts: tuple[bytes, int]) -> bytes:
        state = secretstream.crypto_secretstream_xchacha20poly1305_state()
        out = MAGIC + secretstream.crypto_secretstream_xchacha20poly1305_init_push(state, KEY)
        for plaintext, tag in parts:
            out += secretstream.crypto_secretstream_xchacha20poly1305_push(
                state, plaintext, None, tag
            )
        return out

    assert decrypt(stream((b"ok", final))) == b"ok"  # the control
    assert refused(stream((b"short", message))) == "attachment_corrupt"
    assert refused(stream((pattern(CHUNK_BYTES), final))) == "attachment_corrupt"
    assert refused(stream((b"x", message), (b"y", final))) == "attachment_corrupt"


def test_a_failed_decryptor_stays_failed_and_a_finished_one_is_done():
    decryptor = FileDecryptor(OTHER_KEY)
    with pytest.raises(CryptoError):
        decryptor.feed(encrypt(pattern(CHUNK_BYTES + 1)))
    with pytest.raises(CryptoError) as caught:
        decryptor.finish()
    assert caught.value.code == "attachment_corrupt"
    decryptor = FileDecryptor(KEY)
    decryptor.feed(encrypt(b"x"))
    assert decryptor.finish() == b"x"
    with pytest.raises(ValueError):
        decryptor.feed(b"more")


def test_decrypt_chunks_raises_at_the_end_of_a_truncated_blob():
    blob = encrypt(pattern(CHUNK_BYTES + 1))
    pieces = decrypt_chunks(KEY, [blob[: PREFIX_BYTES + SEALED_CHUNK_BYTES]])
    assert next(pieces) == pattern(CHUNK_BYTES)  # released, but not yet the whole file
    with pytest.raises(CryptoError) as caught:
        next(pieces)
    assert caught.value.code == "attachment_truncated"


# --- memory -------------------------------------------------------------------------------


def test_memory_stays_flat_for_a_20_mib_file():
    size = 20 * 1024 * 1024
    piece = pattern(50_000)  # an odd size: the generator re-chunks it

    def plaintext() -> Iterator[bytes]:
        sent = 0
        while sent < size:
            chunk = piece[: size - sent]
            sent += len(chunk)
            yield chunk

    expected = hashlib.sha256()
    for chunk in plaintext():
        expected.update(chunk)
    actual = hashlib.sha256()
    blob_size = 0
    tracemalloc.start()
    try:
        decryptor = FileDecryptor(KEY)
        for sealed in encrypt_chunks(KEY, plaintext()):
            blob_size += len(sealed)
            actual.update(decryptor.feed(sealed))
        actual.update(decryptor.finish())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob_size == ciphertext_size(size)
    assert actual.digest() == expected.digest()
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"


# --- fixed vectors ------------------------------------------------------------------------


def test_the_committed_vector_decrypts():
    assert len(VECTOR_BLOB) == ciphertext_size(len(VECTOR_PLAINTEXT)) == 115
    assert decrypt(VECTOR_BLOB) == VECTOR_PLAINTEXT
    assert hashlib.sha256(VECTOR_PLAINTEXT).hexdigest() == VECTOR_SHA256
    assert refused(VECTOR_BLOB, OTHER_KEY) == "attachment_corrupt"


def test_the_committed_empty_file_decrypts():
    assert len(EMPTY_FILE_BLOB) == ciphertext_size(0) == 55
    assert decrypt(EMPTY_FILE_BLOB) == b""


def test_the_committed_vector_with_libsodium_directly():
    """The format as PROTOCOL.md §6.6 states it, read with the raw secretstream binding."""
    assert VECTOR_BLOB[: len(MAGIC)] == b"agechat-att-v1"
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
        state, VECTOR_BLOB[len(MAGIC) : PREFIX_BYTES], KEY
    )
    plaintext, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
        state, VECTOR_BLOB[PREFIX_BYTES:], None
    )
    assert (plaintext, tag) == (
        VECTOR_PLAINTEXT,
        nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL,
    )


def test_a_70000_byte_file_is_laid_out_as_the_format_says():
    """key = 0x00..0x1f, 70,000 bytes of a fixed pattern: MAGIC, a 24-byte header, one full
    TAG_MESSAGE chunk of 65,536 bytes and a TAG_FINAL chunk of the other 4,464, read with
    the raw binding (the header is random, so the ciphertext itself can't be pinned)."""
    plaintext = pattern(PATTERN_SIZE)
    assert hashlib.sha256(plaintext).hexdigest() == PATTERN_SHA256
    blob = encrypt(plaintext, piece=7_000)
    assert len(blob) == ciphertext_size(PATTERN_SIZE) == 14 + 24 + 65_553 + 4_481
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
        state, blob[len(MAGIC) : PREFIX_BYTES], KEY
    )
    first, last = sealed_chunks(blob)
    pull = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull
    assert pull(state, first, None) == (
        plaintext[:CHUNK_BYTES],
        nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
    )
    assert pull(state, last, None) == (
        plaintext[CHUNK_BYTES:],
        nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL,
    )


# --- the key in the message ---------------------------------------------------------------


def _key(**changes) -> AttachmentKey:
    fields = dict(key=KEY, sha256=bytes(32), name="photo.jpg", type="image/jpeg", size=PATTERN_SIZE)
    fields.update(changes)
    return AttachmentKey(**fields)


def test_attachment_key_round_trips_through_msgpack():
    value = _key()
    encoded = msgspec.msgpack.encode(value)
    assert msgspec.msgpack.decode(encoded, type=AttachmentKey) == value


def test_attachment_key_never_shows_the_file_key():
    assert KEY.hex() not in repr(_key())
    assert repr(KEY) not in repr(_key())


@pytest.mark.parametrize(
    "changes",
    [
        {"key": bytes(31)},
        {"sha256": bytes(33)},
        {"name": ""},
        {"name": "a/b"},
        {"name": "a\\b"},
        {"name": "line\nbreak"},
        {"name": "nul\x00"},
        {"name": "x" * 256},
        {"type": "Image/JPEG"},
        {"type": "not a type"},
        {"type": "a/" + "b" * 126},
        {"size": -1},
    ],
)
def test_invalid_attachment_keys_do_not_decode(changes):
    encoded = msgspec.msgpack.encode(msgspec.structs.replace(_key(), **changes))
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(encoded, type=AttachmentKey)


def test_unknown_fields_do_not_decode():
    encoded = msgspec.msgpack.encode({**msgspec.structs.asdict(_key()), "path": "/etc"})
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(encoded, type=AttachmentKey)


def test_verify_digest():
    digest = hashlib.sha256(b"file").digest()
    verify_digest(digest, hashlib.sha256(b"file").digest())
    for other in (hashlib.sha256(b"file!").digest(), digest[:31], b""):
        with pytest.raises(CryptoError) as caught:
            verify_digest(digest, other)
        assert caught.value.code == "attachment_digest_mismatch"
