"""The policy enforced by a real relay, through the client library: every bypass path is
refused with its code under `default`, the legitimate paths work, and `open` lets every one
of them through (the rules come from the policy, not from code paths)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sqlite3

import pytest
import pytest_asyncio

from client.errors import ClientError
from protocol.frames import RELAY_HANDLE
from server.app_keys import SOCIAL
from tests.support import (
    Clock,
    Relay,
    drain,
    make_profile,
    open_clients,
    refused,
    send_and_wait,
    years_ago,
)

ADULT, ADULT2, TEEN14, TEEN16 = years_ago(40), years_ago(45), years_ago(14), years_ago(16)


async def start_relay(tmp_path, policy: str = "default", clock=None) -> Relay:
    return await Relay(tmp_path / "relay", policy=policy, clock=clock).start()


@pytest_asyncio.fixture
async def default_relay(tmp_path):
    relay = await start_relay(tmp_path)
    yield relay
    await relay.stop()


@pytest_asyncio.fixture
async def open_relay(tmp_path):
    relay = await start_relay(tmp_path, "open")
    yield relay
    await relay.stop()




def texts(events, kind: str = "message") -> list[str]:
    return [e.message.body for e in events if e.message.kind == kind]


def codes(events) -> list[str]:
    return [e.message.code for e in events if e.message.kind != "message"]


# --- default: each bypass path is refused with its code ---------------------------------------


async def test_adult_cannot_message_or_request_an_unconnected_minor(default_relay, tmp_path):
    stranger = await make_profile(tmp_path, default_relay.url, "stranger", ADULT)
    maya = await make_profile(tmp_path, default_relay.url, "maya", TEEN14)
    async with open_clients(stranger, maya) as (s, m):
        assert await refused(send_and_wait(s, "maya", "hi there")) == "contact_not_allowed"
        assert await refused(s.contact_request("maya")) == "contact_not_allowed"
        assert (
            await s.history.get(
                "stranger", (await s.history.conversation("dm:maya:stranger"))[0].msg_id
            )
        ).state == "failed"
        assert await drain(m) == []  # nothing reached her, not even a request


async def test_adults_cannot_find_minors_by_prefix_or_exact_handle(default_relay, tmp_path):
    stranger = await make_profile(tmp_path, default_relay.url, "stranger", ADULT)
    maya = await make_profile(tmp_path, default_relay.url, "maya", TEEN14)
    await make_profile(tmp_path, default_relay.url, "mark", ADULT2)
    async with open_clients(stranger, maya) as (s, m):
        assert [p.handle for p in await s.search("ma")] == ["mark"]
        assert await s.search("maya") == []
        assert [p.handle for p in await s.search("Maya")] == []  # display name too
        # A minor can find the adult.
        assert [p.handle for p in await m.search("stranger")] == ["stranger"]


async def test_minor_cannot_redeclare_as_adult(default_relay, tmp_path):
    maya = await make_profile(tmp_path, default_relay.url, "maya", TEEN14)
    async with open_clients(maya) as (m,):
        assert await refused(m.set_birthdate(years_ago(30))) == "age_change_requires_assurance"
        assert await refused(m.set_birthdate(years_ago(17))) == "age_change_requires_assurance"
        # A younger or equal band is self-service.
        assert await m.set_birthdate(years_ago(13, days=-30)) == "birthdate_changed"


async def test_registration_under_13_is_refused(default_relay, tmp_path):
    with pytest.raises(ClientError) as info:
        await make_profile(tmp_path, default_relay.url, "tiny", years_ago(12))
    assert info.value.code == "under_minimum_age"
    assert not (tmp_path / "tiny" / "profile.json").exists()


async def test_a_blocked_account_cannot_reach_the_blocker_and_is_not_told(default_relay, tmp_path):
    ana = await make_profile(tmp_path, default_relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, default_relay.url, "ben", ADULT2)
    async with open_clients(ana, ben) as (a, b):
        await b.contact_request("ana")
        await a.respond("ben", accept=True)
        await drain(a)
        await a.block("ben")
        stored = await send_and_wait(b, "ana", "can you hear me?")  # looks delivered to ben
        assert stored.state == "sent"
        # A contact request gets exactly the answer it would get without the block.
        assert await refused(b.contact_request("ana")) == "already_connected"
        after_block = await drain(a)
        assert texts(after_block) == [] and codes(after_block) == []
        assert [c.state for c in await a.contacts() if c.handle == "ben"] == ["blocked"]
        assert await refused(send_and_wait(a, "ben", "bye")) == "you_blocked"
        await a.unblock("ben")
        await send_and_wait(b, "ana", "back again")
        assert texts(await drain(a)) == ["back again"]


async def test_accepted_says_whether_a_message_goes_as_a_request_block_or_not(
    default_relay, tmp_path
):
    """`accepted.request` (issue 9, defect 8): true for a stranger's first message, and the
    same for a stranger the recipient blocked, whose message is dropped unseen."""
    ana = await make_profile(tmp_path, default_relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, default_relay.url, "ben", ADULT2)
    cat = await make_profile(tmp_path, default_relay.url, "cat", ADULT2)
    async with open_clients(ana, ben, cat) as (a, b, c):
        await a.block("cat")
        first = await send_and_wait(b, "ana", "hello, we met at the talk")
        blocked = await send_and_wait(c, "ana", "hello?")
        assert (first.request, blocked.request) == (True, True)
        await a.respond("ben", accept=True)
        assert (await send_and_wait(b, "ana", "thanks")).request is False


async def test_restricted_adult_then_tries_a_different_minor(default_relay, tmp_path):
    predator = await make_profile(tmp_path, default_relay.url, "pat", ADULT)
    niece = await make_profile(tmp_path, default_relay.url, "nia", TEEN16)
    targets = [await make_profile(tmp_path, default_relay.url, f"kid{i}", TEEN14) for i in range(6)]
    async with open_clients(predator, niece) as (p, n):
        # An existing, legitimate minor contact (the minor asked).
        await n.contact_request("pat")
        await p.respond("nia", accept=True)
        await drain(n)
        threshold = 5  # default.toml: refused_or_declined_requests_to_minors
        for kid in targets[:threshold]:
            assert await refused(p.contact_request(kid.handle)) == "contact_not_allowed"
        assert await refused(p.contact_request(targets[-1].handle)) == "sender_restricted"
        assert await refused(send_and_wait(p, targets[-1].handle, "hi")) == "sender_restricted"
        # The minor already connected is told, and sees it in her contacts.
        events = await drain(n)
        assert "contact_restricted" in codes(events)
        assert [c.restricted for c in await n.contacts() if c.handle == "pat"] == [True]
        # Adults are unaffected.
        assert await p.search("kid") == []


async def test_blocks_by_minors_restrict_an_adult(default_relay, tmp_path):
    adult = await make_profile(tmp_path, default_relay.url, "adam", ADULT)
    teens = [await make_profile(tmp_path, default_relay.url, f"teen{i}", TEEN16) for i in range(3)]
    async with open_clients(adult, *teens) as (a, *ts):
        for t in ts:
            await t.contact_request("adam")
            await a.respond(t.handle, accept=True)
        for t in ts[:2]:
            await t.block("adam")
        await ts[2].report("adam", "made me uncomfortable", last=0)  # the third distinct minor
        newcomer = await make_profile(tmp_path, default_relay.url, "newkid", TEEN14)
        async with open_clients(newcomer) as (nk,):
            await nk.contact_request("adam")
            assert await refused(a.respond("newkid", accept=True)) == "sender_restricted"


async def test_request_rate_limit(default_relay, tmp_path):
    sender = await make_profile(tmp_path, default_relay.url, "busy", ADULT)
    others = [
        await make_profile(tmp_path, default_relay.url, f"adult{i:02d}", ADULT2) for i in range(21)
    ]
    async with open_clients(sender) as (s,):
        for other in others[:20]:
            assert await s.contact_request(other.handle) == "requested"
        assert await refused(s.contact_request(others[20].handle)) == "rate_limited"


async def test_teen_request_rate_limit_is_lower_towards_minors(default_relay, tmp_path):
    teen = await make_profile(tmp_path, default_relay.url, "teena", TEEN16)
    peers = [await make_profile(tmp_path, default_relay.url, f"peer{i}", TEEN14) for i in range(6)]
    async with open_clients(teen) as (t,):
        for peer in peers[:5]:
            assert await t.contact_request(peer.handle) == "requested"
        assert await refused(t.contact_request(peers[5].handle)) == "rate_limited"


async def test_payload_mode_must_match_the_conversation(default_relay, tmp_path):
    """Ciphertext into a visible conversation is refused; the policy is asked first, so an
    unconnected adult learns nothing more from the mode than from the policy's refusal."""
    import aiohttp

    from protocol.codec import encode_frame
    from protocol.e2ee import Envelope, encode_body
    from protocol.frames import Error, Send
    from tests.server.test_websocket_input import login, receive

    def ciphertext(msg_id: str, to: str) -> Send:
        """A well-formed e2ee frame (random bytes in the envelope: the relay can't tell)."""
        body = encode_body(Envelope(os.urandom(100)))
        return Send(id=msg_id, to=to, mode="e2ee", body=body, commitment=os.urandom(32))

    ana = await make_profile(tmp_path, default_relay.url, "ana", ADULT)
    maya = await make_profile(tmp_path, default_relay.url, "maya", TEEN14)
    await make_profile(tmp_path, default_relay.url, "kim", TEEN16)
    async with open_clients(maya) as (m,):
        await m.contact_request("ana")
    async with open_clients(ana) as (a,):
        await a.respond("maya", accept=True)
    async with aiohttp.ClientSession() as session, session.ws_connect(default_relay.ws_url) as ws:
        await login(ws, ana)
        await ws.send_str(encode_frame(ciphertext("ciphertext-1", "maya")))
        reply = await receive(ws)
        while not isinstance(reply, Error):  # relay events from the setup may come first
            reply = await receive(ws)
        assert (reply.code, reply.ref) == ("mode_mismatch", "ciphertext-1")
        await ws.send_str(encode_frame(ciphertext("ciphertext-2", "kim")))
        reply = await receive(ws)
        while not isinstance(reply, Error):
            reply = await receive(ws)
        assert (reply.code, reply.ref) == ("contact_not_allowed", "ciphertext-2")


