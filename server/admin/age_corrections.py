"""An admin age correction: the audited age-assurance step the self-service change can't do."""

from __future__ import annotations

import json
import secrets
from datetime import date
from pathlib import Path

import click

from protocol.policy import band
from server.admin.data_dir import open_store
from server.config import utc_now
from server.safety.audit import append_in


async def set_birthdate(data_dir: Path, handle: str, birthdate: date, reason: str) -> dict:
    """Written to the database directly (the relay may be running: SQLite waits for its
    lock); bumping `meta.generation` makes a running relay reload and announce it."""
    async with open_store(data_dir) as store:
        account = await store.get_account(handle)
        if account is None:
            raise click.ClickException(f"no account @{handle}")
        now = utc_now()
        before, after = band(account.birthdate, now.date()), band(birthdate, now.date())
        detail = json.dumps(
            {
                "from": account.birthdate.isoformat(),
                "to": birthdate.isoformat(),
                "band_from": before,
                "band_to": after,
                "reason": reason,
            }
        )
        async with store.transaction() as db:  # the correction and its audit entry together
            # The account's signed declaration stays as it was: only its owner can sign one.
            await db.execute(
                "UPDATE accounts SET birthdate = ? WHERE handle = ?",
                (birthdate.isoformat(), handle),
            )
            await append_in(db, "admin", "set_birthdate", handle, detail, now)
        await store.set_meta("generation", secrets.token_hex(8))
        return {
            "handle": handle,
            "birthdate": birthdate.isoformat(),
            "band_from": before,
            "band_to": after,
        }
