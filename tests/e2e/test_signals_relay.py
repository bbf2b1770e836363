"""Grooming-risk signals on a real relay (issue 14): an adult's secrecy request in a visible
chat with a teen brings the teen a notice in the chat (with its code, also in `inbox
--json`); more stages bring a finding to the `child_safety` queue with every firing listed;
a parent's ordinary messages bring nothing; an adult–adult `e2ee` chat gets behaviour
features only, no content rule. Personas and lines are invented and non-explicit."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import aiohttp

from protocol.codec import encode_frame
from protocol.frames import Auth, Ready
from protocol.identity import auth_message
from server.admin.roles import change_role
from server.app_keys import COMMITTER, SAFETY, SIGNALS
from tests.e2e.test_cli import agechat, create
from tests.e2e.test_e2ee import connect  # the first asks, the second accepts
from tests.server.raw import Person, receive
from tests.support import (
    Clock,
    Relay,
    drain,
    make_profile,
    open_client,
    open_clients,
    send_and_wait,
    years_ago,
)

ADULT, TEEN = years_ago(41), years_ago(14)


def notices(events) -> list:
    return [e.message for e in events if e.message.kind == "notice"]


def risk_state(relay: Relay, a: str, b: str) -> dict:
    low, high = sorted((a, b))
    with sqlite3.connect(relay.config.database_path) as db:
        (state,) = db.execute(
            "SELECT state FROM conversation_risk WHERE conversation = ?", (f"dm:{low}:{high}",)
        ).fetchone()
    return json.loads(state)


async def test_secrecy_brings_a_notice_and_more_stages_a_finding(relay, tmp_path):
    teen = await make_profile(tmp_path, relay.url, "tia", TEEN)
    adult = await make_profile(tmp_path, relay.url, "vic", ADULT)
    csm = await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await change_role(relay.config.data_dir, "cs_mod", "child_safety_moderator", grant=True)
    await relay.app[SAFETY].load()
    async with open_clients(teen, adult, csm) as (t, v, c):
        await connect(t, v)
        await send_and_wait(v, "tia", "how old are you? which school do you go to?")
        await send_and_wait(v, "tia", "let's keep this between us, don't tell your parents")
        await relay.app[SIGNALS].drain()
        got = notices(await drain(t))
        assert got and all(n.code.startswith("risk_") for n in got)
        assert any(n.code == "risk_secrecy" for n in got)
        assert all(n.sender == "agechat" for n in got)
        for line in (
            "you look so mature in your photos, really beautiful",
            "add me on another app, it's more private",
            "i could get you a gift card if you want",
            "we should meet up this weekend, just us",
        ):
            await send_and_wait(v, "tia", line)
        await relay.app[SIGNALS].drain()
        await drain(t)
        (case,) = await c.moderation.queue("child_safety")
        assert case.subject == "vic" and "signals" in case.sources
        view = await c.moderation.case(case.id)
        (finding,) = [f for f in view.findings if f.source == "signals"]
        assert "secre" in finding.explanation.lower() and "@tia" in finding.explanation
        # Every firing is listed with its rule, kind and weight, so the score explains itself.
        firings = risk_state(relay, "tia", "vic")["firings"]
        assert {"secrecy", "personal_info", "meet_offline"} <= {f["rule"] for f in firings}
        before = [f for f in firings if datetime.fromisoformat(f["at"]) <= finding.created_at]
        assert len(before) >= 5
        for f in before:
            assert f"- {f['rule']} ({f['kind']}) adds " in finding.explanation, f["rule"]


async def test_a_parents_everyday_messages_bring_no_notice(relay, tmp_path):
    teen = await make_profile(tmp_path, relay.url, "kim", TEEN)
    parent = await make_profile(tmp_path, relay.url, "mum", ADULT)
    async with open_clients(teen, parent) as (t, p):
        await connect(t, p)
        for line in (
            "dinner is at 7, don't forget your homework",
            "can you pick up milk on the way home?",
            "proud of you for the science fair!",
        ):
            await send_and_wait(p, "kim", line)
        await relay.app[SIGNALS].drain()
        assert notices(await drain(t)) == []


async def test_an_adults_encrypted_chat_is_not_scored_at_all(relay, tmp_path):
    """Only an adult–minor pair can bring a notice or a finding, so nothing else is scored:
    two adults' conversation has no risk state, not even behaviour features."""
    a = await make_profile(tmp_path, relay.url, "amy", ADULT)
    b = await make_profile(tmp_path, relay.url, "bob", years_ago(35))
    async with open_clients(a, b) as (x, y):
        await y.contact_request("amy")
        await x.respond("bob", accept=True)
        await drain(x), await drain(y)
        await send_and_wait(y, "amy", "keep this between us, don't tell anyone")
        await relay.app[SIGNALS].drain()
        await drain(x)
    await relay.app[COMMITTER].barrier()  # what was written behind is on disk
    with sqlite3.connect(relay.config.database_path) as db:
        assert db.execute("SELECT conversation FROM conversation_risk").fetchall() == []


