"""Attachments on their way out and in (PROTOCOL.md §6.6).

Out: the file copied under the profile (client/attachments.py) is uploaded as blob
``<message id>`` — so a retry after a crash uploads the same id and the relay answers as it
did the first time — as it is in a `visible` chat, or encrypted on this device with a fresh
key in an `e2ee` chat (protocol/crypto/attachment.py; the encrypted copy and its key are
recorded before the upload, so a retry sends the same bytes). The message then names it.

In: the blob is downloaded before the message is stored and acknowledged (the
acknowledgement deletes it on the relay), checked against the relay's digest (`visible`) or
decrypted and checked against the digest inside the encrypted message (`e2ee`), and saved
under the profile. A download that breaks off leaves the message unacknowledged: the relay
delivers it again on the next connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from client.attachments import CHUNK, LocalAttachment, incoming_dir, safe_name
from client.errors import ClientError
from client.history import History, HistoryMessage
from client.relay.blobs import BlobTransfer
from protocol.attachments import AttachmentRef
from protocol.crypto.attachment import (
    AttachmentKey,
    FileDecryptor,
    ciphertext_size,
    encrypt_chunks,
    new_file_key,
    verify_digest,
)
from protocol.crypto.errors import CryptoError
from protocol.frames import Deliver

log = logging.getLogger("agechat.client.attachments")


class RetryLater(Exception):
    """The attachment could not be fetched now: leave the message unacknowledged."""


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _encrypt_file(source: Path, target: Path, key: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        for piece in encrypt_chunks(key, _read_chunks(source)):
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())


async def prepare_outgoing(
    message: HistoryMessage, mode: str, blobs: BlobTransfer, history: History
) -> tuple[AttachmentRef, AttachmentKey | None]:
    """Upload ``message``'s attachment for a ``mode`` chat (once); the reference the `send`
    carries and, for `e2ee`, what goes inside the encrypted message."""
    att = message.attachment
    assert att is not None
    source = Path(att.path)
    # One blob per mode: if the chat's mode changed since an upload, the file goes up again
    # as this mode needs it (the relay refuses a blob of the other mode).
    blob_id = blob_id_for(message.msg_id, mode)
    done = att.uploaded and att.uploaded_as == mode
    if mode == "visible":
        if not done:
            await blobs.upload(blob_id, source, "visible")
            await history.set_attachment(
                message.msg_id, message.sender, _replace(att, uploaded=True, uploaded_as=mode)
            )
        return AttachmentRef(id=blob_id, size=att.size, name=att.name, type=att.type), None
    if att.key is None or att.encrypted_path is None:
        key = new_file_key()
        encrypted = source.with_name(source.name + ".enc")
        _encrypt_file(source, encrypted, key)
        att = _replace(att, key=key.hex(), encrypted_path=str(encrypted))
        await history.set_attachment(message.msg_id, message.sender, att)  # before the upload
    assert att.key is not None and att.encrypted_path is not None
    if not done:
        await blobs.upload(blob_id, Path(att.encrypted_path), "e2ee")
        att = _replace(att, uploaded=True, uploaded_as=mode)
        await history.set_attachment(message.msg_id, message.sender, att)
        Path(att.encrypted_path).unlink(missing_ok=True)  # the relay has it now
    inner = AttachmentKey(
        key=bytes.fromhex(att.key),
        sha256=bytes.fromhex(att.sha256),
        name=att.name,
        type=att.type,
        size=att.size,
    )
    return AttachmentRef(id=blob_id, size=ciphertext_size(att.size)), inner


def blob_id_for(msg_id: str, mode: str) -> str:
    """The blob id for a message's file in ``mode``: stable, so a retry after a crash
    uploads under the same id (answered as the first time)."""
    return f"{msg_id[:62]}-{'v' if mode == 'visible' else 'e'}"


def _replace(att: LocalAttachment, **changes: object) -> LocalAttachment:
    return msgspec.structs.replace(att, **changes)  # type: ignore[arg-type]


async def fetch_incoming(
    frame: Deliver, profile_dir: Path, blobs: BlobTransfer, key: AttachmentKey | None
) -> LocalAttachment | None:
    """Download, check and save the attachment ``frame`` names; None when it names none.
    Raises `RetryLater` when the download broke off (the message stays unacknowledged)."""
    ref = frame.attachment
    if ref is msgspec.UNSET:
        if key is not None:
            # A file inside the encryption with no blob beside it: recorded (its digest is
            # in the commitment, so a report needs it), but there is nothing to fetch.
            return _lost(
                None, safe_name(key.name), key.type, key.size, "unavailable", key.sha256.hex()
            )
        return None
    folder = incoming_dir(profile_dir, frame.sender, frame.id)
    expected = ""  # the digest a report of this message needs (§6.6.1), known for e2ee
    if frame.mode == "e2ee":
        if key is None:
            return _lost(folder, "file", "application/octet-stream", ref.size, "corrupt", "")
        name, media, size = safe_name(key.name), key.type, key.size
        expected = key.sha256.hex()
    else:
        name = safe_name(ref.name or "file")
        media, size = ref.type or "application/octet-stream", ref.size
    target = folder / name
    download = target if frame.mode == "visible" else folder / ".download.enc"
    try:
        digest = await blobs.download(frame.sender, ref.id, download, max_bytes=ref.size)
    except ClientError as exc:
        if exc.code == "not_found":  # deleted (held, or gone with retention): say so
            return _lost(folder, name, media, size, "unavailable", expected)
        if exc.code == "download_too_large":  # more than the message said: never retried
            return _lost(folder, name, media, size, "corrupt", expected)
        raise RetryLater(exc.code) from None
    try:
        if frame.mode == "visible":
            if ref.sha256 is not None and ref.sha256 != digest:
                raise CryptoError("attachment_digest_mismatch")
        else:
            assert key is not None
            digest = _decrypt_file(download, target, key)
    except (CryptoError, OSError) as exc:
        # A file that fails its check, or can't be written here, is recorded as such: a
        # peer's file must never keep the message from being stored.
        log.warning("attachment from %s not kept: %s", frame.sender, exc)
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        return _lost(folder, name, media, size, "corrupt", expected)
    finally:
        if download != target:
            with contextlib.suppress(OSError):
                download.unlink(missing_ok=True)
    return LocalAttachment(name=name, type=media, size=size, sha256=digest, path=str(target))


def _decrypt_file(source: Path, target: Path, key: AttachmentKey) -> str:
    """Decrypt into a temporary name, check, make durable, then give it its name: the
    message is acknowledged (and the relay deletes the blob) only after this returns."""
    decryptor = FileDecryptor(key.key)
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".part")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in _read_chunks(source):
                plain = decryptor.feed(chunk)
                digest.update(plain)
                out.write(plain)
            rest = decryptor.finish()
            digest.update(rest)
            out.write(rest)
            out.flush()
            os.fsync(out.fileno())
        verify_digest(key.sha256, digest.digest())
        if partial.stat().st_size != key.size:
            raise CryptoError(
                "attachment_corrupt", "the file's length is not the one in the message"
            )
        os.replace(partial, target)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX: the directory entry is data of the directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _lost(
    folder: Path | None, name: str, media: str, size: int, state: str, sha256: str
) -> LocalAttachment:
    if folder is not None:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty
    return LocalAttachment(
        name=name,
        type=media,
        size=size,
        sha256=sha256,
        path="",
        state=state,  # type: ignore[arg-type]
    )
