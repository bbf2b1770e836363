"""`agechat admin bank add | list`: the hash banks of known material the relay matches
`visible` attachments against (server/safety/hashing/, docs/MODERATION.md). Audited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from protocol.policy import HashMatching
from server.admin.data_dir import DATA_DIR, open_store
from server.config import utc_now
from server.delivery.store import SqliteStore
from server.safety.audit import append_in
from server.safety.hashing.banks import (
    BankEntry,
    BankError,
    append_entries,
    bank_counts,
    banks_dir,
    check_bank_name,
    check_label,
    existing_hashes,
    locked,
)
from server.safety.hashing.signals import SIGNALS, Signal

_APPLY = "A running relay reads the banks when it starts: restart it to apply a change."


def _bank_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_bank_name(value)
    except BankError as e:
        raise click.BadParameter(str(e)) from None


def _label(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_label(value)
    except BankError as e:
        raise click.BadParameter(str(e)) from None


@click.group("bank", epilog=_APPLY)
def bank_group() -> None:
    """Hash banks of known material, matched against every attachment the relay can read
    (`visible` conversations). Banks live in DATA_DIR/banks/BANK/{pdq,sha256,md5}.txt."""


@bank_group.command("add", epilog=_APPLY)
@DATA_DIR
@click.option("--label", default="", callback=_label, help="Text kept with each hash added.")
@click.option(
    "--pdq-min-quality",
    type=click.IntRange(0, 100),
    default=HashMatching().pdq_min_quality,
    show_default=True,
    help="Images below this PDQ quality get no PDQ entry (the default policy's floor).",
)
@click.argument("bank", callback=_bank_name)
@click.argument(
    "files",
    metavar="FILE...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
def bank_add(data_dir: Path, label: str, pdq_min_quality: int, bank: str, files: tuple) -> None:
    """Hash each FILE into BANK (created if new): PDQ for images of enough quality, SHA-256
    and MD5 for every file. Prints one JSON line per file with its hashes and which were
    new to the bank. Audited (`bank_add`, with the hashes added)."""
    from server.safety.hashing.hashes import hash_file  # numpy, Pillow, pdqhash: on use

    hashed = [(path, hash_file(path)) for path in files]
    for path, hashes in hashed:
        if hashes["pdq"] is not None and int(hashes["pdq_quality"] or 0) < pdq_min_quality:
            hashes["pdq_skipped"] = "low_quality"
            click.echo(
                f"{path}: PDQ quality {hashes['pdq_quality']} is below {pdq_min_quality}: "
                "too featureless to match reliably, so only its exact hashes are added",
                err=True,
            )
    lines = asyncio.run(_add(data_dir, bank, label, hashed))
    for line in lines:
        click.echo(json.dumps(line))


async def _add(
    data_dir: Path, bank: str, label: str, hashed: list[tuple[Path, dict]]
) -> list[dict[str, object]]:
    bank_dir = banks_dir(data_dir) / bank
    async with open_store(data_dir) as store:
        with locked(bank_dir):
            try:
                held = {s: existing_hashes(bank_dir, s) for s in SIGNALS}
            except BankError as e:
                raise click.ClickException(str(e)) from None
            new: dict[Signal, list[BankEntry]] = {s: [] for s in SIGNALS}
            lines = []
            for path, hashes in hashed:
                added = []
                for signal in SIGNALS:
                    value = hashes[signal]
                    if value is None or (signal == "pdq" and hashes["pdq_skipped"]):
                        continue
                    if value not in held[signal]:
                        held[signal].add(value)
                        new[signal].append(BankEntry(value, label))
                        added.append(signal)
                lines.append({"file": str(path), "bank": bank, **hashes, "added": added})
            detail = {
                "files": len(hashed),
                "label": label,
                "added": {s: [e.hash for e in new[s]] for s in SIGNALS},
            }
            # The audit entry and the bank lines together: the lines are written and flushed
            # to disk inside the transaction, so a failed write leaves no audit entry.
            async with store.transaction() as db:
                await append_in(db, "admin", "bank_add", bank, detail, utc_now())
                for signal in SIGNALS:
                    append_entries(bank_dir, signal, new[signal])
    return lines


@bank_group.command("list", epilog=_APPLY)
@DATA_DIR
def bank_list(data_dir: Path) -> None:
    """Print each bank with the number of hashes per signal type, one JSON line per bank.
    A malformed bank line is an error naming the file and line (the relay would refuse to
    start on it too). Audited (`bank_list`)."""

    async def run() -> dict[str, dict[str, int]]:
        async with open_store(data_dir) as store:
            try:
                counts = await asyncio.to_thread(bank_counts, banks_dir(data_dir))
            except BankError as e:
                raise click.ClickException(str(e)) from None
            await _audit_list(store, counts)
            return counts

    for bank, counts in asyncio.run(run()).items():
        click.echo(json.dumps({"bank": bank, **counts}))


async def _audit_list(store: SqliteStore, counts: dict[str, dict[str, int]]) -> None:
    async with store.transaction() as db:
        await append_in(db, "admin", "bank_list", "banks", {"banks": counts}, utc_now())
