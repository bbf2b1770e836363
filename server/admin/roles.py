"""Granting and revoking moderation roles from the relay host (audited)."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from server.admin.data_dir import open_store
from server.config import utc_now
from server.safety.audit import AuditLog
from server.safety.store import SafetyStore


async def change_role(data_dir: Path, handle: str, role: str, *, grant: bool) -> dict:
    async with open_store(data_dir) as store:
        if await store.get_account(handle) is None:
            raise click.ClickException(f"no account @{handle}")
        roles = SafetyStore(store)
        now = utc_now()
        if grant:
            changed = await roles.grant(handle, role, "admin", now)
        else:
            changed = await roles.revoke(handle, role)
        if changed:
            action = "grant_role" if grant else "revoke_role"
            await AuditLog(store).append("admin", action, handle, {"role": role}, now)
            await store.set_meta("generation", secrets.token_hex(8))  # the relay reloads
        held = sorted((await roles.roles()).get(handle, set()))
        return {"handle": handle, "roles": held, "changed": changed}
