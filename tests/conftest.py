from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest_asyncio

from tests.support import Relay


def _midday_zone() -> str:
    """A fixed-offset time zone (POSIX TZ, whose sign is inverted) where it is about noon
    now.

    A minor's client tells the relay its UTC offset and the grooming-risk signals score
    messages sent at night in the minor's local time (docs/SIGNALS.md): run at night on a
    UTC machine, tests that expect an exact score, finding or evidence list failed. A test
    run takes minutes, so noon stays day throughout; tests about the night feature give
    their clients an offset of their own (tests/e2e/test_signals_relay.py)."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12  # hours east of UTC, -12..11
    return f"TST{-offset:+d}"


# Before any test, and inherited by every process a test starts (the CLI, the relay).
os.environ["TZ"] = _midday_zone()
time.tzset()


@pytest_asyncio.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    running = await Relay(tmp_path / "relay").start()
    try:
        yield running
    finally:
        await running.stop()
