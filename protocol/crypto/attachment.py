"""Attachment encryption for `e2ee` conversations (PROTOCOL.md §6.6, issue 13).

As in Signal, every file gets a fresh 32-byte key; only ciphertext is uploaded, and the key,
the plaintext's SHA-256, its name, type and size travel inside the end-to-end encrypted
message (``AttachmentKey``, carried by ``FrankedPlaintext.attachment``). The recipient
downloads the blob, decrypts it and checks the digest (``verify_digest``).

The cipher is libsodium's ``crypto_secretstream_xchacha20poly1305`` through PyNaCl's
bindings: XChaCha20-Poly1305 (HChaCha20 subkey, draft-irtf-cfrg-xchacha-03 §2.2; the
ChaCha20-Poly1305 AEAD of RFC 8439 §2.8) applied to a sequence of chunks whose order,
number and end are authenticated (libsodium documentation, "Encrypted streams and file
encryption", sections "Usage" and "Algorithm"). Nothing here is a home-made primitive; this
module only fixes the framing around it. Everything is incremental, so a 16 MiB file never
has to sit in memory, and pure: bytes in, bytes out, no I/O, no clock.

The blob, byte for byte::

    blob   = MAGIC ‖ header ‖ chunk* ‖ final
    MAGIC  = "agechat-att-v1"                      (14 bytes, the format and its version)
    header = crypto_secretstream_xchacha20poly1305_init_push(key)      (24 random bytes)
    chunk  = push(65536 plaintext bytes, TAG_MESSAGE)                  (65536 + 17 bytes)
    final  = push(0..65535 plaintext bytes, TAG_FINAL)                 (n + 17 bytes)

A file of ``n`` bytes is ``n // CHUNK_BYTES`` full chunks then one final chunk holding the
remaining ``n % CHUNK_BYTES`` bytes, so the stream *always* ends with a TAG_FINAL chunk —
an empty one when ``n`` is a multiple of ``CHUNK_BYTES`` (and for the empty file). That makes
the encoding canonical and the blob's size a function of ``n`` (``ciphertext_size``). No
associated data is used: the key is fresh for every file and is used for nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Annotated, Final

import msgspec
import nacl.bindings
import nacl.exceptions

from protocol.attachments import FileName, MediaType
from protocol.crypto.errors import CryptoError
from protocol.crypto.kdf import HASH_LEN, equal
from protocol.crypto.keys import Random, check_size

#: The format's first bytes; a new version of the format gets a new magic.
MAGIC: Final = b"agechat-att-v1"
#: libsodium: crypto_secretstream_xchacha20poly1305_KEYBYTES.
FILE_KEY_BYTES: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_KEYBYTES
#: libsodium: crypto_secretstream_xchacha20poly1305_HEADERBYTES.
STREAM_HEADER_BYTES: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
#: What precedes the first chunk: the magic and the secretstream header.
PREFIX_BYTES: Final = len(MAGIC) + STREAM_HEADER_BYTES
#: Plaintext bytes in every chunk but the last.
CHUNK_BYTES: Final = 65536
#: libsodium: crypto_secretstream_xchacha20poly1305_ABYTES, the encrypted tag byte plus the
#: 16-byte Poly1305 MAC that every chunk adds to its plaintext.
CHUNK_OVERHEAD: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_ABYTES
#: A full chunk on the wire.
SEALED_CHUNK_BYTES: Final = CHUNK_BYTES + CHUNK_OVERHEAD
#: SHA-256 of the plaintext file.
DIGEST_BYTES: Final = HASH_LEN

_TAG_MESSAGE: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_State = nacl.bindings.crypto_secretstream_xchacha20poly1305_state
_NACL_ERRORS = (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError)


def new_file_key(random: Random = os.urandom) -> bytes:
    """A fresh key for one file (32 random bytes). ``random`` is injected for test vectors."""
    return check_size(random(FILE_KEY_BYTES), FILE_KEY_BYTES, "random output")


def ciphertext_size(plaintext_size: int) -> int:
    """The blob's size for a file of ``plaintext_size`` bytes (the upload declares it first):
    the prefix, 65553 bytes per full chunk, and the final chunk (remainder + 17)."""
    if plaintext_size < 0:
        raise ValueError("a file has at least 0 bytes")
    full, rest = divmod(plaintext_size, CHUNK_BYTES)
    return PREFIX_BYTES + full * SEALED_CHUNK_BYTES + rest + CHUNK_OVERHEAD


class FileEncryptor:
    """Sender side, one file: ``header()`` first, then ``update`` for every full chunk of
    ``CHUNK_BYTES``, then ``final`` once with what is left (0..CHUNK_BYTES bytes).

    The secretstream header is random by design (libsodium, "Usage": ``init_push`` makes a
    fresh header), so two encryptions of the same file under the same key differ."""

    __slots__ = ("_done", "_header", "_state")

    def __init__(self, key: bytes) -> None:
        check_size(key, FILE_KEY_BYTES, "file key")
        self._state = _State()
        # libsodium "Algorithm": k = HChaCha20(key, header[0..16]), nonce = 1 ‖ header[16..24].
        stream_header = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, key
        )
        self._header = MAGIC + stream_header
        self._done = False

    def header(self) -> bytes:
        """The blob's first ``PREFIX_BYTES`` bytes: the magic and the secretstream header."""
        return self._header

    def _push(self, plaintext: bytes, tag: int) -> bytes:
        # libsodium "Algorithm": c ‖ mac = ChaCha20-Poly1305-IETF(k, i ‖ inonce, tag ‖ pad ‖ m),
        # then inonce ^= mac[0..8], i += 1, and a rekey after TAG_FINAL.
        return nacl.bindings.crypto_secretstream_xchacha20poly1305_push(
            self._state, plaintext, None, tag
        )

    def update(self, chunk: bytes) -> bytes:
        """Encrypt one full chunk (exactly ``CHUNK_BYTES`` bytes) as TAG_MESSAGE."""
        if self._done:
            raise ValueError("the file is already finished")
        if len(chunk) != CHUNK_BYTES:
            raise ValueError(f"every chunk but the last is exactly {CHUNK_BYTES} bytes")
        return self._push(bytes(chunk), _TAG_MESSAGE)

    def final(self, last: bytes = b"") -> bytes:
        """Encrypt the last 0..CHUNK_BYTES bytes and end the stream with TAG_FINAL. A full
        ``last`` is written as a full chunk followed by an empty final one (the canonical
        form, module docstring)."""
        if self._done:
            raise ValueError("the file is already finished")
        if len(last) > CHUNK_BYTES:
            raise ValueError(f"the last chunk is at most {CHUNK_BYTES} bytes")
        out = b""
        if len(last) == CHUNK_BYTES:
            out, last = self.update(last), b""
        self._done = True
        return out + self._push(bytes(last), _TAG_FINAL)