# --- default: the legitimate paths work -------------------------------------------------------


async def test_teen_requests_adult_relative_who_accepts_and_both_write(default_relay, tmp_path):
    maya = await make_profile(tmp_path, default_relay.url, "maya", TEEN14)
    dad = await make_profile(tmp_path, default_relay.url, "dad", ADULT)
    async with open_clients(maya, dad) as (m, d):
        assert await m.contact_request("dad") == "requested"
        incoming = await drain(d)
        assert codes(incoming) == ["contact_request"]
        assert [(c.handle, c.state) for c in await d.contacts()] == [("maya", "incoming_request")]
        assert await d.respond("maya", accept=True) == "connected"
        await send_and_wait(d, "maya", "dinner at 7")
        await send_and_wait(m, "dad", "ok!")
        maya_sees = await drain(m)
        assert texts(maya_sees) == ["dinner at 7"]
        assert "new_adult_contact" in codes(maya_sees)  # the notice for minors
        notice = next(e.message for e in maya_sees if e.message.code == "new_adult_contact")
        assert notice.kind == "notice" and notice.sender == RELAY_HANDLE
        assert texts(await drain(d)) == ["ok!"]
        assert [(c.state, c.mode) for c in await m.contacts()] == [("connected", "visible")]
        # Now connected, the adult can find her.
        assert [p.handle for p in await d.search("maya")] == ["maya"]


