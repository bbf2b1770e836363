"""`agechat admin`: operator actions on a relay's data directory, each written to the audit log.

They write the database directly (the relay may be running: SQLite waits for its lock) and
bump `meta.generation`, which a running relay polls to reload what changed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import date
from pathlib import Path

import click

from protocol.policy import band
from server.config import utc_now
from server.delivery.store import SqliteStore
from server.social.store import SocialStore


async def set_birthdate(data_dir: Path, handle: str, birthdate: date, reason: str) -> dict:
    store = SqliteStore(data_dir / "relay.sqlite3")
    if not (data_dir / "relay.sqlite3").exists():
        raise click.ClickException(f"no relay data in {data_dir}")
    await store.open()
    try:
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
    finally:
        await store.close()


@click.group("admin")
def admin_group() -> None:
    """Operator actions on a relay's data (audited)."""


@admin_group.command("set-birthdate")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--reason", default="age assurance", show_default=True, help="Why (recorded in the audit log)."
)
@click.argument("handle")
@click.argument("birthdate")
def admin_set_birthdate(data_dir: Path, reason: str, handle: str, birthdate: str) -> None:
    """Set HANDLE's birth date to BIRTHDATE (YYYY-MM-DD), in any direction: the age-assurance
    step the self-service change can't do. Written to the audit log."""
    try:
        born = date.fromisoformat(birthdate)
    except ValueError:
        raise click.BadParameter(
            f"{birthdate!r} is not YYYY-MM-DD", param_hint="BIRTHDATE"
        ) from None
    if born > date.today() or born.year < date.today().year - 130:
        raise click.BadParameter(
            f"{birthdate} is not a plausible birth date", param_hint="BIRTHDATE"
        )
    result = asyncio.run(set_birthdate(data_dir, handle, born, reason))
    click.echo(json.dumps(result))
