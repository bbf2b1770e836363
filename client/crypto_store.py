"""The profile's end-to-end encryption state: prekeys, ratchet sessions, known peer keys.

A SQLite file beside the history (``e2ee.sqlite3``). Every secret in it (prekey private
keys, serialised ratchet sessions) is sealed with a SecretBox whose key is derived from the
unlocked identity seed, so the file at rest is useless without the passphrase (keys at
rest encrypted; the seed itself is sealed by Argon2id in profile.json). Public facts (peer
identity keys, verification flags, declared bands) are stored in the clear.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import nacl.exceptions
import nacl.secret

from client.errors import ClientError
from client.local_db import open_profile_db
from protocol.crypto.kdf import hkdf_sha256

STORE_FILE = "e2ee.sqlite3"
#: HKDF info for the at-rest sealing key (distinct from every protocol use of HKDF).
SEAL_INFO = b"agechat/client-store/v1"

_SCHEMA_V1 = """
CREATE TABLE prekeys (
    kind TEXT NOT NULL,            -- 'signed' | 'one_time'
    id INTEGER NOT NULL,
    public BLOB NOT NULL,
    sealed_private BLOB NOT NULL,
    created_at REAL NOT NULL,
    superseded_at REAL,            -- signed prekeys: when a newer one replaced it
    PRIMARY KEY (kind, id)
);
CREATE TABLE sessions (
    sid INTEGER PRIMARY KEY AUTOINCREMENT,
    peer TEXT NOT NULL,
    sealed_state BLOB NOT NULL,
    initial BLOB,                  -- our X3DH initial header while no reply has come
    their_ephemeral BLOB,          -- EK_A of the initial message that created it (responder)
    active INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX sessions_peer ON sessions (peer, active DESC, updated_at DESC);
CREATE TABLE peers (
    handle TEXT PRIMARY KEY,
    identity_key BLOB NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    key_changed INTEGER NOT NULL DEFAULT 0,  -- sticky until verified or accepted
    send_blocked INTEGER NOT NULL DEFAULT 0, -- a verified key changed: no sending
    declared_band TEXT,                      -- from the peer's own signed declaration
    mode TEXT                                -- the relay's last word on the conversation
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# v2: the X3DH first messages already answered (their ephemeral keys), so a relay can't
# replay one to start a session twice once the first session is gone.
_SCHEMA_V2 = """
CREATE TABLE seen_initials (
    peer TEXT NOT NULL,
    ephemeral BLOB NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (peer, ephemeral)
);
ALTER TABLE peers ADD COLUMN declared_at REAL;
"""


@dataclass(frozen=True, slots=True)
class PeerRecord:
    handle: str
    identity_key: bytes
    verified: bool
    key_changed: bool
    send_blocked: bool
    declared_band: str | None
    mode: str | None
    declared_at: datetime | None = None  # when the peer signed that declaration


@dataclass(frozen=True, slots=True)
class StoredSession:
    sid: int
    peer: str
    state: bytes
    initial: bytes | None
    their_ephemeral: bytes | None
    active: bool


@dataclass(frozen=True, slots=True)
class StoredPrekey:
    kind: str
    id: int
    public: bytes
    private: bytes
    created_at: datetime
    superseded_at: datetime | None


_PEER_COLUMNS = (
    "handle, identity_key, verified, key_changed, send_blocked, declared_band, mode, declared_at"
)


def _peer(r: tuple) -> PeerRecord:
    return PeerRecord(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5], r[6], _dt(r[7]))


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class CryptoStore:
    def __init__(self, path: Path, identity_seed: bytes) -> None:
        self._path = path
        self._box = nacl.secret.SecretBox(
            hkdf_sha256(identity_seed, salt=b"", info=SEAL_INFO, length=32)
        )
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the e2ee store is not open")
        return self._db

    async def open(self) -> None:
        if self._db is not None:
            return
        self._db = await open_profile_db(self._path, [_SCHEMA_V1, _SCHEMA_V2], secure_delete=True)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    # --- sealing -----------------------------------------------------------------------

    def _seal(self, secret: bytes) -> bytes:
        return bytes(self._box.encrypt(secret))

    def _unseal(self, sealed: bytes) -> bytes:
        try:
            return self._box.decrypt(sealed)
        except nacl.exceptions.CryptoError:
            raise ClientError(
                "profile_corrupt", "the e2ee store was sealed by another key"
            ) from None

    # --- meta --------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._lock, self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as c:
            row = await c.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        async with self._lock:
            await self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
            await self.db.commit()

    # --- prekeys -----------------------------------------------------------------------

    async def add_prekeys(
        self, kind: str, keys: list[tuple[int, bytes, bytes]], now: datetime
    ) -> None:
        """Store (id, public, private) triples; a new signed prekey supersedes older ones."""
        async with self._lock:
            if kind == "signed":
                await self.db.execute(
                    "UPDATE prekeys SET superseded_at = ? "
                    "WHERE kind = 'signed' AND superseded_at IS NULL",
                    (_ts(now),),
                )
            # Plain INSERT: reusing an id would orphan a key the relay already published.
            await self.db.executemany(
                "INSERT INTO prekeys (kind, id, public, sealed_private, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(kind, i, pub, self._seal(priv), _ts(now)) for i, pub, priv in keys],
            )
            await self.db.commit()

    async def prekey(self, kind: str, key_id: int) -> StoredPrekey | None:
        async with (
            self._lock,
            self.db.execute(
                "SELECT kind, id, public, sealed_private, created_at, superseded_at "
                "FROM prekeys WHERE kind = ? AND id = ?",
                (kind, key_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else self._prekey(row)

    async def current_signed_prekey(self) -> StoredPrekey | None:
        async with (
            self._lock,
            self.db.execute(
                "SELECT kind, id, public, sealed_private, created_at, superseded_at "
                "FROM prekeys WHERE kind = 'signed' AND superseded_at IS NULL "
                "ORDER BY created_at DESC LIMIT 1"
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else self._prekey(row)

    async def delete_prekey(self, kind: str, key_id: int) -> None:
        async with self._lock:
            await self.db.execute("DELETE FROM prekeys WHERE kind = ? AND id = ?", (kind, key_id))
            await self.db.commit()

    async def expire_signed_prekeys(self, superseded_before: datetime) -> int:
        """Delete signed prekeys replaced before the grace period began."""
        async with self._lock:
            cur = await self.db.execute(
                "DELETE FROM prekeys WHERE kind = 'signed' AND superseded_at < ?",
                (_ts(superseded_before),),
            )
            await self.db.commit()
            return cur.rowcount

    def _prekey(self, row: tuple) -> StoredPrekey:
        created = _dt(row[4])
        assert created is not None
        return StoredPrekey(row[0], row[1], row[2], self._unseal(row[3]), created, _dt(row[5]))

    # --- sessions ----------------------------------------------------------------------

    async def sessions(self, peer: str) -> list[StoredSession]:
        """The peer's sessions, the active one first, then the most recently used."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT sid, peer, sealed_state, initial, their_ephemeral, active FROM sessions "
                "WHERE peer = ? ORDER BY active DESC, updated_at DESC, sid DESC",
                (peer,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [StoredSession(r[0], r[1], self._unseal(r[2]), r[3], r[4], bool(r[5])) for r in rows]

    async def save_session(
        self,
        peer: str,
        state: bytes,
        now: datetime,
        *,
        sid: int | None = None,
        initial: bytes | None = None,
        their_ephemeral: bytes | None = None,
        activate: bool = False,
        delete_one_time_prekey: int | None = None,
        keep: int = 5,
    ) -> int:
        """Insert or update a session in one transaction (with the one-time prekey it used
        deleted, X3DH §3.4); ``activate`` makes it the one we send with. Keeps ``keep``
        sessions per peer, dropping the least recently used inactive ones."""
        async with self._lock:
            db = self.db
            if activate:
                await db.execute("UPDATE sessions SET active = 0 WHERE peer = ?", (peer,))
            if sid is None:
                cur = await db.execute(
                    "INSERT INTO sessions (peer, sealed_state, initial, their_ephemeral, active, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (peer, self._seal(state), initial, their_ephemeral, int(activate), _ts(now)),
                )
                assert cur.lastrowid is not None
                sid = cur.lastrowid
            else:
                await db.execute(
                    "UPDATE sessions SET sealed_state = ?, initial = ?, updated_at = ?, "
                    "active = CASE WHEN ? THEN 1 ELSE active END WHERE sid = ?",
                    (self._seal(state), initial, _ts(now), int(activate), sid),
                )
            if delete_one_time_prekey is not None:
                await db.execute(
                    "DELETE FROM prekeys WHERE kind = 'one_time' AND id = ?",
                    (delete_one_time_prekey,),
                )
            if their_ephemeral is not None:
                await db.execute(
                    "INSERT OR IGNORE INTO seen_initials (peer, ephemeral, seen_at) "
                    "VALUES (?, ?, ?)",
                    (peer, their_ephemeral, _ts(now)),
                )
            await db.execute(
                "DELETE FROM sessions WHERE peer = ? AND active = 0 AND sid NOT IN "
                "(SELECT sid FROM sessions WHERE peer = ? ORDER BY active DESC, updated_at DESC, "
                "sid DESC LIMIT ?)",
                (peer, peer, keep),
            )
            await db.commit()
            return sid

    async def has_active_session(self, peer: str) -> bool:
        """Is there a session to send with? (Without unsealing any.)"""
        async with (
            self._lock,
            self.db.execute(
                "SELECT 1 FROM sessions WHERE peer = ? AND active = 1 LIMIT 1", (peer,)
            ) as cur,
        ):
            return await cur.fetchone() is not None

    async def seen_initial(self, peer: str, ephemeral: bytes) -> bool:
        async with (
            self._lock,
            self.db.execute(
                "SELECT 1 FROM seen_initials WHERE peer = ? AND ephemeral = ?", (peer, ephemeral)
            ) as cur,
        ):
            return await cur.fetchone() is not None

    async def forget_initials(self, seen_before: datetime) -> None:
        """Drop replay records older than any signed prekey that could still answer them."""
        async with self._lock:
            await self.db.execute(
                "DELETE FROM seen_initials WHERE seen_at < ?", (_ts(seen_before),)
            )
            await self.db.commit()

    async def delete_sessions(self, peer: str) -> None:
        async with self._lock:
            await self.db.execute("DELETE FROM sessions WHERE peer = ?", (peer,))
            await self.db.commit()

    # --- peers -------------------------------------------------------------------------

    async def peer(self, handle: str) -> PeerRecord | None:
        async with (
            self._lock,
            self.db.execute(
                f"SELECT {_PEER_COLUMNS} FROM peers WHERE handle = ?",
                (handle,),
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else _peer(row)

    async def all_peers(self) -> dict[str, PeerRecord]:
        async with (
            self._lock,
            self.db.execute(f"SELECT {_PEER_COLUMNS} FROM peers") as cur,
        ):
            rows = await cur.fetchall()
        return {r[0]: _peer(r) for r in rows}

    async def save_peer(self, record: PeerRecord) -> None:
        async with self._lock:
            await self.db.execute(
                f"INSERT OR REPLACE INTO peers ({_PEER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.handle,
                    record.identity_key,
                    int(record.verified),
                    int(record.key_changed),
                    int(record.send_blocked),
                    record.declared_band,
                    record.mode,
                    _ts(record.declared_at),
                ),
            )
            await self.db.commit()
