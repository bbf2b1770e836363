"""Fixtures shared by the in-process relay tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.delivery.store import SqliteStore


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store for a `SocialService` built in the test (no relay around it)."""
    store = SqliteStore(tmp_path / "relay.sqlite")
    await store.open()
    yield store
    await store.close()
