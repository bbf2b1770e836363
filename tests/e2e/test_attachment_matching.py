"""Known-material matching on `visible` attachments (issue 13, NCMEC principle 2), against a
real relay with a real hash bank: an unrelated image is delivered; a resized, re-encoded
copy of a banked image is held — never delivered, the sender told only
nothing but an ordinary `accepted` — with a `child_safety` case carrying the match details, the blob
kept as evidence and the sender restricted pending review. Every image is generated here
(gradients, shapes, noise): synthetic and benign."""

from __future__ import annotations

import io
import random
import sqlite3
from pathlib import Path

import pytest_asyncio
from PIL import Image, ImageDraw

from client.relay.blobs import BlobTransfer
from protocol.attachments import AttachmentRef
from protocol.frames import Accepted, ContactRequest, ContactRespond, Deliver, Done, Send
from server.app_keys import RELAY_ID, SAFETY
from server.safety.hashing import banks_dir, hash_file
from tests.server.raw import Person, connect, new_id, request, wait_for
from tests.support import Relay, years_ago


def picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(size[1]):  # a gradient, different per seed
        shade = int(255 * y / size[1])
        draw.line([(0, y), (size[0], y)], fill=(shade, rng.randint(0, 255), 255 - shade))
    for _ in range(12):
        x, y = rng.randint(0, size[0]), rng.randint(0, size[1])
        r = rng.randint(20, 120)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return image


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest_asyncio.fixture
async def relay(tmp_path):
    """A relay whose data directory has a bank holding one generated picture's hashes."""
    data_dir = tmp_path / "relay"
    banked = tmp_path / "banked.png"
    picture(1).save(banked)
    hashes = hash_file(banked)
    bank = banks_dir(data_dir) / "test_bank"
    bank.mkdir(parents=True)
    (bank / "pdq.txt").write_text(f"{hashes['pdq']} synthetic-test-picture\n")
    relay = await Relay(data_dir).start()
    yield relay
    await relay.stop()


async def upload(relay: Relay, person: Person, data: bytes, folder: Path) -> str:
    path = folder / f"{new_id()}.jpg"
    path.write_bytes(data)
    transfer = BlobTransfer(
        relay.url, person.handle, person.sign, lambda: relay.app[RELAY_ID], relay.config.clock
    )
    blob_id = new_id()
    await transfer.upload(blob_id, path, "visible")
    return blob_id


async def test_a_banked_image_is_held_and_an_unrelated_one_delivered(relay, tmp_path):
    teen = await Person("tia", years_ago(15)).register(relay)
    adult = await Person("vic", years_ago(40)).register(relay)
    async with connect(relay, teen) as t, connect(relay, adult) as v:
        assert isinstance(await request(t, ContactRequest(rid=new_id(), to="vic")), Done)
        answer = await request(v, ContactRespond(rid=new_id(), handle="tia", accept=True))
        assert isinstance(answer, Done)

        # An unrelated picture goes through, with the relay's own digest in the reference.
        unrelated = jpeg(picture(2))
        blob = await upload(relay, adult, unrelated, tmp_path)
        ref = AttachmentRef(id=blob, size=len(unrelated), name="park.jpg", type="image/jpeg")
        sent = Send(id=new_id(), to="tia", mode="visible", body="look", attachment=ref)
        assert isinstance(await request(v, sent), Accepted)
        got = await wait_for(t, lambda f: isinstance(f, Deliver) and f.id == sent.id)
        assert got.attachment.id == blob and got.attachment.name == "park.jpg"

        # A resized, re-encoded copy of the banked picture: held, and nothing says why.
        copy = jpeg(picture(1).resize((480, 360)), quality=70)
        held_blob = await upload(relay, adult, copy, tmp_path)
        held = Send(
            id=new_id(),
            to="tia",
            mode="visible",
            body="",
            attachment=AttachmentRef(
                id=held_blob, size=len(copy), name="pic.jpg", type="image/jpeg"
            ),
        )
        # Answered exactly like a stored message (as a block's silent drop is), and never
        # delivered: tia gets the next message, not the held one.
        answer = await request(v, held)
        assert isinstance(answer, Accepted) and answer.id == held.id
        # Restricted now, pending review (the policy's restrict_on_match).
        text_only = Send(id=new_id(), to="tia", mode="visible", body="resent")
        assert (await request(v, text_only)).code == "sender_restricted"

    with sqlite3.connect(relay.config.database_path) as db:
        assert db.execute(
            "SELECT COUNT(*) FROM messages WHERE msg_id = ?", (held.id,)
        ).fetchone() == (0,)
        assert db.execute("SELECT state FROM blobs WHERE id = ?", (held_blob,)).fetchone() == (
            "held",
        )
        ((queue, case_id),) = db.execute(
            "SELECT queue, id FROM cases WHERE subject = 'vic' AND status = 'open'"
        ).fetchall()
        ((source, explanation),) = db.execute(
            "SELECT source, explanation FROM findings WHERE case_id = ?", (case_id,)
        ).fetchall()
        assert db.execute("SELECT blob FROM evidence WHERE case_id = ?", (case_id,)).fetchall() == [
            (held_blob,)
        ]
    assert queue == "child_safety" and source == "hash_match"
    assert "bank test_bank, pdq distance" in explanation
    assert (relay.config.data_dir / "blobs" / "vic" / held_blob).exists()  # kept
    assert relay.app[SAFETY].social.is_restricted("vic")  # pending review (default policy)


