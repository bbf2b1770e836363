"""Attachment bytes over the relay's signed HTTP routes (issue 13, PROTOCOL.md §6.6): what
goes up comes down identical, only to whom it may, within the size and quota limits, and a
refused, mismatched or interrupted upload leaves nothing behind after the sweep. A real
relay and the real client library; invented files."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import sqlite3
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from client.errors import ClientError
from protocol.attachments import upload_message
from protocol.identity import rfc3339
from server.app_keys import BLOBS, SAFETY
from tests.support import Clock, Relay, make_profile, open_clients, years_ago

ADULT = years_ago(40)
DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


def small_limits_policy(tmp_path: Path) -> str:
    text = DEFAULT.read_text().replace(
        "[restriction]",
        "attachment_max_bytes = 100000\nattachment_quota_bytes = 150000\n\n[restriction]",
        1,
    )
    path = tmp_path / "small.toml"
    path.write_text(text)
    return str(path)


@pytest_asyncio.fixture
async def world(tmp_path):
    clock = Clock()
    relay = await Relay(
        tmp_path / "relay", clock=clock, policy=small_limits_policy(tmp_path)
    ).start()
    amy = await make_profile(tmp_path, relay.url, "amy", ADULT)
    bob = await make_profile(tmp_path, relay.url, "bob", ADULT)
    async with open_clients(amy, bob) as (a, b):
        yield relay, clock, a, b, tmp_path
    await relay.stop()


def a_file(folder: Path, size: int, name: str = "file.bin") -> Path:
    path = folder / name
    path.write_bytes(secrets.token_bytes(size))
    return path


def blob_files(relay: Relay) -> list[Path]:
    root = relay.config.data_dir / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def blob_rows(relay: Relay) -> list[tuple]:
    with sqlite3.connect(relay.config.database_path) as db:
        return db.execute("SELECT owner, id, size, state FROM blobs ORDER BY id").fetchall()


async def test_an_upload_is_served_to_nobody_until_a_message_names_it(world):
    relay, _, a, b, tmp = world
    source = a_file(tmp, 70_000)
    receipt = await a.blobs.upload("blob-0001", source, "visible")
    assert (receipt.size, receipt.sha256) == (
        70_000,
        hashlib.sha256(source.read_bytes()).hexdigest(),
    )
    assert blob_rows(relay) == [("amy", "blob-0001", 70_000, "uploaded")]
    # Not even to its uploader (who has the file; a held blob must look like any other),
    # and not to bob: the same answer as a blob that doesn't exist.
    for client in (a, b):
        with pytest.raises(ClientError) as info:
            await client.blobs.download("amy", "blob-0001", tmp / "stolen.bin", 10**6)
        assert info.value.code == "not_found" and not (tmp / "stolen.bin").exists()
    # A retried upload of the same bytes is answered like the first; other bytes under the
    # same id are refused.
    assert (await a.blobs.upload("blob-0001", source, "visible")).sha256 == receipt.sha256
    with pytest.raises(ClientError) as info:
        await a.blobs.upload("blob-0001", a_file(tmp, 10, "other.bin"), "visible")
    assert info.value.code == "blob_exists"


async def test_size_and_quota_limits_give_their_codes(world):
    relay, _, a, _, tmp = world
    with pytest.raises(ClientError) as info:
        await a.blobs.upload("blob-big1", a_file(tmp, 100_001), "visible")
    assert info.value.code == "attachment_too_large"
    await a.blobs.upload("blob-ok01", a_file(tmp, 90_000, "one.bin"), "e2ee")
    with pytest.raises(ClientError) as info:
        await a.blobs.upload("blob-ok02", a_file(tmp, 90_000, "two.bin"), "e2ee")
    assert info.value.code == "attachment_quota_exceeded"
    assert [r[1] for r in blob_rows(relay)] == ["blob-ok01"]
    assert len(blob_files(relay)) == 1


async def signed_put(
    relay, client, blob_id: str, body: bytes, *, size=None, digest=None, at=None, sign=True
):
    """A hand-made upload: the fields a client signs, then whatever body we like."""
    size = len(body) if size is None else size
    digest = digest or hashlib.sha256(body).hexdigest()
    at = at or relay.config.clock()
    message = upload_message(
        client._connection.relay_id(), client.handle, blob_id, "visible", size, digest, at
    )
    signature = client._identity.sign(message) if sign else bytes(64)
    headers = {
        "Agechat-Handle": client.handle,
        "Agechat-Time": rfc3339(at),
        "Agechat-Signature": base64.b64encode(signature).decode(),
        "Agechat-Mode": "visible",
        "Agechat-Sha256": digest,
        "Content-Length": str(size),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{relay.url}/v1/blobs/{blob_id}", data=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_forged_stale_or_mismatched_uploads_are_refused_and_leave_nothing(world):
    relay, _, a, _, _ = world
    body = b"benign test bytes " * 100
    status, out = await signed_put(relay, a, "blob-forg", body, sign=False)
    assert (status, out["error"]["code"]) == (401, "bad_signature")
    status, out = await signed_put(
        relay, a, "blob-stal", body, at=relay.config.clock() - timedelta(minutes=10)
    )
    assert (status, out["error"]["code"]) == (401, "stale_request")
    # Signed for other bytes than the ones sent.
    status, out = await signed_put(
        relay, a, "blob-diff", body, digest=hashlib.sha256(b"other").hexdigest()
    )
    assert (status, out["error"]["code"]) == (400, "upload_mismatch")
    assert blob_rows(relay) == [] and blob_files(relay) == []


async def test_an_interrupted_upload_leaves_no_blob_after_the_sweep(world):
    relay, clock, a, _, _ = world
    size = 80_000
    digest = hashlib.sha256(b"x" * size).hexdigest()
    at = relay.config.clock()
    message = upload_message(
        a._connection.relay_id(), "amy", "blob-half", "visible", size, digest, at
    )
    head = (
        f"PUT /v1/blobs/blob-half HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Agechat-Handle: amy\r\nAgechat-Time: {rfc3339(at)}\r\n"
        f"Agechat-Signature: {base64.b64encode(a._identity.sign(message)).decode()}\r\n"
        f"Agechat-Mode: visible\r\nAgechat-Sha256: {digest}\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    _, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(head.encode() + b"x" * (size // 2))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()  # the client dies half-way
    await asyncio.sleep(0.3)
    assert blob_rows(relay) == []
    clock.advance(hours=2)
    await relay.app[BLOBS].sweep(clock())
    assert blob_files(relay) == []


async def test_a_blob_no_message_names_is_swept_after_a_day(world):
    relay, clock, a, _, tmp = world
    await a.blobs.upload("blob-lone", a_file(tmp, 1000), "visible")
    clock.advance(hours=23)
    assert await relay.app[BLOBS].sweep(clock()) == 0
    clock.advance(hours=2)
    assert await relay.app[BLOBS].sweep(clock()) == 1
    assert blob_rows(relay) == [] and blob_files(relay) == []


async def test_a_suspended_account_is_not_revealed_to_an_unsigned_request(world):
    relay, _, a, b, _ = world
    relay.app[SAFETY].suspended.add("bob")
    try:
        # A forged request about bob gets what one about anyone gets: bad_signature.
        for client in (a, b):
            status, out = await signed_put(relay, client, "blob-susp", b"benign", sign=False)
            assert (status, out["error"]["code"]) == (401, "bad_signature")
        # Only bob's own signed request learns it.
        status, out = await signed_put(relay, b, "blob-susp", b"benign")
        assert (status, out["error"]["code"]) == (403, "account_suspended")
    finally:
        relay.app[SAFETY].suspended.discard("bob")


async def test_empty_files_are_not_free(world):
    _, _, a, _, tmp = world
    empty = tmp / "empty.bin"
    empty.write_bytes(b"")
    accepted = 0
    with pytest.raises(ClientError) as info:
        for i in range(100):
            await a.blobs.upload(f"blob-empty{i:03d}", empty, "visible")
            accepted += 1
    assert info.value.code == "attachment_quota_exceeded"
    assert accepted == 150_000 // 4096  # each counts as 4 KiB against the 150 kB quota


async def test_an_account_named_tmp_keeps_its_files(world):
    relay, clock, _, _, tmp = world
    person = await make_profile(tmp, relay.url, "tmp", ADULT)
    async with open_clients(person) as (t,):
        await t.blobs.upload("blob-tmp01", a_file(tmp, 1000, "t.bin"), "visible")
    clock.advance(hours=2)
    await relay.app[BLOBS].sweep(clock())
    assert [r[:2] for r in blob_rows(relay)] == [("tmp", "blob-tmp01")]
    assert (relay.config.data_dir / "blobs" / "tmp" / "blob-tmp01").exists()
