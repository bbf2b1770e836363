"""The audit log is a hash chain: an untouched log verifies, and changing, deleting or
reordering any entry directly in the database is found and the entry named (issue 11)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from server.delivery.store import _SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, SqliteStore
from server.safety.audit import AuditLog

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


async def write_log(path, count: int = 5) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        log = AuditLog(store)
        for i in range(count):
            await log.append(
                f"mod{i % 2}",
                "reveal",
                f"case-{i}",
                {"i": i, "note": "ünïcode ok"},
                T0 + timedelta(seconds=i),
            )
    finally:
        await store.close()


def verify(data_dir) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "launcher", "admin", "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
async def data_dir(tmp_path):
    await write_log(tmp_path / "relay.sqlite3")
    return tmp_path


def tamper(data_dir, *statements) -> None:
    with sqlite3.connect(data_dir / "relay.sqlite3") as db:
        for sql, params in statements:
            db.execute(sql, params)


async def test_an_untouched_log_verifies(data_dir):
    code, out = verify(data_dir)
    assert code == 0 and out["ok"] is True and out["entries"] == 5
    assert len(out["head"]) == 64


@pytest.mark.parametrize("column", ["actor", "action", "subject", "detail"])
async def test_an_altered_entry_is_named(data_dir, column):
    tamper(data_dir, (f"UPDATE audit SET {column} = 'changed' WHERE id = 3", ()))
    code, out = verify(data_dir)
    assert code == 1 and out["error"]["code"] == "audit_broken" and out["error"]["entry"] == 3


async def test_an_altered_time_is_named(data_dir):
    tamper(data_dir, ("UPDATE audit SET created_at = created_at + 60 WHERE id = 2", ()))
    assert verify(data_dir)[1]["error"]["entry"] == 2


async def test_an_entry_altered_with_its_hash_recomputed_is_still_named(data_dir):
    """The forger recomputes entry 3's own hash: entry 4's link gives it away."""
    from server.safety.audit import _hash

    with sqlite3.connect(data_dir / "relay.sqlite3") as db:
        row = db.execute(
            "SELECT id, actor, action, subject, detail, created_at, prev_hash FROM audit "
            "WHERE id = 3"
        ).fetchone()
        forged = (row[0], row[1], row[2], row[3], '{"i": 99}', row[5])
        db.execute(
            "UPDATE audit SET detail = ?, entry_hash = ? WHERE id = 3",
            (forged[4], _hash(forged, row[6])),
        )
    code, out = verify(data_dir)
    assert code == 1 and out["error"]["entry"] == 4
    assert "link" in out["error"]["message"]


async def test_a_removed_entry_is_named(data_dir):
    tamper(data_dir, ("DELETE FROM audit WHERE id = 2", ()))
    code, out = verify(data_dir)
    assert code == 1 and out["error"]["entry"] == 2 and "removed" in out["error"]["message"]


async def test_removing_the_newest_entries_is_found(data_dir):
    tamper(data_dir, ("DELETE FROM audit WHERE id >= 4", ()))
    code, out = verify(data_dir)
    assert code == 1 and out["error"]["entry"] == 4 and "removed" in out["error"]["message"]


async def test_reordered_entries_are_named(data_dir):
    with sqlite3.connect(data_dir / "relay.sqlite3") as db:
        rows = {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT id, actor, action, subject, detail, created_at, prev_hash, entry_hash "
                "FROM audit WHERE id IN (2, 3)"
            )
        }
        for target, source in ((2, 3), (3, 2)):
            db.execute(
                "UPDATE audit SET actor = ?, action = ?, subject = ?, detail = ?, "
                "created_at = ?, prev_hash = ?, entry_hash = ? WHERE id = ?",
                (*rows[source], target),
            )
    code, out = verify(data_dir)
    assert code == 1 and out["error"]["entry"] == 2


async def test_a_missing_data_dir_is_a_clear_error(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher",
            "admin",
            "audit",
            "verify",
            "--data-dir",
            str(tmp_path / "nowhere"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no relay data" in done.stderr
    assert "Traceback" not in done.stderr


async def test_entries_from_before_the_chain_are_chained_once_on_upgrade(tmp_path):
    path = tmp_path / "relay.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for version, script in ((1, _SCHEMA_V1), (2, _SCHEMA_V2), (3, _SCHEMA_V3), (4, _SCHEMA_V4)):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={version}; COMMIT;")
    for i in range(2):
        db.execute(
            "INSERT INTO audit (actor, action, subject, detail, created_at) VALUES (?,?,?,?,?)",
            ("admin", "set_birthdate", f"kid{i}", "{}", T0.timestamp() + i),
        )
    db.close()
    await write_log(path, count=1)  # opening the store migrates; appending chains the old
    code, out = verify(tmp_path)
    assert code == 0 and out["entries"] == 3
    # Once chained, a wiped hash is a broken chain, never chained again.
    tamper(tmp_path, ("UPDATE audit SET entry_hash = NULL WHERE id = 1", ()))
    assert verify(tmp_path)[1]["error"]["entry"] == 1


async def test_no_meta_edit_launders_an_altered_entry(data_dir):
    """Verify never re-chains: removing bookkeeping from meta doesn't make an edit pass."""
    tamper(
        data_dir,
        ("UPDATE audit SET actor = 'someone_else' WHERE id = 2", ()),
        ("DELETE FROM meta WHERE key LIKE 'audit%'", ()),
    )
    assert verify(data_dir)[1]["error"]["entry"] == 2
    assert verify(data_dir)[1]["error"]["entry"] == 2  # and verifying changed nothing