async def test_two_teens_connect_through_a_request(default_relay, tmp_path):
    ava = await make_profile(tmp_path, default_relay.url, "ava", TEEN14)
    zoe = await make_profile(tmp_path, default_relay.url, "zoe", TEEN16)
    async with open_clients(ava, zoe) as (a, z):
        # A first message from a stranger arrives as a message request.
        await send_and_wait(a, "zoe", "hi, we met at robotics club")
        got = await drain(z)
        assert texts(got) == ["hi, we met at robotics club"]
        first = next(e.message for e in got if e.message.kind == "message")
        assert first.request
        assert "message_request" in codes(got)  # the minor's notice
        assert await refused(send_and_wait(z, "ava", "hey")) == "request_awaiting_you"
        assert await z.respond("ava", accept=True) == "connected"
        await send_and_wait(z, "ava", "hey!")
        assert texts(await drain(a)) == ["hey!"]


async def test_two_adults_connect_and_a_declined_request_stays_declined(default_relay, tmp_path):
    ana = await make_profile(tmp_path, default_relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, default_relay.url, "ben", ADULT2)
    cal = await make_profile(tmp_path, default_relay.url, "cal", ADULT2)
    async with open_clients(ana, ben, cal) as (a, b, c):
        await send_and_wait(a, "ben", "hello Ben")
        await b.respond("ana", accept=True)
        await send_and_wait(b, "ana", "hi Ana")
        assert texts(await drain(a)) == ["hi Ana"]
        await c.contact_request("ana")
        assert await a.respond("cal", accept=False) == "declined"
        assert await refused(c.contact_request("ana")) == "request_declined"
        assert await refused(send_and_wait(c, "ana", "please")) == "request_declined"


