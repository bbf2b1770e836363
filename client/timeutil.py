"""The client's default clock (injected everywhere else)."""

from datetime import UTC, datetime, timedelta


def utc_now() -> datetime:
    return datetime.now(UTC)


def local_utc_offset() -> timedelta:
    """This machine's local time minus UTC, now (daylight saving included)."""
    return datetime.now().astimezone().utcoffset() or timedelta(0)
