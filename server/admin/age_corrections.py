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
from server.social.store import SocialStore


async def set_birthdate(data_dir: Path, handle: str, birthdate: date, reason: str) -> dict:
    """Written to the database directly (the relay may be running: SQLite waits for its
    lock); bumping `meta.generation` makes a running relay reload and announce it."""
    async with open_store(data_dir) as store:
        account = await store.get_account(handle)
        if account is None:
            raise click.ClickException(f"no account @{handle}")
        social = SocialStore(store)
        now = utc_now()
        before, after = band(account.birthdate, now.date()), band(birthdate, now.date())
        # The account's own signed declaration stays as it was: only its owner can sign one.
        await social.set_birthdate(handle, birthdate, None)
        detail = json.dumps(
            {
                "from": account.birthdate.isoformat(),
                "to": birthdate.isoformat(),
                "band_from": before,
                "band_to": after,
                "reason": reason,
            }
        )
        await social.add_audit("admin", "set_birthdate", handle, detail, now)
        await store.set_meta("generation", secrets.token_hex(8))
        return {
            "handle": handle,
            "birthdate": birthdate.isoformat(),
            "band_from": before,
            "band_to": after,
        }