async def test_a_held_attachment_goes_with_its_case_evidence_after_retention(relay, tmp_path):
    from datetime import timedelta

    from server.app_keys import POLICY, STORE
    from server.safety.retention import sweep

    adult = await Person("vic", years_ago(40)).register(relay)
    teen = await Person("tia", years_ago(15)).register(relay)
    async with connect(relay, teen) as t, connect(relay, adult) as v:
        await request(t, ContactRequest(rid=new_id(), to="vic"))
        await request(v, ContactRespond(rid=new_id(), handle="tia", accept=True))
        copy = jpeg(picture(1), quality=60)
        blob = await upload(relay, adult, copy, tmp_path)
        ref = AttachmentRef(id=blob, size=len(copy), name="a.jpg", type="image/jpeg")
        held = Send(id=new_id(), to="tia", mode="visible", body="", attachment=ref)
        assert isinstance(await request(v, held), Accepted)  # held: answered as stored
    path = relay.config.data_dir / "blobs" / "vic" / blob
    now = relay.config.clock()
    with sqlite3.connect(relay.config.database_path) as db:  # a moderator closed it
        db.execute("UPDATE cases SET status = 'closed', closed_at = ?", (now.timestamp(),))
    retention = relay.app[POLICY].retention
    outbox = relay.config.data_dir / "outbox"
    await sweep(relay.app[STORE], retention, now + timedelta(days=364), outbox)
    assert path.exists()
    await sweep(relay.app[STORE], retention, now + timedelta(days=366), outbox)
    assert not path.exists()
    with sqlite3.connect(relay.config.database_path) as db:
        assert db.execute("SELECT * FROM blobs WHERE id = ?", (blob,)).fetchall() == []


async def test_an_image_too_large_to_check_is_held_for_review(relay, tmp_path):
    adult = await Person("vic", years_ago(40)).register(relay)
    teen = await Person("tia", years_ago(15)).register(relay)
    big = io.BytesIO()
    Image.new("L", (6400, 6400)).save(big, "PNG")  # 41 MP: over the decode cap, tiny file
    data = big.getvalue()
    async with connect(relay, teen) as t, connect(relay, adult) as v:
        await request(t, ContactRequest(rid=new_id(), to="vic"))
        await request(v, ContactRespond(rid=new_id(), handle="tia", accept=True))
        blob = await upload(relay, adult, data, tmp_path)
        ref = AttachmentRef(id=blob, size=len(data), name="huge.png", type="image/png")
        held = Send(id=new_id(), to="tia", mode="visible", body="", attachment=ref)
        assert isinstance(await request(v, held), Accepted)  # answered as stored
    with sqlite3.connect(relay.config.database_path) as db:
        assert db.execute(
            "SELECT COUNT(*) FROM messages WHERE msg_id = ?", (held.id,)
        ).fetchone() == (0,)
        assert db.execute("SELECT state FROM blobs WHERE id = ?", (blob,)).fetchone() == ("held",)
        sources = [s for (s,) in db.execute("SELECT source FROM findings").fetchall()]
    assert sources == ["unscannable_attachment"]