def encrypt_chunks(key: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The whole blob, piece by piece, from plaintext pieces of any sizes: the prefix, then
    one sealed chunk per ``CHUNK_BYTES`` of input, then the final chunk. Holds at most one
    input piece plus one chunk at a time."""
    encryptor = FileEncryptor(key)
    yield encryptor.header()
    pending = bytearray()
    for piece in chunks:
        pending += piece
        while len(pending) >= CHUNK_BYTES:
            yield encryptor.update(bytes(pending[:CHUNK_BYTES]))
            del pending[:CHUNK_BYTES]
    yield encryptor.final(bytes(pending))


class FileDecryptor:
    """Recipient side, one blob, fed in pieces of any size. ``feed`` returns the plaintext
    of every chunk completed so far; ``finish`` (at the end of the download) decrypts the
    final chunk and returns its plaintext.

    A full-sized sealed chunk is always a TAG_MESSAGE chunk and the final chunk is always
    shorter (module docstring), so full chunks are decrypted as soon as they are complete
    and only what is left when the input ends is taken as the final chunk. Errors:
    ``attachment_corrupt`` when the magic is wrong or any chunk fails to authenticate
    (flipped bytes, wrong key, reordered, duplicated or dropped chunks, bytes after the
    final chunk, a chunk with a tag this format never writes); ``attachment_truncated`` when
    the input ends before the prefix or exactly at a chunk boundary without the final
    chunk. After an error the decryptor stays failed. Plaintext returned before
    ``finish`` succeeds is not yet known to be the whole file: keep it aside until then."""

    __slots__ = ("_buffer", "_failed", "_finished", "_key", "_state")

    def __init__(self, key: bytes) -> None:
        self._key = check_size(key, FILE_KEY_BYTES, "file key")
        self._state: _State | None = None
        self._buffer = bytearray()
        self._failed = False
        self._finished = False

    def _fail(self, code: str, detail: str) -> CryptoError:
        self._failed = True
        self._buffer.clear()
        return CryptoError(code, detail)

    def _check_usable(self) -> None:
        if self._finished:
            raise ValueError("the blob is already finished")
        if self._failed:
            raise CryptoError("attachment_corrupt", "the attachment already failed to decrypt")

    def _stream(self) -> _State | None:
        """Check the magic as soon as it is in; start the stream once the header is in too.
        The stream's state, or None while the prefix is incomplete."""
        if self._state is not None:
            return self._state
        if len(self._buffer) >= len(MAGIC) and self._buffer[: len(MAGIC)] != MAGIC:
            raise self._fail("attachment_corrupt", "not an agechat attachment (wrong magic)")
        if len(self._buffer) < PREFIX_BYTES:
            return None
        state = _State()
        # libsodium "Algorithm": the same k and nonce from the key and the header.
        nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
            state, bytes(self._buffer[len(MAGIC) : PREFIX_BYTES]), self._key
        )
        self._state = state
        del self._buffer[:PREFIX_BYTES]
        return state

    def _pull(self, state: _State, sealed: bytes, expected_tag: int) -> bytes:
        try:
            plaintext, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
                state, sealed, None
            )
        except _NACL_ERRORS as exc:
            raise self._fail("attachment_corrupt", "a chunk does not authenticate") from exc
        if tag != expected_tag:
            # Authentic but not what this format writes there (a FINAL chunk followed by
            # more bytes, or a short MESSAGE chunk): refused.
            raise self._fail("attachment_corrupt", "a chunk carries an unexpected tag")
        return plaintext

    def feed(self, data: bytes) -> bytes:
        """Take the next ciphertext bytes; return the plaintext of the chunks they complete."""
        self._check_usable()
        self._buffer += data
        if (state := self._stream()) is None:
            return b""
        out: list[bytes] = []
        # A full sealed chunk's worth can't be the final chunk (it is shorter), so the first
        # SEALED_CHUNK_BYTES are a TAG_MESSAGE chunk.
        while len(self._buffer) >= SEALED_CHUNK_BYTES:
            sealed = bytes(self._buffer[:SEALED_CHUNK_BYTES])
            del self._buffer[:SEALED_CHUNK_BYTES]
            out.append(self._pull(state, sealed, _TAG_MESSAGE))
        return b"".join(out)

    def finish(self) -> bytes:
        """The input has ended: decrypt the final chunk and return its plaintext."""
        self._check_usable()
        if (state := self._stream()) is None:
            raise self._fail("attachment_truncated", "the attachment ends inside its header")
        if len(self._buffer) < CHUNK_OVERHEAD:
            # Nothing (the stream stopped at a chunk boundary) or less than any chunk.
            raise self._fail("attachment_truncated", "the attachment ends before its final chunk")
        plaintext = self._pull(state, bytes(self._buffer), _TAG_FINAL)
        self._buffer.clear()
        self._finished = True
        return plaintext


