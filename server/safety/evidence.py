"""Evidence sealed at rest with a key kept apart from the database.

A case's messages are copied here when a finding brings them (a report's attached messages),
so they outlive the delete-on-ack of the message store. Each item's text is sealed with
XSalsa20-Poly1305 (PyNaCl ``SecretBox``) under a 32-byte key in ``evidence.key`` beside the
database (owner-only): a copy of the database alone does not disclose evidence.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.secret
import nacl.utils

KEY_FILE = "evidence.key"


class EvidenceSealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ValueError("the evidence key must be 32 bytes")
        self._box = nacl.secret.SecretBox(key)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> EvidenceSealer:
        """The data directory's key, made on first use (0600, never rewritten)."""
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                return cls(path.read_bytes())
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
            return cls(key)
        return cls(path.read_bytes())

    def seal(self, text: str) -> bytes:
        return bytes(self._box.encrypt(text.encode()))

    def open(self, sealed: bytes) -> str:
        return self._box.decrypt(sealed).decode()
