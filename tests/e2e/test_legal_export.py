"""`agechat admin legal-export` against a real relay, a real SQLite file and real clients
(issue 12, lawful access): the package carries metadata, and text only where the relay can
read it and still holds it — never an encrypted body, its base64, or a commitment. Every
persona and message is invented."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

from client.events import MessageReceived
from launcher.cli import cli
from server.admin.age_corrections import set_birthdate
from server.app_keys import POLICY, STORE
from server.policy.loader import PRESETS_DIR
from server.safety.retention import sweep
from tests.support import (
    Clock,
    Relay,
    collect,
    make_profile,
    open_clients,
    send_and_wait,
    years_ago,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADULT, ADULT2, TEEN, TEEN2 = years_ago(40), years_ago(35), years_ago(15), years_ago(14)
PROCESS = "LE-2026-0042"
FILES = ("account.json", "contacts.json", "messages.json", "evidence.json")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def relay(tmp_path_factory):
    """One relay for the module, default policy: each test uses its own personas."""
    running = await Relay(tmp_path_factory.mktemp("shared") / "relay").start()
    yield running
    await running.stop()


def canary() -> str:
    return "canary-" + secrets.token_hex(12)


def days() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()


async def run_export(
    data_dir: Path, handle: str, out: Path, first: str | None = None, last: str | None = None
) -> Result:
    """The real command, in-process (in a thread: it runs its own event loop)."""
    d1, d2 = days()
    args = [
        "admin",
        "legal-export",
        "--data-dir",
        str(data_dir),
        "--account",
        handle,
        "--from",
        first or d1,
        "--to",
        last or d2,
        "--process",
        PROCESS,
        "--out",
        str(out),
    ]
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


async def export(relay: Relay, handle: str, out: Path) -> dict[str, dict]:
    """Export, check the package against its manifest, return every file's JSON."""
    result = await run_export(relay.config.data_dir, handle, out)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["out"] == str(out) and printed["audit_seq"] >= 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "manifest.json"])
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert printed["files"][path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    package = {p.name: json.loads(p.read_text()) for p in out.iterdir()}
    manifest = package["manifest.json"]
    assert sorted(manifest["files"]) == sorted(FILES)
    for name, entry in manifest["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["request"]["account"] == handle
    assert manifest["request"]["process"] == PROCESS
    assert manifest["relay_id"] and manifest["exported_by"] and manifest["never_contains"]
    return package


def package_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.iterdir()))


