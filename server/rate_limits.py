"""Rate limits as data (docs/POLICY.md "Limits"): each is a row of the policy's `[limits]`
table — how many per period — checked in memory with a token bucket per key (an address,
an account), as Signal-Server's leaky-bucket limiters do. Time is passed in (the relay's
injected clock), so tests move it.

A bucket holds up to ``count`` tokens and refills ``count`` per ``period``: a burst of
``count`` is allowed, then one more every ``period / count``. Memory is bounded: buckets that
have refilled completely are forgotten (they'd say the same as a new one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol.policy import Limits

#: Buckets kept per limiter before the full ones are dropped.
MAX_KEYS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # seconds since the epoch of the last update


class RateLimiter:
    """One limit: ``count`` per ``period`` for each key."""

    def __init__(self, name: str, count: int, period: timedelta) -> None:
        self.name = name
        self.count = count
        self._rate = count / period.total_seconds()  # tokens per second
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str, now: datetime) -> bool:
        """Take one token for ``key`` at ``now``; False (and nothing taken) if none is left."""
        t = now.timestamp()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._forget_full(t)
            bucket = self._buckets[key] = _Bucket(float(self.count), t)
        else:
            bucket.tokens = min(self.count, bucket.tokens + (t - bucket.at) * self._rate)
            bucket.at = t
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _forget_full(self, t: float) -> None:
        self._buckets = {
            k: b
            for k, b in self._buckets.items()
            if b.tokens + (t - b.at) * self._rate < self.count
        }
        if len(self._buckets) >= MAX_KEYS:  # all busy: drop the oldest half
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1].at)[MAX_KEYS // 2 :]
            self._buckets = dict(keep)


class RelayLimits:
    """The relay's per-minute and per-hour limits, from the policy's `[limits]` table."""

    def __init__(self, limits: Limits) -> None:
        hour, minute = timedelta(hours=1), timedelta(minutes=1)
        self.registrations = RateLimiter(
            "registrations", limits.registrations_per_address_per_hour, hour
        )
        self.searches = RateLimiter("searches", limits.searches_per_minute, minute)
        self.bundles = RateLimiter("bundles", limits.bundle_fetches_per_minute, minute)
