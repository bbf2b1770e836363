"""Blobs: uploaded attachment bytes in files under ``<data-dir>/blobs/<owner>/<id>``, and a
row per blob in the relay's SQLite store (owner, id, mode, size, SHA-256, state).

States: ``uploaded`` (waiting for a message to name it), ``attached`` (named by a message;
deleted with it on acknowledgement, unless retention or a preservation keeps the message's
text), ``held`` (a hash match kept it as case evidence; never served to anyone).

An upload streams into ``blobs/tmp/`` and is renamed into place only once its size and
digest match what the uploader signed, so a failed or interrupted upload never becomes a
blob; the sweep removes temporary files it left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocol.attachments import UNATTACHED_HOURS
from server.delivery.store import SqliteStore


@dataclass(frozen=True, slots=True)
class Blob:
    owner: str
    id: str
    mode: str
    size: int
    sha256: bytes
    state: str
    created_at: datetime


TEMP_FOLDER = ".tmp"
#: What the smallest blob counts against the quota: empty files are not free.
MIN_CHARGE = 4096
#: An attached blob whose message the single writer may not have stored yet.
ATTACH_GRACE_SECONDS = 600


def charge(size: int) -> int:
    return max(size, MIN_CHARGE)


class QuotaExceeded(Exception):
    """The owner's live blobs and this one would pass the quota."""


class BlobConflict(Exception):
    """Another upload recorded a blob under the same owner and id first."""


class BlobStore:
    def __init__(self, data_dir: Path, store: SqliteStore) -> None:
        self.root = data_dir / "blobs"
        self._store = store
        #: Bytes being uploaded right now, per account (counted against the quota before
        #: they are written, so parallel or slow uploads can't fill the disk).
        self.in_flight: dict[str, list[int]] = {}

    def path(self, owner: str, blob_id: str) -> Path:
        # Handles and ids are [a-z0-9_] and [A-Za-z0-9_-] (protocol/types.py): safe names.
        return self.root / owner / blob_id

    def temp_path(self) -> Path:
        # ".tmp": no handle can be named that, so no account's blobs share the folder.
        folder = self.root / TEMP_FOLDER
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder / secrets.token_hex(16)

    async def get(self, owner: str, blob_id: str) -> Blob | None:
        async with self._store.reader.execute(
            "SELECT owner, id, mode, size, sha256, state, created_at FROM blobs "
            "WHERE owner = ? AND id = ?",
            (owner, blob_id),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Blob(
            row[0],
            row[1],
            row[2],
            row[3],
            bytes(row[4]),
            row[5],
            datetime.fromtimestamp(row[6], UTC),
        )

    async def add(
        self,
        owner: str,
        blob_id: str,
        mode: str,
        size: int,
        sha256: bytes,
        temp: Path,
        quota: int,
        now: datetime,
    ) -> None:
        """Move the verified upload ``temp`` into place and record it; `QuotaExceeded` (the
        file removed) when the owner's live blobs would pass ``quota`` bytes."""
        final = self.path(owner, blob_id)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            async with self._store.transaction() as db:
                async with db.execute(
                    "SELECT COALESCE(SUM(MAX(size, ?)), 0) FROM blobs WHERE owner = ?",
                    (MIN_CHARGE, owner),
                ) as cur:
                    row = await cur.fetchone()
                if int(row[0] if row else 0) + charge(size) > quota:
                    raise QuotaExceeded(owner)
                try:
                    await db.execute(
                        "INSERT INTO blobs (owner, id, mode, size, sha256, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (owner, blob_id, mode, size, sha256, now.timestamp()),
                    )
                except sqlite3.IntegrityError:
                    raise BlobConflict(owner, blob_id) from None
                os.replace(temp, final)  # inside: a failed commit leaves no blob file
        finally:
            temp.unlink(missing_ok=True)

    async def usage(self, owner: str) -> int:
        async with self._store.reader.execute(
            "SELECT COALESCE(SUM(MAX(size, ?)), 0) FROM blobs WHERE owner = ?",
            (MIN_CHARGE, owner),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def may_download(self, handle: str, owner: str, blob_id: str) -> bool:
        """The recipient of a message from the uploader naming the blob, while the relay
        still holds that message (undelivered, or its text retained). Not the uploader: it
        has the file, and a held blob must look like any other it can't fetch."""
        blob = await self.get(owner, blob_id)
        if blob is None or blob.state == "held":
            return False
        async with self._store.reader.execute(
            "SELECT 1 FROM messages WHERE sender = ? AND recipient = ? "
            "AND attachment IS NOT NULL AND json_extract(attachment, '$.id') = ? "
            "AND (acked_at IS NULL OR body IS NOT NULL) LIMIT 1",
            (owner, handle, blob_id),
        ) as cur:
            return await cur.fetchone() is not None

    async def delete(self, owner: str, blob_id: str) -> None:
        async with self._store.transaction() as db:
            await db.execute("DELETE FROM blobs WHERE owner = ? AND id = ?", (owner, blob_id))
        self.path(owner, blob_id).unlink(missing_ok=True)

    async def sweep(self, now: datetime) -> int:
        """Delete blobs nothing needs any more: uploaded and never named within
        `UNATTACHED_HOURS`; attached, with no message left that the relay still holds (an
        undelivered one, or one whose text retention keeps). Held blobs stay (case
        evidence). Temporary files of uploads that never finished go too. Returns how many
        blobs were deleted."""
        unnamed_before = (now - timedelta(hours=UNATTACHED_HOURS)).timestamp()
        attached_before = (now - timedelta(seconds=ATTACH_GRACE_SECONDS)).timestamp()
        async with self._store.reader.execute(
            "SELECT b.owner, b.id FROM blobs b WHERE "
            "(b.state = 'uploaded' AND b.created_at < ?) OR (b.state = 'attached' "
            "AND b.created_at < ? AND NOT "
            "EXISTS (SELECT 1 FROM messages m WHERE m.sender = b.owner "
            "AND m.attachment IS NOT NULL AND json_extract(m.attachment, '$.id') = b.id "
            "AND (m.acked_at IS NULL OR m.body IS NOT NULL)))",
            (unnamed_before, attached_before),
        ) as cur:
            gone = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
        for owner, blob_id in gone:
            await self.delete(owner, blob_id)
        tmp = self.root / TEMP_FOLDER
        if tmp.is_dir():
            stale = now.timestamp() - 3600
            for leftover in tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if leftover.stat().st_mtime < stale:
                        leftover.unlink()
        return len(gone)

    async def release(self, released: Sequence[tuple[str, str]]) -> None:
        """Delete the blobs of acknowledged messages whose text went with the ack (when
        retention or a preservation kept the text, the blob stays with it, and the sweep
        takes both later). ``released`` comes from the ack's own transaction."""
        for owner, blob_id in released:
            blob = await self.get(owner, blob_id)
            if blob is not None and blob.state == "attached":
                await self.delete(blob.owner, blob.id)

    async def attach(self, owner: str, blob_id: str) -> bool:
        """Mark an uploaded blob as named by a message; False when it isn't ``uploaded``."""
        async with self._store.transaction() as db:
            cur = await db.execute(
                "UPDATE blobs SET state = 'attached' WHERE owner = ? AND id = ? "
                "AND state = 'uploaded'",
                (owner, blob_id),
            )
            return cur.rowcount == 1

    async def hold(self, owner: str, blob_id: str) -> None:
        """Keep the blob as evidence: never served, never swept with messages."""
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE blobs SET state = 'held' WHERE owner = ? AND id = ?", (owner, blob_id)
            )
