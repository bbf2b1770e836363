"""`agechat admin preserve | preservations | sweep`: preservation requests and the retention
sweep, from the relay host (server/safety/retention.py). Audited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
import msgspec

from protocol.policy import Retention
from server.admin.data_dir import DATA_DIR, open_store
from server.config import utc_now
from server.safety.retention import RETENTION_META, preservations, preserve, sweep


@click.command("preserve")
@DATA_DIR
@click.option(
    "--days", type=click.IntRange(1, 3650), required=True, help="How long to hold the data."
)
@click.option(
    "--reference",
    required=True,
    help="The preservation request it answers (e.g. a case or legal process number).",
)
@click.argument("handle")
def preserve_command(data_dir: Path, days: int, reference: str, handle: str) -> None:
    """Hold HANDLE's data past normal retention for DAYS: messages to and from it, the
    evidence of cases about it, its login addresses (a preservation request). Audited."""

    async def run() -> dict[str, object]:
        async with open_store(data_dir) as store:
            if await store.get_account(handle) is None:
                raise click.ClickException(f"no account @{handle}")
            made = await preserve(store, handle, days, reference, "admin", utc_now())
            return made.to_json()

    click.echo(json.dumps(asyncio.run(run())))


@click.command("preservations")
@DATA_DIR
def preservations_command(data_dir: Path) -> None:
    """List the preservations in force, one JSON object per line, soonest to end first."""

    async def run() -> list[dict[str, object]]:
        async with open_store(data_dir) as store:
            return [p.to_json() for p in await preservations(store, utc_now())]

    for item in asyncio.run(run()):
        click.echo(json.dumps(item))


@click.command("sweep")
@DATA_DIR
def sweep_command(data_dir: Path) -> None:
    """Run the retention sweep now with the dials of the policy the relay last started with
    (a running relay also sweeps every hour). Prints what it deleted; audited if anything."""

    async def run() -> dict[str, object]:
        async with open_store(data_dir) as store:
            saved = await store.get_meta(RETENTION_META)
            retention = (
                msgspec.json.decode(saved, type=Retention) if saved is not None else Retention()
            )
            result = await sweep(store, retention, utc_now(), data_dir / "outbox")
            return {
                "deleted": msgspec.to_builtins(result),
                "policy": msgspec.to_builtins(retention),
            }

    click.echo(json.dumps(asyncio.run(run())))