async def test_report_is_stored_with_the_last_messages(default_relay, tmp_path):
    ana = await make_profile(tmp_path, default_relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, default_relay.url, "ben", ADULT2)
    async with open_clients(ana, ben) as (a, b):
        for i in range(7):
            await send_and_wait(b, "ana", f"spam {i}")
        await drain(a)
        attached = await a.report("ben", "spam", last=5)
        assert [m.body for m in attached] == [f"spam {i}" for i in range(2, 7)]
    with sqlite3.connect(default_relay.config.database_path) as db:
        reporter, reported, reason, evidence = db.execute(
            "SELECT reporter, reported, reason, evidence FROM reports"
        ).fetchone()
    assert (reporter, reported, reason) == ("ana", "ben", "spam")
    assert [m["text"] for m in json.loads(evidence)] == [f"spam {i}" for i in range(2, 7)]


# --- time: birthdays and admin changes --------------------------------------------------------


async def test_eighteenth_birthday_is_announced_in_both_conversations(tmp_path):
    clock = Clock()
    relay = await start_relay(tmp_path, clock=clock)
    try:
        almost = await make_profile(tmp_path, relay.url, "sam", years_ago(18, days=1))
        mum = await make_profile(tmp_path, relay.url, "mum", ADULT)
        async with open_clients(almost, mum) as (s, m):
            await s.contact_request("mum")
            await m.respond("sam", accept=True)
            await drain(s)
            await drain(m)
            clock.advance(days=2)
            await relay.app[SOCIAL].check_bands()  # what the relay's minute timer runs
            sam_sees, mum_sees = await drain(s), await drain(m)
            assert codes(sam_sees) == codes(mum_sees) == ["band_changed"]
            assert "to adult" in sam_sees[0].message.body  # he learns his own band
            assert "age group changed" in mum_sees[0].message.body  # she, only that it changed
    finally:
        await relay.stop()


async def test_a_minor_whose_contact_turns_18_is_told_as_if_an_adult_had_connected(tmp_path):
    """A birthday makes a teen's contact an adult: the teen gets the same `new_adult_contact`
    notice as when an adult connects (issue 9, defect 10)."""
    clock = Clock()
    relay = await start_relay(tmp_path, clock=clock)
    try:
        almost = await make_profile(tmp_path, relay.url, "sam", years_ago(18, days=1))
        kid = await make_profile(tmp_path, relay.url, "kit", TEEN16)
        async with open_clients(almost, kid) as (s, k):
            await k.contact_request("sam")
            await s.respond("kit", accept=True)
            await drain(s), await drain(k)
            clock.advance(days=2)  # sam turns 18
            await relay.app[SOCIAL].check_bands()
            kit_sees = await drain(k)
            assert codes(kit_sees) == ["band_changed", "new_adult_contact"]
            assert "is an adult" in kit_sees[1].message.body
            assert codes(await drain(s)) == ["band_changed"]
            await send_and_wait(k, "sam", "happy birthday")  # `default`: contacts go on
    finally:
        await relay.stop()


