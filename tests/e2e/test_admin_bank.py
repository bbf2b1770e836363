"""`agechat admin bank add | list` on a real relay's data directory (issue 13): files hashed
into a bank, re-adding is a no-op, low-quality images and non-images get exact hashes only,
a malformed bank is named by file and line, everything is audited and the chain verifies,
and what `bank add` wrote is what the relay's matcher loads.

Synthetic, benign images only (tests/server/test_hash_matching.py makes them)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from PIL import Image

from protocol.policy import HashMatching
from server.safety.hashing import HashMatcher, banks_dir
from tests.server.test_hash_matching import COPIES, encode, synthetic
from tests.support import Relay


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher", "admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_bank_add_and_list_are_audited_and_feed_the_matcher(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    await relay.stop()
    data_dir = relay.config.data_dir
    files = tmp_path / "files"
    files.mkdir()
    photo, photo2 = files / "photo.png", files / "photo2.jpg"
    photo.write_bytes(encode(synthetic(0)))
    photo2.write_bytes(encode(synthetic(4), "JPEG", quality=90))
    flat = files / "flat.png"
    flat.write_bytes(encode(Image.new("RGB", (300, 200), (40, 90, 160))))
    notes = files / "notes.bin"
    notes.write_bytes(b"benign test bytes\n" * 100)
    everything = [str(p) for p in (photo, photo2, flat, notes)]

    done = admin("bank", "add", "test_bank", *everything, "--label", "synthetic set 1",
                 "--data-dir", str(data_dir))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = {Path(x["file"]).name: x for x in map(json.loads, done.stdout.splitlines())}
    assert list(lines) == ["photo.png", "photo2.jpg", "flat.png", "notes.bin"]
    for name in ("photo.png", "photo2.jpg"):
        assert lines[name]["added"] == ["pdq", "sha256", "md5"]
        assert len(lines[name]["pdq"]) == 64 and lines[name]["pdq_quality"] >= 50
    assert lines["flat.png"]["pdq_skipped"] == "low_quality"
    assert lines["flat.png"]["added"] == ["sha256", "md5"]
    assert "flat.png: PDQ quality 0 is below 50" in done.stderr
    assert lines["notes.bin"]["pdq"] is None and lines["notes.bin"]["pdq_skipped"] == "not_an_image"
    assert lines["notes.bin"]["added"] == ["sha256", "md5"]

    again = admin("bank", "add", "test_bank", str(photo), "--data-dir", str(data_dir))
    assert again.returncode == 0 and json.loads(again.stdout)["added"] == []

    listed = admin("bank", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(x) for x in listed.stdout.splitlines()] == [
        {"bank": "test_bank", "pdq": 2, "sha256": 4, "md5": 4}
    ]

    # What the relay will load at start matches an altered copy, with the label.
    matcher = HashMatcher.load(banks_dir(data_dir), HashMatching())
    found = matcher.match_bytes(COPIES["crop_resize_jpeg"](synthetic(0)))
    assert [(m.bank, m.signal, m.label) for m in found] == [("test_bank", "pdq", "synthetic set 1")]
    assert [m.signal for m in matcher.match_path(notes)] == ["sha256", "md5"]

    bad = admin("bank", "add", "Bad-Name", str(notes), "--data-dir", str(data_dir))
    assert bad.returncode == 2 and "bank name" in bad.stderr

    with (banks_dir(data_dir) / "test_bank" / "md5.txt").open("a") as f:
        f.write("not-a-hash\n")
    broken = admin("bank", "list", "--data-dir", str(data_dir))
    assert broken.returncode == 1 and "md5.txt line 5:" in broken.stderr
    assert "Traceback" not in broken.stderr

    verified = admin("audit", "verify", "--data-dir", str(data_dir))
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    with sqlite3.connect(relay.config.database_path) as db:
        rows = db.execute("SELECT actor, action, subject, detail FROM audit").fetchall()
    assert [r[:3] for r in rows] == [
        ("admin", "bank_add", "test_bank"),
        ("admin", "bank_add", "test_bank"),
        ("admin", "bank_list", "banks"),
    ]
    first, second = json.loads(rows[0][3]), json.loads(rows[1][3])
    assert first["added"]["pdq"] == [lines["photo.png"]["pdq"], lines["photo2.jpg"]["pdq"]]
    assert len(first["added"]["sha256"]) == 4 and first["label"] == "synthetic set 1"
    assert second["added"] == {"pdq": [], "sha256": [], "md5": []}


def test_bank_commands_need_a_relay_data_dir(tmp_path):
    done = admin("bank", "list", "--data-dir", str(tmp_path / "nothing"))
    assert done.returncode == 1 and "no relay data" in done.stderr
