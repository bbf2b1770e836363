"""Limits that hold under abuse (issue 10), on a real relay with the policy's `[limits]`
rows set low: registrations per address per hour, searches and key-bundle fetches per
minute, and what may wait for one recipient and from one sender to one recipient — each
refused with its own code, each recovering when time passes or the queue drains, nothing
already accepted ever dropped."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest

from client.errors import ClientError
from client.events import MessageReceived
from server.policy.loader import PRESETS_DIR
from server.rate_limits import MAX_KEYS, RateLimiter
from server.social.search_index import SearchIndex
from tests.server.raw import Person
from tests.support import (
    Clock,
    Relay,
    collect,
    make_profile,
    open_client,
    open_clients,
    refused,
    send_and_wait,
    utc,
    years_ago,
)

ADULT, ADULT2 = years_ago(40), years_ago(35)


def low_limits(tmp_path, **rows: int) -> str:
    """`default` with the given `[limits]` rows changed (each is in the preset)."""
    lines = (PRESETS_DIR / "default.toml").read_text(encoding="utf-8").splitlines()
    for key, value in rows.items():
        (at,) = [n for n, line in enumerate(lines) if line.startswith(f"{key} = ")]
        lines[at] = f"{key} = {value}"
    path = tmp_path / "low.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_token_bucket_allows_a_burst_then_one_per_interval_and_stays_bounded():
    limiter = RateLimiter("searches", 3, timedelta(minutes=1))
    t = utc(2026, 1, 1)
    assert [limiter.allow("ann", t) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("bob", t)  # per key
    assert not limiter.allow("ann", t + timedelta(seconds=19))
    assert limiter.allow("ann", t + timedelta(seconds=21))  # one back every 20 s
    for n in range(MAX_KEYS + 10):  # many keys: full buckets are forgotten, memory bounded
        limiter.allow(f"k{n}", t + timedelta(hours=1, seconds=n))
    assert len(limiter._buckets) <= MAX_KEYS


def test_the_search_index_finds_by_handle_and_name_prefix():
    index = SearchIndex()
    index.rebuild({f"user{n:05d}": f"Person {n}" for n in range(6000)})
    index.add("zed", "Zoë Adams")
    assert list(index.prefixed("user0000")) == [f"user0000{n}" for n in range(10)]
    assert list(index.prefixed("ZOË")) == ["zed"]
    assert list(index.prefixed("person 5999")) == ["user05999"]
    assert next(index.prefixed("u")) == "user00000"  # the walk starts at the first match


async def test_registrations_from_one_address_are_limited_per_hour(tmp_path):
    clock = Clock()
    relay = await Relay(
        tmp_path / "relay",
        clock=clock,
        policy=low_limits(tmp_path, registrations_per_address_per_hour=3),
        # Counted on loopback too (by default this machine's own registrations aren't).
        limit_loopback_registrations=True,
    ).start()
    try:
        for n in range(3):
            await Person(f"ok{n}").register(relay)
        with pytest.raises(AssertionError, match="registration_limited"):
            await Person("one_too_many").register(relay)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{relay.url}/v1/accounts", data=b"{}") as response,
        ):
            assert response.status == 429  # junk is refused the same, before it is read
        # (The bucket refills one every 20 minutes: the token-bucket test above checks that;
        # moving the clock that far here would make the next declaration stale.)
    finally:
        await relay.stop()


async def test_searches_and_bundle_fetches_are_limited_per_minute(tmp_path):
    clock = Clock()
    policy = low_limits(tmp_path, searches_per_minute=2, bundle_fetches_per_minute=2)
    relay = await Relay(tmp_path / "relay", clock=clock, policy=policy).start()
    try:
        ann = await make_profile(tmp_path, relay.url, "ann", ADULT)
        bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
        async with open_clients(ann, bob) as (a, _b):
            assert [p.handle for p in await a.search("bo")] == ["bob"]
            await a.search("bo")
            assert await refused(a.search("bo")) == "search_limited"
            await a.fetch_bundle("bob", one_time_prekey=False)
            await a.fetch_bundle("bob", one_time_prekey=False)
            assert await refused(a.fetch_bundle("bob", one_time_prekey=False)) == "bundle_limited"
            clock.advance(minutes=1)
            assert [p.handle for p in await a.search("bo")] == ["bob"]
            await a.fetch_bundle("bob", one_time_prekey=False)
    finally:
        await relay.stop()


async def test_what_waits_for_a_recipient_is_bounded_and_nothing_accepted_is_lost(tmp_path):
    policy = low_limits(tmp_path, messages_waiting_per_pair=3, messages_waiting_per_recipient=5)
    relay = await Relay(tmp_path / "relay", policy=policy).start()
    try:
        ann = await make_profile(tmp_path, relay.url, "ann", ADULT)
        bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
        cal = await make_profile(tmp_path, relay.url, "cal", years_ago(50))
        dan = await make_profile(tmp_path, relay.url, "dan", years_ago(30))
        async with open_clients(ann, bob, cal, dan) as (a, _b, c, d):
            for sender in (a, c):
                await sender.contact_request("dan")
                await d.respond(sender.handle, accept=True)
        # dan is offline: ann may leave 3, then the pair is full; cal 2 more fill dan's queue.
        async with open_clients(ann, cal) as (a, c):
            for n in range(3):
                await send_and_wait(a, "dan", f"ann {n}")
            with pytest.raises(ClientError) as full:
                await send_and_wait(a, "dan", "ann 3")
            assert full.value.code == "quota_exceeded"
            for n in range(2):
                await send_and_wait(c, "dan", f"cal {n}")
            assert await refused(send_and_wait(c, "dan", "cal 2")) == "quota_exceeded"
        # Counted again from the store after a restart: still full.
        await relay.stop()
        relay = await Relay(tmp_path / "relay", port=relay.port, policy=policy).start()
        async with open_clients(cal) as (c,):
            assert await refused(send_and_wait(c, "dan", "cal 3")) == "quota_exceeded"
        # dan comes back: everything accepted arrives, once; then there is room again.
        async with open_client(dan) as d:
            await d.wait_connected()
            events = await collect(d, 10, timeout=3)  # five messages, and lines
            got = [
                e.message.body
                for e in events
                if isinstance(e, MessageReceived) and e.message.kind == "message"
            ]
            assert sorted(got) == ["ann 0", "ann 1", "ann 2", "cal 0", "cal 1"]
        async with open_clients(ann) as (a,):
            await send_and_wait(a, "dan", "ann again")
    finally:
        await relay.stop()
