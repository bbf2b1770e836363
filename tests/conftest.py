from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.support import Relay


@pytest_asyncio.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    running = await Relay(tmp_path / "relay").start()
    try:
        yield running
    finally:
        await running.stop()
