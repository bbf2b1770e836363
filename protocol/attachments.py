"""Attachments on the wire (PROTOCOL.md §6.6): the signed HTTP requests that upload and
download a blob, and the reference a message carries.

A blob is uploaded before the message that uses it: ``PUT /v1/blobs/{id}`` with the bytes
as the body, where the uploader chooses ``id`` (like a message id) and signs what it is
about to send — its size and SHA-256 — so the relay can refuse a body that isn't the one
signed. The message then names the blob in ``attachment``. Downloads are signed too, and
only the uploader and the recipients of a message naming the blob may fetch it.

In `e2ee` mode the blob is ciphertext (protocol/crypto/attachment.py) and the file's name,
type, key and digest travel inside the encrypted message; the reference outside says only
which blob and how large. In `visible` mode the name and type ride in the reference and the
relay hashes the blob (known-material matching) before it accepts the message.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta
from typing import Annotated, Final

import msgspec

from protocol.identity import rfc3339
from protocol.types import Handle, MessageId, Mode

UPLOAD_CONTEXT: Final = b"agechat/blob-upload/v1"
DOWNLOAD_CONTEXT: Final = b"agechat/blob-download/v1"
#: How far a signed request's time may be from the relay's clock.
REQUEST_SKEW: Final = timedelta(minutes=5)
#: Headers of the signed blob requests.
HANDLE_HEADER: Final = "Agechat-Handle"
TIME_HEADER: Final = "Agechat-Time"
MODE_HEADER: Final = "Agechat-Mode"
SHA256_HEADER: Final = "Agechat-Sha256"
SIGNATURE_HEADER: Final = "Agechat-Signature"
#: How long an uploaded blob may wait for a message to name it before the sweep deletes it.
UNATTACHED_HOURS: Final = 24

FileName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, pattern=r"\A[^/\\\x00-\x1f\x7f-\x9f]+\Z")
]
MediaType = Annotated[
    str, msgspec.Meta(max_length=127, pattern=r"\A[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9!#$&^_.+-]+\Z")
]


class AttachmentRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a `send` and a `deliver` say about their attachment. ``id`` and ``size`` always;
    ``name``, ``type`` and ``sha256`` (hex, the relay's own digest) only in `visible` mode —
    in `e2ee` mode they are inside the encrypted message."""

    id: MessageId
    size: Annotated[int, msgspec.Meta(ge=0)]
    name: FileName | None = None
    type: MediaType | None = None
    sha256: str | None = None


class UploadReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The relay's answer to an upload (201)."""

    id: MessageId
    size: int
    sha256: str


def _length_prefixed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def upload_message(
    relay_id: str,
    handle: Handle,
    blob_id: MessageId,
    mode: Mode,
    size: int,
    sha256_hex: str,
    at: datetime,
) -> bytes:
    """The bytes an uploader signs (PROTOCOL.md §6.6): context, relay id, handle, blob id,
    mode, size in decimal, the body's SHA-256 in lowercase hex, the time (RFC 3339, UTC)."""
    return _length_prefixed(
        UPLOAD_CONTEXT,
        relay_id.encode(),
        handle.encode(),
        blob_id.encode(),
        mode.encode(),
        str(size).encode(),
        sha256_hex.encode(),
        rfc3339(at).encode(),
    )


def download_message(
    relay_id: str, handle: Handle, owner: Handle, blob_id: MessageId, at: datetime
) -> bytes:
    """The bytes a downloader signs: context, relay id, handle, the blob's owner and id, the
    time."""
    return _length_prefixed(
        DOWNLOAD_CONTEXT,
        relay_id.encode(),
        handle.encode(),
        owner.encode(),
        blob_id.encode(),
        rfc3339(at).encode(),
    )