def verify_expecting(data_dir, kept: str) -> tuple[int, dict]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher",
            "admin",
            "audit",
            "verify",
            "--data-dir",
            str(data_dir),
            "--expect",
            kept,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout)


async def test_a_kept_head_catches_truncation_with_the_head_rewritten(data_dir):
    code, out = verify(data_dir)
    kept = out["keep"]
    assert verify_expecting(data_dir, kept)[0] == 0
    with sqlite3.connect(data_dir / "relay.sqlite3") as db:
        (fourth,) = db.execute("SELECT entry_hash FROM audit WHERE id = 4").fetchone()
        db.execute("DELETE FROM audit WHERE id = 5")
        db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"4:{fourth.hex()}",))
    assert verify(data_dir)[0] == 0  # the chain alone can't tell
    code, out = verify_expecting(data_dir, kept)
    assert code == 1 and out["error"]["entry"] == 5


async def test_a_kept_head_catches_a_wiped_log(data_dir):
    kept = verify(data_dir)[1]["keep"]
    tamper(data_dir, ("DELETE FROM audit", ()), ("DELETE FROM meta WHERE key = 'audit_head'", ()))
    code, out = verify_expecting(data_dir, kept)
    assert code == 1 and "removed" in out["error"]["message"]


async def test_a_kept_head_catches_a_rewritten_chain(data_dir):
    """Recomputing every hash after an edit passes the chain check, not the kept head."""
    from server.safety.audit import GENESIS, _hash

    kept = verify(data_dir)[1]["keep"]
    with sqlite3.connect(data_dir / "relay.sqlite3") as db:
        db.execute("UPDATE audit SET detail = '{}' WHERE id = 1")
        prev = GENESIS
        for row in db.execute(
            "SELECT id, actor, action, subject, detail, created_at FROM audit ORDER BY id"
        ).fetchall():
            digest = _hash(row, prev)
            db.execute(
                "UPDATE audit SET prev_hash = ?, entry_hash = ? WHERE id = ?",
                (prev, digest, row[0]),
            )
            prev = digest
        db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"5:{prev.hex()}",))
    assert verify(data_dir)[0] == 0
    code, out = verify_expecting(data_dir, kept)
    assert code == 1 and out["error"]["entry"] == 5 and "rewritten" in out["error"]["message"]


@pytest.mark.parametrize("kept", ["0:", "0:" + "00" * 32, "3:abcd", "five:00"])
async def test_a_kept_head_that_checks_nothing_is_refused(data_dir, kept):
    command = ["admin", "audit", "verify", "--data-dir", str(data_dir), "--expect", kept]
    done = subprocess.run(
        [sys.executable, "-m", "launcher", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "SEQ:HASH" in done.stderr and not done.stdout
