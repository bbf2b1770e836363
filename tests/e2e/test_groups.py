"""Groups through the real client library (issue 15): an adults-only group is end-to-end
encrypted — a canary is nowhere in the relay's data directory or log and every member
decrypts it; the pair rules decide who may be added; a minor joining switches the group to
`visible` with a line before any message; a birthday re-derives the mode; after a relay
killed with SIGKILL mid-fan-out, every member gets every message exactly once."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3

from client.events import MessageReceived
from protocol.groups import group_conversation
from server.app_keys import SOCIAL
from server.social.bands import check_bands
from tests.e2e.test_cli import agechat, create
from tests.e2e.test_e2ee import bytes_under, connect
from tests.support import (
    Clock,
    Relay,
    RelayProcess,
    collect,
    drain,
    make_profile,
    open_clients,
    years_ago,
)

ADULT, ADULT2, ADULT3, TEEN = years_ago(40), years_ago(35), years_ago(52), years_ago(14)


def canary() -> str:
    return "canary-" + secrets.token_hex(12)


async def group_messages(client, group: str, count: int, timeout: float = 10.0) -> list:
    """Messages (not lines) that arrive in ``group`` until ``count`` have, or time is up."""
    got: list = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(got) < count and (left := end - loop.time()) > 0:
        event = await client.next_event(left)
        if event is None:
            break
        got += [m for m in in_group([event], group) if m.kind == "message"]
    return got


def in_group(events, group: str) -> list:
    return [
        e.message
        for e in events
        if isinstance(e, MessageReceived) and e.message.conversation == group_conversation(group)
    ]


async def test_an_adults_only_group_is_e2ee_and_the_relay_never_holds_its_text(tmp_path):
    data = tmp_path / "relay-data"
    relay = await RelayProcess(data).start()
    try:
        ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
        ben = await make_profile(tmp_path, relay.url, "ben", ADULT2)
        cal = await make_profile(tmp_path, relay.url, "cal", ADULT3)
        words = canary()
        async with open_clients(ana, ben, cal) as (a, b, c):
            await connect(b, a)
            await connect(c, a)
            view, outcomes = await a.groups.create("Book club", ["ben", "cal"])
            assert [(o.handle, o.outcome) for o in outcomes] == [
                ("ben", "joined"),
                ("cal", "joined"),
            ]
            assert view.mode == "e2ee"
            sent = await a.send_group(view.id, f"chapter 3 tonight {words}")
            stored = await a.wait_accepted(sent.msg_id)
            assert stored.mode == "e2ee" and stored.conversation == group_conversation(view.id)
            for member in (b, c):
                got = await group_messages(member, view.id, 1)
                assert [(m.sender, m.body, m.mode) for m in got] == [
                    ("ana", f"chapter 3 tonight {words}", "e2ee")
                ]
            # A reply from a member who never had a session with cal: fan-out makes one.
            reply = await b.send_group(view.id, "see you there")
            await b.wait_accepted(reply.msg_id)
            got = await group_messages(c, view.id, 1)
            assert [(m.sender, m.body) for m in got] == [("ben", "see you there")]
    finally:
        relay.terminate()
    everything = bytes_under(data) + bytes_under(tmp_path / f"relay-{relay.port}.log")
    assert words.encode() not in everything


async def test_who_may_be_added_and_a_minor_switches_the_group_before_any_message(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    try:
        ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
        ben = await make_profile(tmp_path, relay.url, "ben", ADULT2)
        tia = await make_profile(tmp_path, relay.url, "tia", TEEN)
        uma = await make_profile(tmp_path, relay.url, "uma", TEEN)
        async with open_clients(ana, ben, tia, uma) as (a, b, t, u):
            await connect(b, a)
            await connect(t, a)  # tia asked her mum's friend ana; ana accepted
            view, _ = await a.groups.create("Trip", ["ben"])
            assert view.mode == "e2ee"
            # uma is a minor ana isn't connected with: refused with the pair rule's code.
            _, outcome = await a.groups.add(view.id, "uma")
            assert (outcome.outcome, outcome.code) == ("refused", "contact_not_allowed")
            # tia is connected: she joins, and the group turns visible first.
            view, outcome = await a.groups.add(view.id, "tia")
            assert outcome.outcome == "joined" and view.mode == "visible"
            first = in_group(await collect(t, 2, timeout=2), view.id)
            assert [m.code for m in first][:2] == ["group_mode_changed", "group_joined"]
            ben_sees = in_group(await drain(b), view.id)
            (switched,) = [m for m in ben_sees if m.code == "group_mode_changed"]
            assert "visible to safety checks" in switched.body and "under 18" in switched.body
            # Ben's next message goes visible (his client asks the group's mode as it leaves).
            sent = await b.send_group(view.id, "who's bringing snacks?")
            assert (await b.wait_accepted(sent.msg_id)).mode == "visible"
            got = await group_messages(t, view.id, 1)
            assert [(m.sender, m.body) for m in got] == [("ben", "who's bringing snacks?")]
            # Ben can't see tia in the member list (he couldn't find her in search).
            (mine,) = [g for g in await b.groups.list() if g.id == view.id]
            assert {m.handle for m in mine.members} == {"ana", "ben"} and mine.hidden_members == 1
            del u
    finally:
        await relay.stop()


async def test_a_birthday_makes_the_group_end_to_end_encrypted(tmp_path):
    clock = Clock()
    relay = await Relay(tmp_path / "relay", clock=clock).start()
    try:
        ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
        # 18 in two days.
        kim = await make_profile(tmp_path, relay.url, "kim", years_ago(18, days=2))
        async with open_clients(ana, kim) as (a, k):
            await connect(k, a)
            view, _ = await a.groups.create("Driving lessons", ["kim"])
            assert view.mode == "visible"
            await drain(a), await drain(k)
            clock.advance(days=3)
            await check_bands(relay.app[SOCIAL])  # what the relay's watcher does each minute
            lines = [m for m in in_group(await collect(a, 1, timeout=3), view.id)]
            assert any(m.code == "group_mode_changed" and "end-to-end" in m.body for m in lines)
            (now,) = await a.groups.list()
            assert now.mode == "e2ee"
    finally:
        await relay.stop()


async def test_a_relay_killed_mid_fanout_loses_and_doubles_nothing(tmp_path):
    """SIGKILL while group messages are being stored: after a restart, the senders' outboxes
    resend, and every member has every message exactly once."""
    data = tmp_path / "relay-data"
    relay = await RelayProcess(data).start()
    port = relay.port
    ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, relay.url, "ben", ADULT2)
    cal = await make_profile(tmp_path, relay.url, "cal", ADULT3)
    texts = [f"line {n}" for n in range(30)]
    try:
        async with open_clients(ana, ben, cal) as (a, b, c):
            await connect(b, a)
            await connect(c, a)
            view, _ = await a.groups.create("Crash test", ["ben", "cal"])
            sent = [await a.send_group(view.id, t) for t in texts[:15]]
            await asyncio.sleep(0.05)  # some stored, some on their way
            relay.kill()
            sent += [await a.send_group(view.id, t) for t in texts[15:]]  # offline: outbox
            relay = await RelayProcess(data, port=port).start()
            await a.wait_connected(20)
            for m in sent:
                await a.wait_accepted(m.msg_id, timeout=20)
            for member in (b, c):
                await member.wait_connected(20)
                got = [m.body for m in await group_messages(member, view.id, len(texts), 30)]
                await asyncio.sleep(0.5)
                got += [
                    m.body for m in in_group(await drain(member), view.id) if m.kind == "message"
                ]
                assert sorted(got) == sorted(texts), member.handle
                history = await member.history.last_messages(group_conversation(view.id), 200)
                bodies = [m.body for m in history if m.kind == "message"]
                assert sorted(bodies) == sorted(texts)  # once each, in the member's history
    finally:
        relay.terminate()


async def test_the_group_commands_from_the_cli(tmp_path):
    """`agechat group create|add|list|send|accept|leave`, each with --json, and their codes."""
    relay = await Relay(tmp_path / "relay").start()
    try:
        ana = await create(tmp_path, relay, "ana", ADULT.isoformat())
        ben = await create(tmp_path, relay, "ben", ADULT2.isoformat())
        dan = await create(tmp_path, relay, "dan", ADULT3.isoformat())
        await create(tmp_path, relay, "tia", TEEN.isoformat())

        async def run(profile, *args):
            code, out, err = await agechat("--json", "--profile", str(profile), *args)
            return code, (json.loads(out.splitlines()[-1]) if out.strip() else None), err

        assert (await run(ben, "contacts", "request", "ana"))[0] == 0
        assert (await run(ana, "contacts", "accept", "ben"))[0] == 0
        code, made, err = await run(
            ana, "group", "create", "Quiz night", "--members", "ben,dan,tia"
        )
        assert code == 0, err
        assert made["group"]["mode"] == "e2ee"
        assert {o["handle"]: o["code"] or o["outcome"] for o in made["outcomes"]} == {
            "ben": "joined",
            "dan": "invited",
            "tia": "contact_not_allowed",
        }
        gid = made["group"]["id"]
        # A refusal exits 1 with its code.
        code, refused, _ = await run(ana, "group", "add", "Quiz night", "tia")
        assert code == 1 and refused["error"]["code"] == "contact_not_allowed"
        code, listed, _ = await run(dan, "group", "list")
        assert code == 0 and [(g["id"], g["state"]) for g in listed["groups"]] == [(gid, "invited")]
        assert (await run(dan, "group", "accept", gid))[0] == 0
        code, sent, err = await run(ben, "group", "send", "quiz night", "round one starts at 8")
        assert code == 0, err
        assert (sent["mode"], sent["conversation"]) == ("e2ee", f"grp:{gid}")
        code, out, err = await agechat("--json", "--profile", str(dan), "inbox")
        assert code == 0, err
        got = [json.loads(line) for line in out.splitlines()]
        texts = [(m["from"], m["text"]) for m in got if m["kind"] == "message"]
        assert ("ben", "round one starts at 8") in texts
        assert all(m["conversation"] == f"grp:{gid}" for m in got if m["kind"] == "message")
        code, left, _ = await run(dan, "group", "leave", gid)
        assert (code, left["outcome"]) == (0, "left")
        code, missing, _ = await run(dan, "group", "send", gid, "hello?")
        assert code == 1 and missing["error"]["code"] == "unknown_group"
    finally:
        await relay.stop()


async def test_a_group_message_is_reported_and_verified_like_a_direct_one(tmp_path):
    """Each e2ee copy is franked for its recipient: reporting it from the group attaches it
    with its franking evidence, and the relay verifies it (a tampered one would be refused)."""
    relay = await Relay(tmp_path / "relay").start()
    try:
        ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
        ben = await make_profile(tmp_path, relay.url, "ben", ADULT2)
        async with open_clients(ana, ben) as (a, b):
            await connect(b, a)
            view, _ = await a.groups.create("Neighbours", ["ben"])
            sent = await b.send_group(view.id, "your car is blocking my drive, move it now")
            await b.wait_accepted(sent.msg_id)
            await group_messages(a, view.id, 1)
            attached = await a.report("ben", "harassment", last=5, group=view.id)
            assert [m.body for m in attached] == ["your car is blocking my drive, move it now"]
        with sqlite3.connect(relay.config.database_path) as db:
            rows = db.execute("SELECT sender, recipient, mode, franking FROM evidence").fetchall()
        assert rows == [("ben", "ana", "e2ee", "verified")]
    finally:
        await relay.stop()
