"""`agechat admin legal-export`: what the relay holds about one account over a range of days,
packaged for a disclosure under legal process (docs/MODERATION.md "What each mode yields to a
report and to legal process").

The package is a new owner-only directory (0700, files 0600): account.json, contacts.json,
messages.json, evidence.json and, written last, manifest.json with every other file's size
and SHA-256. Then one audit entry records who exported what under which process, with every
file's SHA-256 (manifest included); if it can't be written the package is removed and the
command fails. The package never holds anything the relay can't read: no end-to-end
encrypted body, no franking commitment, no key but public ones, and an encrypted message's
text only when its recipient reported it with franking evidence the relay verified
(server/admin/legal_export_data.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import click

from server.admin.data_dir import DATA_DIR, open_store
from server.admin.legal_export_data import Request, UnknownAccount, gather
from server.config import utc_now
from server.safety.audit import append_in
from server.safety.evidence import KEY_FILE, EvidenceSealer

#: What a package never contains (the manifest says it in these words).
NEVER_CONTAINS = (
    "Never anything the relay cannot read: no end-to-end encrypted message body (ciphertext, "
    "even while undelivered), no franking commitment or key, and no encrypted message's text "
    "except one its recipient reported and the relay verified by franking."
)
MANIFEST = "manifest.json"


def _day(value: str, hint: str) -> date:
    try:
        if len(value) != len("YYYY-MM-DD"):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not YYYY-MM-DD", param_hint=hint) from None


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in the environment or the password database
        return f"uid:{os.getuid()}"


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise click.BadParameter(
            f"{out} exists and is not an empty directory: a package is never written over anything",
            param_hint="--out",
        )


def _sealer(data_dir: Path) -> EvidenceSealer:
    """The data directory's evidence key, never a new one (that would open nothing)."""
    if not (data_dir / KEY_FILE).exists():
        raise click.ClickException(f"no evidence key {data_dir / KEY_FILE}: can't open evidence")
    return EvidenceSealer.for_data_dir(data_dir)


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def _write(folder: Path, name: str, data: bytes) -> None:
    """A new file (never an existing one), 0600 whatever the umask, on disk when it returns."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _sync_dir(folder: Path) -> None:
    """The package's names on disk too, before the audit entry says it exists."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(folder: Path, names: list[str], made: bool) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):
            folder.rmdir()


async def export(data_dir: Path, request: Request, out: Path) -> dict[str, Any]:
    """Write the package for ``request`` into ``out`` (absent or empty) and audit it."""
    async with open_store(data_dir) as store:
        sealer: EvidenceSealer | None = None

        def open_sealed(sealed: bytes) -> str:
            nonlocal sealer
            sealer = sealer or _sealer(data_dir)
            return sealer.open(sealed)

        now = utc_now()
        try:
            files = await gather(store.reader, request, now, open_sealed)
        except UnknownAccount:
            raise click.ClickException(f"no account @{request.handle}") from None

        _check_out(out)  # again, just before writing: nothing is ever written over
        made = not out.exists()
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        out.chmod(0o700)
        written: list[str] = []
        digests: dict[str, str] = {}
        try:
            manifest_files: dict[str, dict[str, Any]] = {}
            for name, content in files.items():
                data = _encode(content)
                _write(out, name, data)
                written.append(name)
                digests[name] = hashlib.sha256(data).hexdigest()
                manifest_files[name] = {"size": len(data), "sha256": digests[name]}
            operator = _operator()
            manifest = {
                "request": request.to_json(),
                "files": manifest_files,
                "exported_by": operator,
                "exported_at": now.isoformat(),
                "relay_id": await store.get_meta("relay_id"),
                "range": "messages, evidence, login addresses and reports are those from the "
                "first day 00:00 UTC to the end of the last day (UTC); the account, its band "
                "history, contacts and blocks are as the relay holds them at export",
                "never_contains": NEVER_CONTAINS,
            }
            data = _encode(manifest)
            _write(out, MANIFEST, data)
            written.append(MANIFEST)
            digests[MANIFEST] = hashlib.sha256(data).hexdigest()
            _sync_dir(out)
            detail = {
                **request.to_json(),
                "operator": operator,
                "out": str(out.resolve()),
                "files": digests,
            }
            async with store.transaction() as db:
                entry = await append_in(db, "admin", "legal_export", request.handle, detail, now)
        except BaseException:
            # No package stands without its audit entry.
            _remove(out, written, made)
            raise
    return {"out": str(out), "files": digests, "audit_seq": entry.seq}


@click.command("legal-export")
@DATA_DIR
@click.option(
    "--account", "handle", required=True, metavar="HANDLE", help="The account named by the process."
)
@click.option("--from", "first", required=True, metavar="YYYY-MM-DD", help="First day (UTC).")
@click.option("--to", "last", required=True, metavar="YYYY-MM-DD", help="Last day (UTC).")
@click.option(
    "--process", required=True, help="The legal process it answers (recorded and audited)."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="A new (or empty) directory for the package.",
)
def legal_export_command(
    data_dir: Path, handle: str, first: str, last: str, process: str, out: Path
) -> None:
    """Package what the relay holds about one account from one day to another (inclusive,
    UTC) for a disclosure under legal process: registration, band history, login addresses,
    contacts, blocks, reports, message metadata, text only where the relay can read it and
    still holds it, and case evidence. Never an encrypted message's body; its text only when
    its recipient reported it and franking verified it. Audited."""
    request = Request(handle, _day(first, "--from"), _day(last, "--to"), process)
    if request.first > request.last:
        raise click.BadParameter(f"--from {first} is after --to {last}", param_hint="--from/--to")
    if not process.strip():
        raise click.BadParameter("name the legal process", param_hint="--process")
    _check_out(out)
    click.echo(json.dumps(asyncio.run(export(data_dir, request, out))))
