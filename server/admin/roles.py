"""Granting and revoking moderation roles from the relay host (audited)."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from server.admin.data_dir import open_store
from server.config import utc_now
from server.safety.audit import append_in
from server.safety.store import SafetyStore


async def change_role(data_dir: Path, handle: str, role: str, *, grant: bool) -> dict:
    async with open_store(data_dir) as store:
        if await store.get_account(handle) is None:
            raise click.ClickException(f"no account @{handle}")
        roles = SafetyStore(store)
        now = utc_now()
        async with store.transaction() as db:  # the change and its audit entry together
            if grant:
                cur = await db.execute(
                    "INSERT OR IGNORE INTO roles (handle, role, granted_by, granted_at) "
                    "VALUES (?, ?, 'admin', ?)",
                    (handle, role, now.timestamp()),
                )
            else:
                cur = await db.execute(
                    "DELETE FROM roles WHERE handle = ? AND role = ?", (handle, role)
                )
            changed = cur.rowcount == 1
            if changed:
                action = "grant_role" if grant else "revoke_role"
                await append_in(db, "admin", action, handle, {"role": role}, now)
        if changed:
            await store.set_meta("generation", secrets.token_hex(8))  # the relay reloads
        held = sorted((await roles.roles()).get(handle, set()))
        return {"handle": handle, "roles": held, "changed": changed}
