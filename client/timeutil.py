"""The client's default clock (injected everywhere else)."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