async def test_the_notice_is_in_inbox_json_with_its_code(relay, tmp_path):
    teen = await create(tmp_path, relay, "sia", TEEN.isoformat())
    adult = await create(tmp_path, relay, "rob", ADULT.isoformat())
    assert (await agechat("--profile", str(teen), "contacts", "request", "rob"))[0] == 0
    assert (await agechat("--profile", str(adult), "contacts", "accept", "sia"))[0] == 0
    for line in (
        "how old are you? which school do you go to?",
        "let's keep this between us, don't tell your parents",
    ):
        code, _, err = await agechat("--profile", str(adult), "send", "sia", line)
        assert code == 0, err
    await relay.app[SIGNALS].drain()
    code, out, err = await agechat("--json", "--profile", str(teen), "inbox")
    assert code == 0, err
    codes = [json.loads(line)["code"] for line in out.splitlines()]
    assert any(c and c.startswith("risk_") for c in codes), codes


async def test_a_minors_block_is_an_event_in_the_conversation(relay, tmp_path):
    teen = await make_profile(tmp_path, relay.url, "ada", TEEN)
    adult = await make_profile(tmp_path, relay.url, "gus", ADULT)
    async with open_clients(teen, adult) as (t, g):
        await connect(t, g)
        await send_and_wait(g, "ada", "hey, how was the match?")
        await t.block("gus")
        await relay.app[SIGNALS].drain()
    firings = risk_state(relay, "ada", "gus")["firings"]
    (pushback,) = [f for f in firings if f["rule"] == "pushback_here"]
    assert pushback["event"].startswith("blocked:ada:")
    assert "blocked" in pushback["detail"]


async def test_the_minors_time_zone_makes_a_late_message_count_as_night(tmp_path):
    """A minor's client tells the relay its UTC offset at login; an adult's message at
    23:30 there fires the night feature, the same message at 15:30 there doesn't. An
    adult's client tells nothing."""
    clock = Clock()
    relay = await Relay(tmp_path / "relay", clock=clock).start()
    try:
        teen = await make_profile(tmp_path, relay.url, "noor", TEEN)
        adult = await make_profile(tmp_path, relay.url, "ike", ADULT)
        async with (
            open_client(teen, utc_offset=timedelta(hours=-5)) as t,
            open_client(adult, utc_offset=timedelta(hours=3)) as i,
        ):
            for c in (t, i):
                await c.wait_connected()
            await connect(t, i)
            now = clock()
            assert relay.app[SIGNALS].local_time("ike", now) is None  # an adult's is unknown
            assert relay.app[SIGNALS].local_time("noor", now) == (now - timedelta(hours=5)).time()

            def at_local(hour: int, minute: int) -> None:
                local = clock() - timedelta(hours=5)
                target = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
                clock.advance(seconds=((target - local).total_seconds()) % 86400 or 86400)

            at_local(15, 30)
            await send_and_wait(i, "noor", "did the bus come on time today?")
            await relay.app[SIGNALS].drain()
            assert "night" not in {f["rule"] for f in risk_state(relay, "ike", "noor")["firings"]}
            at_local(23, 30)
            await send_and_wait(i, "noor", "did the bus come on time today?")
            await relay.app[SIGNALS].drain()
            (night,) = [
                f for f in risk_state(relay, "ike", "noor")["firings"] if f["rule"] == "night"
            ]
            assert "23:30" in night["detail"]
    finally:
        await relay.stop()


async def test_a_time_zone_out_of_range_is_refused_at_login(relay):
    person = await Person("zed").register(relay)
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.ws_url) as ws:
        challenge = await receive(ws)
        signed = auth_message(challenge.relay_id, challenge.nonce, "zed")
        frame = json.loads(encode_frame(Auth(handle="zed", signature=person.sign(signed))))
        await ws.send_str(json.dumps({**frame, "utc_offset_minutes": 10_000}))
        refusal = await receive(ws)
        assert refusal.code == "invalid_frame"
        await ws.send_str(encode_frame(Auth(handle="zed", signature=person.sign(signed))))
        assert isinstance(await receive(ws), Ready)  # the connection lives on