async def test_a_birthday_announcement_does_not_reveal_a_block(tmp_path):
    clock = Clock()
    relay = await start_relay(tmp_path, clock=clock)
    try:
        almost = await make_profile(tmp_path, relay.url, "sam", years_ago(18, days=1))
        kid = await make_profile(tmp_path, relay.url, "kit", TEEN16)
        async with open_clients(almost, kid) as (s, k):
            await k.contact_request("sam")
            await s.respond("kit", accept=True)
            await k.block("sam")
            await drain(s), await drain(k)
            clock.advance(days=2)
            await relay.app[SOCIAL].check_bands()
            (told,) = await drain(s)
            assert told.message.code == "band_changed"
            assert "visible to safety checks" in told.message.body
            assert "can't message" not in told.message.body
    finally:
        await relay.stop()


async def test_a_birthday_under_strict_ends_the_chat_and_says_so_at_once(tmp_path):
    clock = Clock()
    relay = await start_relay(tmp_path, "strict", clock=clock)
    try:
        almost = await make_profile(tmp_path, relay.url, "sam", years_ago(18, days=1))
        kid = await make_profile(tmp_path, relay.url, "kit", TEEN16)
        async with open_clients(almost, kid) as (s, k):
            await k.contact_request("sam")
            await s.respond("kit", accept=True)
            await drain(s), await drain(k)
            clock.advance(days=2)
            await relay.app[SOCIAL].check_bands()
            kit_sees, sam_sees = await drain(k), await drain(s)
            # No "new adult contact" for a contact that can no longer write.
            assert codes(kit_sees) == codes(sam_sees) == ["band_changed"]
            for event in (*kit_sees, *sam_sees):
                assert "can't message each other" in event.message.body
            assert [c.state for c in await k.contacts() if c.handle == "sam"] == ["connected"]
            assert await refused(send_and_wait(k, "sam", "hi")) == "contact_not_allowed"
    finally:
        await relay.stop()


async def test_admin_set_birthdate_is_audited_and_announced(default_relay, tmp_path):
    from server.admin.age_corrections import set_birthdate

    maya = await make_profile(tmp_path, default_relay.url, "maya", TEEN16)
    dad = await make_profile(tmp_path, default_relay.url, "dad", ADULT)
    async with open_clients(maya, dad) as (m, d):
        await m.contact_request("dad")
        await d.respond("maya", accept=True)
        await drain(m)
        await drain(d)
        result = await set_birthdate(
            default_relay.config.data_dir, "maya", years_ago(19), "ID check"
        )
        assert (result["band_from"], result["band_to"]) == ("teen_16_17", "adult")
        events = await drain(d, timeout=2.5)  # the running relay notices within a second
        assert codes(events) == ["band_changed"]
    with sqlite3.connect(default_relay.config.database_path) as db:
        actor, action, subject, detail = db.execute(
            "SELECT actor, action, subject, detail FROM audit"
        ).fetchone()
    assert (actor, action, subject) == ("admin", "set_birthdate", "maya")
    assert json.loads(detail)["reason"] == "ID check"


# --- open: the same paths all go through ------------------------------------------------------