def decrypt_chunks(key: bytes, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The plaintext, piece by piece, of a blob given in pieces of any sizes; raises as
    ``FileDecryptor`` does once the input ends. Consumers must not trust (save as final)
    what they got until the generator is exhausted without an error."""
    decryptor = FileDecryptor(key)
    for piece in pieces:
        if plaintext := decryptor.feed(piece):
            yield plaintext
    if plaintext := decryptor.finish():
        yield plaintext


class AttachmentKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the encrypted message says about its `e2ee` attachment (a MessagePack map inside
    ``FrankedPlaintext``): the file key, the plaintext's SHA-256, name, media type and size.
    The blob itself is named by the message's outer ``attachment`` reference."""

    key: Annotated[bytes, msgspec.Meta(min_length=FILE_KEY_BYTES, max_length=FILE_KEY_BYTES)]
    sha256: Annotated[bytes, msgspec.Meta(min_length=DIGEST_BYTES, max_length=DIGEST_BYTES)]
    name: FileName
    type: MediaType
    size: Annotated[int, msgspec.Meta(ge=0)]

    def __repr__(self) -> str:  # the file key never reaches a log
        return (
            f"AttachmentKey(key=<{len(self.key)} bytes>, sha256={self.sha256.hex()!r}, "
            f"name={self.name!r}, type={self.type!r}, size={self.size})"
        )


def verify_digest(expected: bytes, actual: bytes) -> None:
    """Raise ``attachment_digest_mismatch`` unless the decrypted file's SHA-256 ``actual`` is
    the ``expected`` one from the message (constant-time comparison, hmac.compare_digest)."""
    if not equal(expected, actual):
        raise CryptoError(
            "attachment_digest_mismatch", "the file's SHA-256 is not the one in the message"
        )
