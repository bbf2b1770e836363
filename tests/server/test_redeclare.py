"""`redeclare`: an account re-signs the band the relay already holds (PROTOCOL.md §6.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from protocol.codec import encode_frame
from protocol.frames import Done, Error, Redeclare
from protocol.identity import declaration_message
from protocol.registration import AgeDeclaration
from server.app_keys import STORE
from tests.server.raw import Person, answer, connect, new_id
from tests.support import TEEN, Relay


@pytest.fixture
async def relay(tmp_path):
    relay = await Relay(tmp_path / "relay").start()
    yield relay
    await relay.stop()


def declaration(person: Person, band: str, at: datetime) -> AgeDeclaration:
    at = at.replace(microsecond=0)
    signed = declaration_message(person.handle, band, person.identity_key, at)
    return AgeDeclaration(
        handle=person.handle,
        band=band,
        identity_key=person.identity_key,
        declared_at=at,
        signature=person.sign(signed),
    )


async def redeclare(relay: Relay, person: Person, decl: AgeDeclaration) -> object:
    async with connect(relay, person) as ws:
        rid = new_id()
        await ws.send_str(encode_frame(Redeclare(rid=rid, declaration=decl)))
        return await answer(ws, rid)


async def stored_declaration(relay: Relay, handle: str) -> AgeDeclaration:
    account = await relay.app[STORE].get_account(handle)
    assert account is not None
    return msgspec.json.decode(account.declaration, type=AgeDeclaration)


async def test_a_fresh_declaration_of_the_same_band_replaces_the_old_one(relay):
    teen = await Person("teen", TEEN).register(relay)
    later = datetime.now(UTC) + timedelta(seconds=5)
    reply = await redeclare(relay, teen, declaration(teen, "teen_13_15", later))
    assert isinstance(reply, Done) and reply.outcome == "redeclared"
    assert (await stored_declaration(relay, "teen")).declared_at == later.replace(microsecond=0)


@pytest.mark.parametrize(
    ("band", "shift", "code"),
    [
        ("adult", timedelta(0), "declaration_mismatch"),  # not the band the relay holds
        ("teen_13_15", timedelta(hours=2), "stale_declaration"),  # not signed just now
    ],
)
async def test_a_declaration_the_relay_cant_accept_is_refused(relay, band, shift, code):
    teen = await Person("teen", TEEN).register(relay)
    before = await stored_declaration(relay, "teen")
    reply = await redeclare(relay, teen, declaration(teen, band, datetime.now(UTC) - shift))
    assert isinstance(reply, Error) and reply.code == code
    assert await stored_declaration(relay, "teen") == before


async def test_a_declaration_signed_by_another_key_is_refused(relay):
    teen = await Person("teen", TEEN).register(relay)
    impostor = Person("teen", TEEN)
    forged = declaration(impostor, "teen_13_15", datetime.now(UTC))
    forged = msgspec.structs.replace(forged, identity_key=teen.identity_key)
    reply = await redeclare(relay, teen, forged)
    assert isinstance(reply, Error) and reply.code == "bad_signature"
