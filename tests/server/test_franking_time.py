"""The franking timestamp (PROTOCOL.md §6.4): whole microseconds since the epoch, exactly."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol.crypto.franking import timestamp_micros


def test_timestamp_micros_is_exact_whole_microseconds_since_the_epoch():
    assert timestamp_micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    moment = datetime(2026, 11, 23, 15, 0, 1, 250000, tzinfo=UTC)
    assert timestamp_micros(moment) == calendar.timegm(moment.timetuple()) * 10**6 + 250000
    # The offset is honoured, and there is no float on the way (this one a float would round).
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert timestamp_micros(last) == calendar.timegm(last.timetuple()) * 10**6 + 999999
    shifted = last.astimezone(timezone(timedelta(hours=-5)))
    assert timestamp_micros(shifted) == timestamp_micros(last)
    with pytest.raises(ValueError):
        timestamp_micros(datetime(2026, 11, 23))
