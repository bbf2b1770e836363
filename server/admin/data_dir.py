"""Opening a relay's data directory from an admin command (the relay may be running)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import click

from server.config import RelayConfig
from server.delivery.store import SqliteStore

#: The option every admin command takes.
DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The relay's data directory.",
)


@asynccontextmanager
async def open_store(data_dir: Path) -> AsyncIterator[SqliteStore]:
    path = RelayConfig(data_dir=data_dir).database_path
    if not path.exists():
        raise click.ClickException(f"no relay data in {data_dir}")
    store = SqliteStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
