"""Looking an account up (a key bundle, a safety number) is a contact attempt like any other:
refusals on a minor count towards restriction, and strangers' lookups are rate-limited so the
relay is no free age-and-existence oracle (issue 9, defects 1 and 2)."""

from __future__ import annotations

import pytest_asyncio

from tests.support import Relay, make_profile, open_clients, refused, send_and_wait, years_ago

ADULT, TEEN14 = years_ago(40), years_ago(14)
LOOKUPS_PER_DAY = 100  # policies/default.toml: limits.lookups_per_day


@pytest_asyncio.fixture
async def relay(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    yield relay
    await relay.stop()


async def test_refused_direct_messages_to_minors_restrict_an_adult(relay, tmp_path):
    """The demo's stranger path: an adult's client asks for a minor's bundle before its
    first message, and that refusal must count like a refused request."""
    stranger = await make_profile(tmp_path, relay.url, "stan", ADULT)
    kids = [await make_profile(tmp_path, relay.url, f"kid{i}", TEEN14) for i in range(6)]
    async with open_clients(stranger) as (s,):
        threshold = 5  # default.toml: refused_or_declined_requests_to_minors
        for kid in kids[:threshold]:
            assert await refused(send_and_wait(s, kid.handle, "hi")) == "contact_not_allowed"
        assert await refused(s.contact_request(kids[-1].handle)) == "sender_restricted"


async def test_refused_safety_number_lookups_of_minors_count_too(relay, tmp_path):
    stranger = await make_profile(tmp_path, relay.url, "stan", ADULT)
    kids = [await make_profile(tmp_path, relay.url, f"kid{i}", TEEN14) for i in range(6)]
    async with open_clients(stranger) as (s,):
        for kid in kids[:5]:
            assert await refused(s.safety_number(kid.handle)) == "contact_not_allowed"
        assert await refused(s.contact_request(kids[-1].handle)) == "sender_restricted"


async def test_strangers_lookups_are_rate_limited_whatever_the_answer(relay, tmp_path):
    prober = await make_profile(tmp_path, relay.url, "probe", ADULT)
    friend = await make_profile(tmp_path, relay.url, "friend", ADULT)
    await make_profile(tmp_path, relay.url, "kid", TEEN14)
    async with open_clients(prober, friend) as (p, f):
        await f.contact_request("probe")
        await p.respond("friend", accept=True)
        for i in range(LOOKUPS_PER_DAY):
            assert await refused(p.fetch_bundle(f"nobody{i}")) == "unknown_recipient"
        # Past the limit every stranger lookup gets the same answer: existing or not,
        # minor or adult.
        assert await refused(p.fetch_bundle("nobodyelse")) == "rate_limited"
        assert await refused(p.fetch_bundle("kid")) == "rate_limited"
        # A contact's bundle is no lookup of a stranger: still served.
        bundle = await p.fetch_bundle("friend", one_time_prekey=False)
        assert bundle.mode == "e2ee"


async def test_blocking_a_minor_first_is_no_way_to_their_bundle(relay, tmp_path):
    stranger = await make_profile(tmp_path, relay.url, "stan", ADULT)
    kids = [await make_profile(tmp_path, relay.url, f"kid{i}", TEEN14) for i in range(6)]
    async with open_clients(stranger) as (s,):
        for kid in kids[:5]:
            await s.block(kid.handle)
            assert await refused(s.fetch_bundle(kid.handle)) == "contact_not_allowed"
            await s.unblock(kid.handle)
        assert await refused(s.contact_request(kids[-1].handle)) == "sender_restricted"


async def test_asking_the_same_minor_three_ways_counts_once(relay, tmp_path):
    """Bundle, safety number and a send to one minor on one day are one attempt."""
    stranger = await make_profile(tmp_path, relay.url, "stan", ADULT)
    kids = [await make_profile(tmp_path, relay.url, f"kid{i}", TEEN14) for i in range(6)]
    async with open_clients(stranger) as (s,):
        for kid in kids[:4]:
            assert await refused(s.fetch_bundle(kid.handle)) == "contact_not_allowed"
            assert await refused(s.safety_number(kid.handle)) == "contact_not_allowed"
            assert await refused(s.contact_request(kid.handle)) == "contact_not_allowed"
        # Four minors so far: not restricted yet (the threshold is five).
        assert await refused(s.contact_request(kids[4].handle)) == "contact_not_allowed"
        assert await refused(s.contact_request(kids[5].handle)) == "sender_restricted"


async def test_messages_and_requests_to_strangers_count_as_lookups(relay, tmp_path):
    """Sends and contact requests answer "adult, minor or nobody" too: they share the
    lookup limit, so past it they all get the same answer."""
    from protocol.frames import ContactRequest

    prober = await make_profile(tmp_path, relay.url, "probe", ADULT)
    await make_profile(tmp_path, relay.url, "kid", TEEN14)
    async with open_clients(prober) as (p,):
        for i in range(LOOKUPS_PER_DAY):
            frame = ContactRequest(rid=f"probe-rid-{i:04d}", to=f"nobody{i}")
            assert await refused(p._connection.request(frame, frame.rid)) == "unknown_recipient"
        for to in ("nobodyelse", "kid"):
            frame = ContactRequest(rid=f"probe-last-{to}", to=to)
            assert await refused(p._connection.request(frame, frame.rid)) == "rate_limited"