async def test_open_preset_lets_every_bypass_through(open_relay, tmp_path):
    url = open_relay.url
    stranger = await make_profile(tmp_path, url, "stranger", ADULT)
    maya = await make_profile(tmp_path, url, "maya", TEEN14)
    tiny = await make_profile(tmp_path, url, "tiny", years_ago(12))  # under 13 registers
    kids = [await make_profile(tmp_path, url, f"kid{i}", TEEN14) for i in range(6)]
    async with open_clients(stranger, maya, tiny) as (s, m, t):
        await send_and_wait(s, "maya", "hi there")  # direct, no request
        got = await drain(m)
        assert texts(got) == ["hi there"] and not got[0].message.request
        assert [p.handle for p in await s.search("maya")] == ["maya"]
        for kid in kids:  # past default's thresholds and limits: never restricted
            assert await s.contact_request(kid.handle) == "requested"
        await send_and_wait(s, "tiny", "hello")
        assert texts(await drain(t)) == ["hello"]
        assert await m.set_birthdate(years_ago(30)) == "birthdate_changed"  # re-declared adult
        assert [c.state for c in await s.contacts() if c.handle == "kid0"] == ["outgoing_request"]


# --- found in review: bypasses through time, re-declaration and blocks -----------------------


async def test_a_pending_request_dies_when_its_target_turns_out_to_be_a_minor(
    default_relay, tmp_path
):
    from server.admin.age_corrections import set_birthdate

    abe = await make_profile(tmp_path, default_relay.url, "abe", ADULT)
    bea = await make_profile(tmp_path, default_relay.url, "bea", ADULT2)
    async with open_clients(abe) as (a,):
        await send_and_wait(a, "bea", "hi, nice to meet you")  # a message request, pending
    await set_birthdate(default_relay.config.data_dir, "bea", years_ago(14), "ID check")
    await asyncio.sleep(1.5)  # the relay's watcher picks up the correction
    async with open_clients(abe, bea) as (a, b):
        assert await refused(send_and_wait(a, "bea", "send me a photo")) == "contact_not_allowed"
        assert await refused(b.respond("abe", accept=True)) == "no_pending_request"
        assert [c.handle for c in await b.contacts()] == []


async def test_a_minor_cannot_age_up_in_steps_within_a_band(default_relay, tmp_path):
    teen = await make_profile(tmp_path, default_relay.url, "teen", years_ago(14, 70))
    async with open_clients(teen) as (t,):
        # Older by a month, still 14: refused all the same (the bands would roll over).
        code = await refused(t.set_birthdate(years_ago(14, 40)))
        assert code == "age_change_requires_assurance"


async def test_restriction_survives_redeclaring_as_a_minor(default_relay, tmp_path):
    pat = await make_profile(tmp_path, default_relay.url, "pat", ADULT)
    kids = [await make_profile(tmp_path, default_relay.url, f"kid{i}", TEEN14) for i in range(6)]
    async with open_clients(pat) as (p,):
        for kid in kids[:5]:
            await refused(p.contact_request(kid.handle))
        assert await refused(p.contact_request(kids[5].handle)) == "sender_restricted"
        assert await p.set_birthdate(years_ago(15)) == "birthdate_changed"  # younger: allowed
        assert await p.search("kid") == []
        assert await refused(p.contact_request(kids[5].handle)) == "sender_restricted"


async def test_blocks_by_strangers_do_not_restrict_an_adult(default_relay, tmp_path):
    adult = await make_profile(tmp_path, default_relay.url, "target", ADULT)
    fakes = [await make_profile(tmp_path, default_relay.url, f"fake{i}", TEEN16) for i in range(3)]
    async with open_clients(*fakes) as fs:
        for f in fs:
            await f.block("target")
            await f.report("target", "invented", last=0)
    social = default_relay.app[SOCIAL]
    assert "target" not in social.restricted
    # What the adult notices: a teen who asks to connect can still be accepted.
    kim = await make_profile(tmp_path, default_relay.url, "kim", TEEN16)
    async with open_clients(kim) as (k,):
        await k.contact_request("target")
    async with open_clients(adult) as (a,):
        assert await a.respond("kim", accept=True) == "connected"


