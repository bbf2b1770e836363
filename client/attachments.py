"""Attachments on this device: the copy of a file being sent (kept under the profile until
the relay has it, so a crash of the client loses nothing) and the files received, saved
under the profile, owner-only. The wire side is client/relay/blobs.py and PROTOCOL.md §6.6.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import shutil
from pathlib import Path
from typing import Literal

import msgspec

from client.errors import ClientError

FOLDER = "attachments"
CHUNK = 64 * 1024
#: What a file name may not contain here (the protocol's FileName rule, plus what a file
#: system would read as a path).
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f-\x9f]')
#: File systems allow 255 bytes per name; leave room for a ".part" while downloading.
MAX_NAME_BYTES = 200


class LocalAttachment(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An attachment as the history records it (JSON in the message's row)."""

    name: str
    type: str
    size: int  # the file's bytes (plaintext)
    sha256: str  # hex, of the plaintext
    path: str  # the file under the profile
    #: ``ready``: the file is at ``path``; ``unavailable``: the relay no longer had it;
    #: ``corrupt``: what arrived didn't match its digest (deleted).
    state: Literal["ready", "unavailable", "corrupt"] = "ready"
    #: Outgoing e2ee only: the file key (hex) and the encrypted copy being uploaded, kept
    #: until the relay has it so a retry uploads the same bytes.
    key: str | None = None
    encrypted_path: str | None = None
    uploaded: bool = False
    #: The mode the upload was for (the blob of the other mode is a different one).
    uploaded_as: str | None = None

    def to_json(self) -> dict[str, object]:
        """What `inbox --json` shows: never the key."""
        return {
            "name": self.name,
            "size": self.size,
            "type": self.type,
            "sha256": self.sha256,
            "path": self.path,
            "state": self.state,
        }


def encode(attachment: LocalAttachment) -> str:
    return msgspec.json.encode(attachment).decode()


def decode(text: str) -> LocalAttachment:
    return msgspec.json.decode(text, type=LocalAttachment)


def safe_name(name: str) -> str:
    """A file name that is only a name on any system: no folders, drive letters, control
    or reserved characters, not hidden, and at most `MAX_NAME_BYTES` in UTF-8 (a peer's
    long name must not make saving fail), keeping a short extension."""
    cleaned = _UNSAFE.sub("_", name).strip().lstrip(".").rstrip(". ") or "file"
    if len(cleaned.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = cleaned.rpartition(".")
        suffix = f".{ext}" if dot and stem and len(ext.encode()) <= 16 else ""
        base = stem if suffix else cleaned
        budget = MAX_NAME_BYTES - len(suffix.encode())
        cleaned = base.encode()[:budget].decode(errors="ignore") + suffix
    return cleaned


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def outgoing_dir(profile_dir: Path, msg_id: str) -> Path:
    return _private_dir(profile_dir / FOLDER / "out" / msg_id)


def incoming_dir(profile_dir: Path, sender: str, msg_id: str) -> Path:
    return _private_dir(profile_dir / FOLDER / "in" / sender / msg_id)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def media_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return (
        guessed
        if guessed and re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", guessed)
        else ("application/octet-stream")
    )


def take_copy(source: Path, profile_dir: Path, msg_id: str) -> LocalAttachment:
    """Copy the file to send under the profile (owner-only) and describe it."""
    if not source.is_file():
        raise ClientError("file_not_found", f"{source} is not a readable file.")
    name = safe_name(source.name)
    target = outgoing_dir(profile_dir, msg_id) / name
    try:
        shutil.copyfile(source, target)
        os.chmod(target, 0o600)
    except OSError as exc:
        raise ClientError("file_not_found", f"{source} could not be read ({exc}).") from None
    return LocalAttachment(
        name=name,
        type=media_type(name),
        size=target.stat().st_size,
        sha256=sha256_of(target),
        path=str(target),
    )
