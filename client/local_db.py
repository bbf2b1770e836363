"""Opening one of the profile's SQLite files: owner-only, durable, migrated in order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from client.errors import ClientError


async def open_profile_db(
    path: Path, migrations: Sequence[str], *, secure_delete: bool = False
) -> aiosqlite.Connection:
    """Connect (WAL, synchronous=FULL) and run ``migrations[v:]`` where ``v`` is the file's
    ``user_version``; each script runs in its own transaction with the version bump."""
    # Owner-only: history is plaintext; the e2ee store is sealed, but nobody else's business.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    db = await aiosqlite.connect(path)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        if secure_delete:
            await db.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > len(migrations):
            raise ClientError("profile_corrupt", f"{path} is from a newer agechat ({version})")
        for target, script in enumerate(migrations[version:], start=version + 1):
            await db.executescript(f"BEGIN; {script}; PRAGMA user_version={target}; COMMIT;")
    except BaseException:
        await db.close()
        raise
    return db