async def test_strict_ends_adult_minor_contact_even_between_contacts(tmp_path):
    clock = Clock()
    relay = await start_relay(tmp_path, "strict", clock=clock)
    try:
        almost = await make_profile(tmp_path, relay.url, "sam", years_ago(18, days=1))
        kid = await make_profile(tmp_path, relay.url, "kit", TEEN14)
        async with open_clients(almost, kid) as (s, k):
            await send_and_wait(s, "kit", "see you at school")  # two minors: a request
            await k.respond("sam", accept=True)
            await send_and_wait(s, "kit", "ok")
            clock.advance(days=2)  # sam turns 18
            await relay.app[SOCIAL].check_bands()
            assert await refused(send_and_wait(s, "kit", "still there?")) == "contact_not_allowed"
            assert await refused(send_and_wait(k, "sam", "yes")) == "contact_not_allowed"
            assert await s.search("kit") == []
    finally:
        await relay.stop()


async def test_a_visible_chat_refuses_encoded_binary_but_not_what_people_write(
    default_relay, tmp_path
):
    """The shape check's promise (PROTOCOL.md §6.1; issue 9, defect 9): a visible body is
    not an envelope and not one long token of encoded binary data."""
    a = await make_profile(tmp_path, default_relay.url, "tia", TEEN14)
    b = await make_profile(tmp_path, default_relay.url, "tom", TEEN16)
    async with open_clients(a, b) as (ta, tb):
        await ta.contact_request("tom")
        await tb.respond("tia", accept=True)
        blob = base64.b64encode(os.urandom(120)).decode()
        assert await refused(send_and_wait(ta, "tom", blob)) == "mode_mismatch"
        assert await refused(send_and_wait(ta, "tom", os.urandom(64).hex())) == "mode_mismatch"
        for fine in ("a" * 300, "ha" * 80, hashlib.sha256(b"x").hexdigest(), "look: " + blob):
            await send_and_wait(ta, "tom", fine)
        assert texts(await drain(tb))[-4:] == [
            "a" * 300,
            "ha" * 80,
            hashlib.sha256(b"x").hexdigest(),
            "look: " + blob,
        ]


async def test_refusals_are_worded_for_the_rule_and_direction_that_refused(tmp_path):
    """Under `strict` a 14-year-old writing to an adult is not told that adults can't
    start conversations with minors (issue 9, defect 6)."""
    relay = await start_relay(tmp_path, "strict")
    try:
        kid = await make_profile(tmp_path, relay.url, "kit", TEEN14)
        adult = await make_profile(tmp_path, relay.url, "ada", ADULT)
        async with open_clients(kid, adult) as (k, a):
            message = await k.send("ada", "hi")
            with pytest.raises(ClientError) as kid_refused:
                await k.wait_accepted(message.msg_id)
            with pytest.raises(ClientError) as adult_refused:
                await a.contact_request("kit")
            # The history keeps the relay's sentence, so the app shows it after a restart.
            stored = await k.history.get("kit", message.msg_id)
            assert stored is not None and stored.state == "failed"
            assert "between adults and people under 18" in (stored.error_text or "")
        assert kid_refused.value.code == adult_refused.value.code == "contact_not_allowed"
        assert "Adults can't start" not in str(kid_refused.value)
        assert "between adults and people under 18" in str(kid_refused.value)
    finally:
        await relay.stop()


async def test_plaintext_where_e2ee_is_required_is_refused(default_relay, tmp_path):
    """The other direction of the mode check: a well-formed `visible` frame between two
    connected adults (a client that doesn't encrypt) is refused."""
    import aiohttp

    from protocol.codec import encode_frame
    from protocol.frames import Error, Send
    from tests.server.test_websocket_input import login, receive

    ana = await make_profile(tmp_path, default_relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, default_relay.url, "ben", ADULT2)
    async with open_clients(ben) as (b,):
        await b.contact_request("ana")
    async with open_clients(ana) as (a,):
        await a.respond("ben", accept=True)
        assert [c.mode for c in await a.contacts()] == ["e2ee"]
    async with aiohttp.ClientSession() as session, session.ws_connect(default_relay.ws_url) as ws:
        await login(ws, ana)
        await ws.send_str(encode_frame(Send(id="plaintext-1", to="ben", mode="visible", body="hi")))
        reply = await receive(ws)
        while not isinstance(reply, Error):
            reply = await receive(ws)
        assert (reply.code, reply.ref) == ("mode_mismatch", "plaintext-1")
