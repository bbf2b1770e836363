"""`agechat admin`: operator actions on a relay's data directory (audited).

They write the database directly (the relay may be running: SQLite waits for its lock) and
bump `meta.generation` where a running relay must reload what changed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date
from pathlib import Path

import click

from protocol.moderation import ROLES
from server.admin.age_corrections import set_birthdate
from server.admin.bank_commands import bank_group
from server.admin.data_dir import DATA_DIR, open_store
from server.admin.legal_export import legal_export_command
from server.admin.retention_commands import preservations_command, preserve_command, sweep_command
from server.admin.roles import change_role
from server.safety.audit import AuditLog


@click.group("admin")
def admin_group() -> None:
    """Operator actions on a relay's data (audited)."""


for _command in (
    preserve_command,
    preservations_command,
    sweep_command,
    legal_export_command,
    bank_group,
):
    admin_group.add_command(_command)


@admin_group.command("set-birthdate")
@DATA_DIR
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


@admin_group.command("grant-role")
@DATA_DIR
@click.argument("handle")
@click.argument("role", type=click.Choice(ROLES))
def admin_grant_role(data_dir: Path, handle: str, role: str) -> None:
    """Give HANDLE a moderation ROLE (audited; a running relay picks it up within a second)."""
    click.echo(json.dumps(asyncio.run(change_role(data_dir, handle, role, grant=True))))


@admin_group.command("revoke-role")
@DATA_DIR
@click.argument("handle")
@click.argument("role", type=click.Choice(ROLES))
def admin_revoke_role(data_dir: Path, handle: str, role: str) -> None:
    """Take a moderation ROLE from HANDLE (audited)."""
    click.echo(json.dumps(asyncio.run(change_role(data_dir, handle, role, grant=False))))


@admin_group.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@DATA_DIR
@click.option(
    "--expect",
    metavar="SEQ:HASH",
    help="A head printed by an earlier verify and kept elsewhere: the chain must still pass "
    "through it (this is what catches a rewritten log).",
)
def audit_verify(data_dir: Path, expect: str | None) -> None:
    """Check every entry's hash and link. Exit 0 when intact (printing the entry count and
    the head as SEQ:HASH to keep elsewhere); exit 1 naming the first entry altered, removed
    or reordered."""
    expected: tuple[int, bytes] | None = None
    if expect is not None:
        seq, _, digest = expect.partition(":")
        try:
            expected = (int(seq), bytes.fromhex(digest))
        except ValueError:
            raise click.BadParameter("expected SEQ:HASH", param_hint="--expect") from None
        # An empty or zero head would check nothing: say so rather than pass.
        if expected[0] < 1 or len(expected[1]) != 32:
            raise click.BadParameter(
                "expected SEQ:HASH with SEQ ≥ 1 and a 64-digit hash, as verify printed it",
                param_hint="--expect",
            )

    async def run() -> tuple[int, bytes, object]:
        async with open_store(data_dir) as store:
            return await AuditLog(store).verify(expected)

    entries, head, problem = asyncio.run(run())
    if problem is None:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "entries": entries,
                    "head": head.hex(),
                    "keep": f"{entries}:{head.hex()}",
                }
            )
        )
        return
    click.echo(
        json.dumps(
            {
                "error": {
                    "code": "audit_broken",
                    "message": problem.sentence(),  # type: ignore[attr-defined]
                    "entry": problem.seq,  # type: ignore[attr-defined]
                }
            }
        )
    )
    sys.exit(1)