async def test_in_a_group_each_adult_minor_pair_is_scored_and_the_notice_lands_in_the_group(
    relay, tmp_path
):
    """A group is no way around the signals: the adult's lines to the group reach the teen
    as pairwise copies, scored for that pair, and her notice is in the group's chat."""
    from protocol.groups import group_conversation

    teen = await make_profile(tmp_path, relay.url, "ivy", TEEN)
    adult = await make_profile(tmp_path, relay.url, "ned", ADULT)
    parent = await make_profile(tmp_path, relay.url, "mom", years_ago(44))
    async with open_clients(teen, adult, parent) as (t, n, m):
        await connect(t, m)
        await connect(t, n)
        await n.contact_request("mom")
        await m.respond("ned", accept=True)
        view, _ = await m.groups.create("Carpool", ["ivy", "ned"])
        assert view.mode == "visible"
        for line in (
            "how old are you now? which school is it?",
            "let's keep this between us, don't tell your parents",
        ):
            sent = await n.send_group(view.id, line)
            await n.wait_accepted(sent.msg_id)
        await relay.app[SIGNALS].drain()
        got = notices(await drain(t))
        assert [g.code for g in got if g.code.startswith("risk_")]
        assert all(
            g.conversation == group_conversation(view.id) for g in got if g.code.startswith("risk_")
        )
        # The parent, an adult, is told nothing; the pair (ned, ivy) has its own score.
        assert not [g for g in notices(await drain(m)) if (g.code or "").startswith("risk_")]
        low, high = sorted(("ivy", "ned"))
        with sqlite3.connect(relay.config.database_path) as db:
            keys = [k for (k,) in db.execute("SELECT conversation FROM conversation_risk")]
        assert f"grp:{view.id}:{low}:{high}" in keys


async def test_a_signals_failure_costs_no_message_and_no_later_answer(relay, tmp_path, caplog):
    """Scoring runs as the sender gets `accepted`: if it fails, it is logged, and the
    sender's later sends are still answered and delivered."""
    teen = await make_profile(tmp_path, relay.url, "eva", TEEN)
    adult = await make_profile(tmp_path, relay.url, "hal", ADULT)
    signals = relay.app[SIGNALS]
    assert signals.engine is not None

    def broken(state, event):
        raise RuntimeError("a broken rule")

    original, signals.engine.evaluate = signals.engine.evaluate, broken
    try:
        async with open_clients(teen, adult) as (t, h):
            await connect(t, h)
            for line in ("one", "two", "three"):
                await send_and_wait(h, "eva", line)
            got = [e.message.body for e in await drain(t) if e.message.kind == "message"]
            assert got == ["one", "two", "three"]
    finally:
        signals.engine.evaluate = original
    assert "grooming-risk signals failed" in caplog.text


async def test_a_quiet_conversations_state_leaves_memory_and_comes_back_from_disk(
    relay, tmp_path
):
    teen = await make_profile(tmp_path, relay.url, "ora", TEEN)
    adult = await make_profile(tmp_path, relay.url, "ian", ADULT)
    signals = relay.app[SIGNALS]
    async with open_clients(teen, adult) as (t, i):
        await connect(t, i)
        await send_and_wait(i, "ora", "let's keep this between us")
        await signals.drain()
        before = risk_state(relay, "ian", "ora")
        assert signals.forget_idle(datetime.now(UTC) + timedelta(days=2)) >= 1
        await send_and_wait(i, "ora", "don't tell your parents")
        await signals.drain()
        after = risk_state(relay, "ian", "ora")
        assert after["messages"] == before["messages"] + 1  # carried on from the disk's state


async def test_after_a_restart_a_conversation_carries_on_and_a_new_one_starts_fresh(tmp_path):
    """States are read from disk only for conversations that have one (the relay learns
    which at start); a conversation never scored starts fresh without a read."""
    data = tmp_path / "relay"
    first = await Relay(data).start()
    try:
        teen = await make_profile(tmp_path, first.url, "ora", TEEN)
        adult = await make_profile(tmp_path, first.url, "ian", ADULT)
        other = await make_profile(tmp_path, first.url, "noa", years_ago(15))
        async with open_clients(teen, adult, other) as (t, i, n):
            await connect(t, i)
            await connect(n, i)
            await send_and_wait(i, "ora", "let's keep this between us")
            await first.app[SIGNALS].drain()
    finally:
        await first.stop()
    before = risk_state(first, "ian", "ora")
    second = await Relay(data, port=first.port).start()
    try:
        signals = second.app[SIGNALS]
        assert signals._on_disk == {"dm:ian:ora"}
        async with open_clients(teen, adult, other) as (t, i, n):
            await send_and_wait(i, "ora", "don't tell your parents")
            await send_and_wait(i, "noa", "see you at practice")
            await signals.drain()
        after = risk_state(second, "ian", "ora")
        assert after["messages"] == before["messages"] + 1  # carried on from the disk
        assert risk_state(second, "ian", "noa")["messages"] == 1  # a new one, from nothing
    finally:
        await second.stop()