def db_rows(relay: Relay, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(relay.config.database_path) as db:
        return db.execute(sql, params).fetchall()


async def wait_delivered(relay: Relay, *msg_ids: str) -> None:
    """Until the recipients' acknowledgements are stored (the group commit is async)."""
    marks = ", ".join("?" for _ in msg_ids)
    for _ in range(100):
        rows = db_rows(
            relay,
            f"SELECT COUNT(*) FROM messages WHERE msg_id IN ({marks}) AND acked_at IS NOT NULL",
            msg_ids,
        )
        if rows[0][0] == len(msg_ids):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not delivered: {msg_ids}")


async def receive(client, sent) -> None:
    """Until ``client`` has received ``sent`` (and stored it: the ack goes out)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while (event := await client.next_event(max(0.0, end - loop.time()))) is not None:
        if isinstance(event, MessageReceived) and event.message.msg_id == sent.msg_id:
            return
    raise AssertionError(f"{client.handle} never received {sent.msg_id}")


async def connect(a, b) -> None:
    await a.contact_request(b.handle)
    await b.respond(a.handle, accept=True)
    await collect(a, 1, 1.0), await collect(b, 1, 1.0)


def by_id(package: dict, name: str = "messages.json") -> dict[str, dict]:
    return {m["id"]: m for m in package[name]["messages"]}


async def test_an_encrypted_chat_exports_metadata_and_never_text_ciphertext_or_commitment(
    relay, tmp_path
):
    """The canary: one adult's export holds the ids and sizes of an end-to-end encrypted chat,
    and in no file its text, the stored ciphertext (or its decoding) or a commitment."""
    alice = await make_profile(tmp_path, relay.url, "alice", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT2)
    words = [canary(), canary(), canary()]
    async with open_clients(alice, bob) as (a, b):
        await connect(a, b)
        first = await send_and_wait(a, "bob", f"lunch on friday? {words[0]}")
        await receive(b, first)
        reply = await send_and_wait(b, "alice", f"sure, the usual place {words[1]}")
        await receive(a, reply)
        assert first.mode == reply.mode == "e2ee"
    async with open_clients(alice) as (a,):  # bob is offline: this one waits at the relay
        waiting = await send_and_wait(a, "bob", f"running late {words[2]}")
    await wait_delivered(relay, first.msg_id, reply.msg_id)
    ((body, commitment),) = db_rows(
        relay,
        "SELECT body, commitment FROM messages WHERE sender = 'alice' AND msg_id = ?",
        (waiting.msg_id,),
    )
    assert body and commitment  # the ciphertext and its commitment are in the database
    sizes = dict(db_rows(relay, "SELECT msg_id, size FROM messages WHERE kind = 'message'"))

    out = tmp_path / "package-alice"
    package = await export(relay, "alice", out)

    messages = by_id(package)
    assert set(messages) == {first.msg_id, reply.msg_id, waiting.msg_id}
    for msg_id, item in messages.items():
        assert item["mode"] == "e2ee" and item["text"] is None
        assert item["withheld"] == "end_to_end_encrypted"
        assert item["size"] == sizes[msg_id] > 0
    assert messages[first.msg_id]["sender"] == "alice"
    assert messages[first.msg_id]["recipient"] == "bob"
    assert messages[first.msg_id]["delivered_at"] is not None
    assert messages[reply.msg_id]["delivered_at"] is not None
    assert messages[waiting.msg_id]["delivered_at"] is None

    stored = package_bytes(out)
    for word in words:
        assert word.encode() not in stored
    assert body.encode() not in stored
    assert base64.b64decode(body) not in stored
    for form in (commitment, commitment.hex().encode(), base64.b64encode(commitment)):
        assert form not in stored
    assert b'"commitment"' not in stored and b'"franking_key"' not in stored

    account = package["account.json"]
    assert account["handle"] == "alice" and account["display_name"] == "Alice"
    assert len(base64.b64decode(account["identity_key"])) == 32
    assert account["birth_date"] == ADULT.isoformat() and account["age_band"] == "adult"
    assert {login["address"] for login in account["logins"]} == {"127.0.0.1"}
    contacts = package["contacts.json"]["contacts"]
    assert [(c["handle"], c["state"]) for c in contacts] == [("bob", "connected")]


async def test_default_policy_exports_no_delivered_visible_text(relay, tmp_path):
    """visible_days = 0: a minor's delivered message lost its text on delivery; one still
    waiting for its recipient is held, and exported with its text."""
    tia = await make_profile(tmp_path, relay.url, "tia", TEEN)
    tom = await make_profile(tmp_path, relay.url, "tom", TEEN2)
    async with open_clients(tia, tom) as (t, o):
        await connect(t, o)
        delivered = await send_and_wait(t, "tom", "did you finish the maths homework")
        await receive(o, delivered)
    async with open_clients(tia) as (t,):
        waiting = await send_and_wait(t, "tom", "see you at practice")
    await wait_delivered(relay, delivered.msg_id)

    package = await export(relay, "tia", tmp_path / "package-tia")
    messages = by_id(package)
    assert messages[delivered.msg_id]["mode"] == "visible"
    assert messages[delivered.msg_id]["text"] is None
    assert messages[delivered.msg_id]["withheld"] == "not_retained"
    assert messages[waiting.msg_id]["text"] == "see you at practice"
    assert package["account.json"]["age_band"] == "teen_13_15"
    assert b"maths homework" not in package_bytes(tmp_path / "package-tia")


async def test_visible_text_is_exported_within_retention_and_not_after_the_sweep(tmp_path):
    """A policy keeping delivered visible text 7 days: exported with its text, then after
    the sweep that deletes it, exported as metadata only."""
    policy = tmp_path / "keep-visible.toml"
    text = (PRESETS_DIR / "default.toml").read_text()
    assert "visible_days = 0" in text
    policy.write_text(text.replace("visible_days = 0", "visible_days = 7", 1))
    clock = Clock()
    relay = await Relay(tmp_path / "relay", clock=clock, policy=str(policy)).start()
    try:
        assert relay.app[POLICY].retention.visible_days == 7
        mia = await make_profile(tmp_path, relay.url, "mia", TEEN)
        noa = await make_profile(tmp_path, relay.url, "noa", TEEN2)
        async with open_clients(mia, noa) as (m, n):
            await connect(m, n)
            sent = await send_and_wait(m, "noa", "the science fair is on tuesday")
            await receive(n, sent)
            back = await send_and_wait(n, "mia", "bring the volcano model")
            await receive(m, back)
        await wait_delivered(relay, sent.msg_id, back.msg_id)

        kept = by_id(await export(relay, "mia", tmp_path / "within"))
        assert kept[sent.msg_id]["text"] == "the science fair is on tuesday"
        assert kept[back.msg_id]["text"] == "bring the volcano model"
        assert kept[sent.msg_id]["delivered_at"] is not None

        clock.advance(days=8)
        deleted = await sweep(
            relay.app[STORE],  # type: ignore[arg-type]
            relay.app[POLICY].retention,
            clock(),
            relay.config.data_dir / "outbox",
        )
        assert deleted.visible_texts == 2
        after = by_id(await export(relay, "mia", tmp_path / "after"))
        assert set(after) == {sent.msg_id, back.msg_id}
        for item in after.values():
            assert item["text"] is None and item["withheld"] == "not_retained"
            assert item["size"] > 0 and item["delivered_at"] is not None
        stored = package_bytes(tmp_path / "after")
        assert b"science fair" not in stored and b"volcano" not in stored
    finally:
        await relay.stop()


async def test_reports_evidence_blocks_corrections_and_the_audit_entry(relay, tmp_path):
    """A verified report's text goes out (evidence and report), the reporter's own
    unverifiable encrypted message does not; blocks both ways, an admin age correction; the
    audit log verifies afterwards and holds the export with every file's hash."""
    cara = await make_profile(tmp_path, relay.url, "cara", ADULT)
    dan = await make_profile(tmp_path, relay.url, "dan", ADULT2)
    eve = await make_profile(tmp_path, relay.url, "eve", years_ago(29))
    fin = await make_profile(tmp_path, relay.url, "fin", years_ago(31))
    async with open_clients(cara, dan, eve, fin) as (c, d, e, _f):
        await connect(c, d)
        theirs = await send_and_wait(c, "dan", "buy my discount watches now")
        await receive(d, theirs)
        mine = await send_and_wait(d, "cara", "please stop sending me offers")
        await receive(c, mine)
        await d.report("cara", "unsolicited sales", last=2)
        await e.block("cara")
        await c.block("fin")
    data_dir = relay.config.data_dir
    await set_birthdate(data_dir, "cara", years_ago(42), "passport seen")

    out = tmp_path / "package-cara"
    package = await export(relay, "cara", out)

    evidence = package["evidence.json"]["evidence"]
    assert [(i["sender"], i["franking"], i["text"]) for i in evidence if i["text"]] == [
        ("cara", "verified", "buy my discount watches now")
    ]
    assert all(i["case_subject"] == "cara" and i["case_id"] for i in evidence)
    assert b"please stop sending me offers" not in package_bytes(out)
    contacts = package["contacts.json"]
    (report,) = contacts["reports"]
    assert (report["reporter"], report["reported"]) == ("dan", "cara")
    assert report["reason"] == "unsolicited sales"
    attached = {m["id"]: m for m in report["messages"]}
    assert attached[theirs.msg_id]["text"] == "buy my discount watches now"
    assert attached[theirs.msg_id]["franking"] == "verified"
    assert attached[mine.msg_id]["text"] is None
    assert attached[mine.msg_id]["mode"] == "e2ee"
    assert [b["handle"] for b in contacts["blocked_by"]] == ["eve"]
    assert [b["handle"] for b in contacts["blocks_made"]] == ["fin"]

    history = package["account.json"]["band_history"]
    (correction,) = history["admin_corrections"]
    assert correction["birth_date_before"] == ADULT.isoformat()
    assert correction["birth_date_after"] == years_ago(42).isoformat()
    assert correction["band_before"] == correction["band_after"] == "adult"
    assert correction["reason"] == "passport seen"
    assert package["account.json"]["birth_date"] == years_ago(42).isoformat()

    done = subprocess.run(
        [sys.executable, "-m", "launcher", "admin", "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (entry,) = db_rows(
        relay,
        "SELECT actor, detail FROM audit WHERE action = 'legal_export' AND subject = 'cara'",
    )
    detail = json.loads(entry[1])
    assert entry[0] == "admin" and detail["process"] == PROCESS
    assert (detail["from"], detail["to"]) == days()
    assert detail["files"] == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()
    }


async def test_refusals_write_nothing(relay, tmp_path, monkeypatch):
    """An unknown account, a non-empty --out, --from after --to: an error, exit non-zero,
    no package and no audit entry. A failed audit write removes the package."""
    await make_profile(tmp_path, relay.url, "gia", ADULT)
    data_dir = relay.config.data_dir
    exports_before = db_rows(relay, "SELECT COUNT(*) FROM audit WHERE action = 'legal_export'")

    missing = tmp_path / "unknown"
    result = await run_export(data_dir, "nobody_here", missing)
    assert result.exit_code != 0 and "no account @nobody_here" in result.output
    assert not missing.exists()

    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    result = await run_export(data_dir, "gia", full)
    assert result.exit_code != 0 and "not an empty directory" in result.output
    assert [p.name for p in full.iterdir()] == ["notes.txt"]

    backwards = tmp_path / "backwards"
    result = await run_export(data_dir, "gia", backwards, "2026-03-02", "2026-03-01")
    assert result.exit_code != 0 and "after --to" in result.output
    assert not backwards.exists()

    result = await run_export(data_dir, "gia", tmp_path / "baddate", "2026-13-01", "2026-03-01")
    assert result.exit_code != 0 and "YYYY-MM-DD" in result.output

    def broken(*args, **kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr("server.admin.legal_export.append_in", broken)
    unaudited = tmp_path / "unaudited"
    result = await run_export(data_dir, "gia", unaudited)
    assert result.exit_code != 0
    assert not unaudited.exists()

    assert db_rows(relay, "SELECT COUNT(*) FROM audit WHERE action = 'legal_export'") == (
        exports_before
    )
