"""Retention (issue 12): what the policy's `[retention]` dials keep and for how long, the
sweep that deletes the rest (audited, down to the WAL), and preservation requests that hold
an account's data past it. A real relay with a settable clock; invented personas."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

from server.app_keys import POLICY, SAFETY, STORE
from server.safety.retention import preserve, sweep
from tests.support import (
    Clock,
    Relay,
    drain,
    make_profile,
    open_clients,
    send_and_wait,
    years_ago,
)

ADULT, TEEN = years_ago(40), years_ago(15)
DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


def policy_keeping_visible(tmp_path: Path, days: int) -> str:
    text = DEFAULT.read_text().replace("visible_days = 0 ", f"visible_days = {days} ")
    assert f"visible_days = {days}" in text
    path = tmp_path / "keep.toml"
    path.write_text(text)
    return str(path)


def rows(relay: Relay, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(relay.config.database_path) as db:
        return db.execute(sql, params).fetchall()


def on_disk(relay: Relay) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(relay.config.data_dir.rglob("*")) if p.is_file())


def admin(*args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "launcher", "admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout


async def run_sweep(relay: Relay, clock: Clock):
    return await sweep(
        relay.app[STORE], relay.app[POLICY].retention, clock(), relay.config.data_dir / "outbox"
    )


async def chat(tmp_path: Path, relay: Relay, a: str, b: str, *texts: str) -> None:
    """Two teens connect and ``a`` sends ``texts`` to ``b``, who receives them (acks)."""
    pa = await make_profile(tmp_path, relay.url, a, TEEN)
    pb = await make_profile(tmp_path, relay.url, b, years_ago(14))
    async with open_clients(pa, pb) as (x, y):
        await x.contact_request(b)
        await y.respond(a, accept=True)
        await drain(x)
        for text in texts:
            await send_and_wait(x, b, text)
        assert [e.message.body for e in await drain(y) if e.message.kind == "message"] == list(
            texts
        )


async def test_visible_text_is_kept_for_its_days_then_swept_from_the_file_and_wal(tmp_path):
    clock = Clock()
    relay = await Relay(
        tmp_path / "relay", clock=clock, policy=policy_keeping_visible(tmp_path, 7)
    ).start()
    try:
        words = "canary-" + secrets.token_hex(8)
        await chat(tmp_path, relay, "kai", "lou", words)
        clock.advance(days=6)
        assert (await run_sweep(relay, clock)).visible_texts == 0
        assert rows(relay, "SELECT body FROM messages WHERE sender = 'kai'") == [(words,)]
        clock.advance(days=2)
        result = await run_sweep(relay, clock)
        assert result.visible_texts == 1
        # The record (who, to whom, when, size) stays for metadata_days; the text is gone,
        # from the database file and from its WAL.
        assert rows(relay, "SELECT body, size FROM messages WHERE sender = 'kai'") == [
            (None, len(words))
        ]
        assert words.encode() not in on_disk(relay)
        ((detail,),) = rows(relay, "SELECT detail FROM audit WHERE action = 'retention_sweep'")
        assert json.loads(detail)["visible_texts"] == 1
        assert json.loads(detail)["policy"]["visible_days"] == 7
        # Past metadata_days (90) the record goes too.
        clock.advance(days=90)
        assert (await run_sweep(relay, clock)).message_records >= 1  # with relay events
        assert rows(relay, "SELECT * FROM messages WHERE sender = 'kai'") == []
    finally:
        await relay.stop()
    code, out = admin("audit", "verify", "--data-dir", str(relay.config.data_dir))
    assert code == 0 and json.loads(out)["ok"]


async def test_a_preserved_account_keeps_its_text_until_the_preservation_ends(tmp_path):
    """Under the default policy (visible_days = 0) text goes on delivery: a preservation
    keeps it, sweeps leave it, and the first sweep after the preservation ends takes it."""
    clock = Clock()
    relay = await Relay(tmp_path / "relay", clock=clock).start()
    try:
        await preserve(relay.app[STORE], "pia", 30, "LE-REQ-0001", "admin", clock())
        await chat(tmp_path, relay, "pia", "quin", "kept under preservation")
        await chat(tmp_path, relay, "rex", "sue", "not preserved")
        assert rows(relay, "SELECT body FROM messages WHERE sender IN ('pia', 'rex')") == [
            ("kept under preservation",),
            (None,),
        ]
        clock.advance(days=29)
        assert (await run_sweep(relay, clock)).visible_texts == 0
        clock.advance(days=2)
        assert (await run_sweep(relay, clock)).visible_texts == 1
        assert rows(relay, "SELECT body FROM messages WHERE sender = 'pia'") == [(None,)]
    finally:
        await relay.stop()


async def test_closed_case_evidence_and_its_drafts_go_after_evidence_days_unless_preserved(
    tmp_path,
):
    clock = Clock()
    relay = await Relay(tmp_path / "relay", clock=clock).start()
    safety = relay.app[SAFETY]
    outbox = relay.config.data_dir / "outbox" / "cybertip"
    try:
        profiles = {
            h: await make_profile(tmp_path, relay.url, h, born)
            for h, born in (("tia", TEEN), ("vic", ADULT), ("val", ADULT), ("csm", ADULT))
        }
        from server.admin.roles import change_role

        await change_role(relay.config.data_dir, "csm", "child_safety_moderator", grant=True)
        await safety.load()
        async with open_clients(*profiles.values()) as (t, v, w, c):
            for adult, text in ((v, "where is your school"), (w, "send a photo")):
                await t.contact_request(adult.handle)
                await adult.respond("tia", accept=True)
                await send_and_wait(adult, "tia", text)
                await drain(t)
                await t.report(adult.handle, "asks too much", last=1)
                ((case_id,),) = rows(
                    relay,
                    "SELECT id FROM cases WHERE subject = ? AND status = 'open'",
                    (adult.handle,),
                )
                assert await c.moderation.decide(case_id, "escalate", "report") == "escalated"
        await preserve(relay.app[STORE], "val", 400, "LE-REQ-0002", "admin", clock())
        assert sorted(p.name for p in outbox.iterdir()) == ["1.xml", "2.xml"]
        clock.advance(days=364)
        assert (await run_sweep(relay, clock)).evidence_items == 0
        clock.advance(days=2)
        result = await run_sweep(relay, clock)
        assert (result.evidence_items, result.report_drafts) == (1, 1)
        # vic's case keeps its record (findings, decision) without the evidence or draft;
        # val's, preserved, keeps everything.
        assert [p.name for p in outbox.iterdir()] == ["2.xml"]
        assert rows(relay, "SELECT case_id FROM evidence") == [(2,)]
        assert rows(relay, "SELECT action FROM decisions ORDER BY case_id") == [
            ("escalate",),
            ("escalate",),
        ]
    finally:
        await relay.stop()


async def test_login_addresses_go_after_metadata_days(tmp_path):
    clock = Clock()
    relay = await Relay(tmp_path / "relay", clock=clock).start()
    try:
        amy = await make_profile(tmp_path, relay.url, "amy", ADULT)
        async with open_clients(amy):
            pass
        logins = len(rows(relay, "SELECT * FROM logins WHERE handle = 'amy'"))
        assert logins >= 1
        clock.advance(days=89)
        assert (await run_sweep(relay, clock)).logins == 0
        clock.advance(days=2)
        assert (await run_sweep(relay, clock)).logins == logins
        assert rows(relay, "SELECT * FROM logins") == []
    finally:
        await relay.stop()


async def test_admin_preserve_lists_and_sweeps_from_the_relay_host(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    data_dir = str(relay.config.data_dir)
    try:
        await make_profile(tmp_path, relay.url, "amy", ADULT)
    finally:
        await relay.stop()
    code, out = admin(
        "preserve", "amy", "--days", "90", "--reference", "LE-REQ-7", "--data-dir", data_dir
    )
    made = json.loads(out)
    assert code == 0 and (made["handle"], made["reference"]) == ("amy", "LE-REQ-7")
    code, out = admin("preservations", "--data-dir", data_dir)
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [made["id"]]
    code, _ = admin("preserve", "nobody", "--days", "9", "--reference", "x", "--data-dir", data_dir)
    assert code == 1
    code, out = admin("sweep", "--data-dir", data_dir)
    swept = json.loads(out)
    assert code == 0 and swept["policy"] == {
        "evidence_days": 365,
        "visible_days": 0,
        "metadata_days": 90,
    }
    code, out = admin("audit", "verify", "--data-dir", data_dir)
    assert code == 0
    with sqlite3.connect(relay.config.database_path) as db:
        assert db.execute("SELECT actor, action, subject FROM audit").fetchall()[-1] == (
            "admin",
            "preserve",
            "amy",
        )
