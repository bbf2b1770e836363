"""The key directory (issue #4): signed and one-time prekeys for X3DH.

The relay checks each signed prekey's signature before publishing it, hands out each
one-time prekey at most once (deleted in the same transaction that reads it), and asks the
owner for more when its stock runs low. Keys are public; the private halves never leave
the clients.
"""

from __future__ import annotations

from datetime import datetime

from protocol import identity
from protocol.frames import OneTimePrekey, SignedPrekey
from protocol.limits import MAX_PREKEYS_STORED
from server.delivery.store import SqliteStore

#: What the identity key signs to vouch for a signed prekey (X3DH rev 1 §3.3, with the
#: 0x05 key-type byte of Signal's Curve25519 encoding, PROTOCOL.md §6.4.1).
SPK_PREFIX = b"\x05"


def signed_prekey_valid(identity_key: bytes, prekey: SignedPrekey) -> bool:
    return identity.verify(identity_key, SPK_PREFIX + prekey.public, prekey.signature)


class KeyDirectory:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def one_time_count(self, handle: str) -> int:
        async with self._store.reader.execute(
            "SELECT COUNT(*) FROM prekeys WHERE handle = ? AND kind = 'one_time'", (handle,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def upload(
        self,
        handle: str,
        signed: SignedPrekey | None,
        one_time: list[OneTimePrekey],
        now: datetime,
    ) -> int:
        """Store what was uploaded; returns the one-time stock afterwards. A one-time id
        already present is ignored (a retried upload); the stock is capped."""
        async with self._store.transaction() as db:
            if signed is not None:
                await db.execute(
                    "INSERT OR REPLACE INTO prekeys VALUES (?, 'signed', ?, ?, ?, ?)",
                    (handle, signed.id, signed.public, signed.signature, now.timestamp()),
                )
            async with db.execute(
                "SELECT COUNT(*) FROM prekeys WHERE handle = ? AND kind = 'one_time'",
                (handle,),
            ) as cur:
                row = await cur.fetchone()
            room = MAX_PREKEYS_STORED - (int(row[0]) if row else 0)
            await db.executemany(
                "INSERT OR IGNORE INTO prekeys VALUES (?, 'one_time', ?, ?, NULL, ?)",
                [(handle, k.id, k.public, now.timestamp()) for k in one_time[: max(room, 0)]],
            )
        return await self.one_time_count(handle)

    async def current_signed(self, handle: str) -> SignedPrekey | None:
        async with self._store.reader.execute(
            "SELECT key_id, public, signature FROM prekeys WHERE handle = ? AND kind = 'signed' "
            "ORDER BY created_at DESC, key_id DESC LIMIT 1",
            (handle,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return SignedPrekey(id=row[0], public=bytes(row[1]), signature=bytes(row[2]))

    async def take_one_time(self, handle: str) -> OneTimePrekey | None:
        """Hand out one one-time prekey and delete it, atomically: never twice."""
        async with (
            self._store.write_lock,
            self._store.db.execute(
                "DELETE FROM prekeys WHERE rowid = (SELECT rowid FROM prekeys WHERE handle = ? "
                "AND kind = 'one_time' ORDER BY key_id LIMIT 1) RETURNING key_id, public",
                (handle,),
            ) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else OneTimePrekey(id=row[0], public=bytes(row[1]))
