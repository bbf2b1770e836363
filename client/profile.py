"""The profile directory: who this client is (profile.json) and its history database.

profile.json holds only public facts and the sealed private key; the passphrase unlocks
the key into an ``Identity`` for the life of the process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import msgspec
import nacl.signing
import platformdirs

from client.errors import ClientError
from client.keystore import SealedSecret, unseal

PROFILE_VERSION = 1
PROFILE_FILE = "profile.json"
HISTORY_FILE = "history.sqlite3"


def default_profile_dir() -> Path:
    env = os.environ.get("AGECHAT_PROFILE")
    return Path(env) if env else Path(platformdirs.user_data_dir("agechat"))


class ProfileData(msgspec.Struct, frozen=True, kw_only=True):
    version: int = PROFILE_VERSION
    handle: str
    display_name: str
    server: str
    birthdate: date
    identity_key: bytes
    created_at: datetime
    secret: SealedSecret


@dataclass(frozen=True)
class Identity:
    """The unlocked signing key; the X25519 form is derived when E2EE needs it."""

    signing_key: nacl.signing.SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


class Profile:
    def __init__(self, directory: Path, data: ProfileData) -> None:
        self.directory = directory
        self.data = data

    @property
    def handle(self) -> str:
        return self.data.handle

    @property
    def server(self) -> str:
        return self.data.server

    @property
    def history_path(self) -> Path:
        return self.directory / HISTORY_FILE

    @staticmethod
    def path_in(directory: Path) -> Path:
        return directory / PROFILE_FILE

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return cls.path_in(directory).exists()

    @classmethod
    def load(cls, directory: Path) -> Profile:
        path = cls.path_in(directory)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ClientError(
                "no_profile", f"No account in {directory}: run `agechat account create`."
            ) from None
        try:
            data = msgspec.json.decode(raw, type=ProfileData)
        except msgspec.DecodeError as exc:
            raise ClientError("profile_corrupt", f"{path}: {exc}") from None
        if data.version != PROFILE_VERSION:
            raise ClientError("profile_corrupt", f"{path} has version {data.version}")
        return cls(directory, data)

    def set_birthdate(self, birthdate: date) -> None:
        """Record a birth date the relay accepted (public data; the sealed key is unchanged)."""
        self.data = msgspec.structs.replace(self.data, birthdate=birthdate)
        self.write_file(self.path_in(self.directory), self.data)

    def unlock(self, passphrase: str) -> Identity:
        seed = unseal(self.data.secret, passphrase)
        signing_key = nacl.signing.SigningKey(seed)
        if bytes(signing_key.verify_key) != self.data.identity_key:
            raise ClientError("profile_corrupt", "the sealed key does not match the identity key")
        return Identity(signing_key)

    @staticmethod
    def write_file(path: Path, data: ProfileData) -> None:
        """Write atomically with owner-only permissions (no half-written profile after a crash)."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(data)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
