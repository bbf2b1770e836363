"""The key directory (issue #4): signed prekeys are checked, one-time prekeys are handed out
at most once (and only for an e2ee conversation), the policy decides who may fetch a bundle,
and the bundle says the conversation's mode. Raw frames, accounts registered over plain
HTTP (so no client publishes keys behind the test's back); E2EE switched on per test."""

from __future__ import annotations

import nacl.bindings
import pytest

from protocol import policy as shared_policy
from protocol.frames import (
    Bundle,
    Done,
    Error,
    FetchBundle,
    OneTimePrekey,
    PrekeysLow,
    SignedPrekey,
    UploadPrekeys,
)
from protocol.limits import PREKEYS_LOW_WATER
from protocol.policy import band
from tests.server.raw import Person, connect, new_id, request, wait_for
from tests.support import TEEN


@pytest.fixture
def e2ee_on(monkeypatch):
    """Adults' conversations are e2ee (as issue #4 ships), whatever the module's switch says."""
    monkeypatch.setattr(shared_policy, "E2EE_AVAILABLE", True)


def x25519_public(seed: int) -> bytes:
    return nacl.bindings.crypto_scalarmult_base(bytes([seed]) * 32)


def signed_prekey(person: Person, key_id: int = 1) -> SignedPrekey:
    public = x25519_public(200 + key_id)
    return SignedPrekey(id=key_id, public=public, signature=person.sign(b"\x05" + public))


def one_time(count: int, start: int = 1) -> list[OneTimePrekey]:
    return [OneTimePrekey(id=i, public=x25519_public(i % 200)) for i in range(start, start + count)]


async def upload(ws, signed: SignedPrekey | None, keys: list[OneTimePrekey]) -> object:
    frame = UploadPrekeys(rid=new_id(), signed_prekey=signed, one_time_prekeys=keys)
    return await request(ws, frame)


async def stored(ws, signed: SignedPrekey | None, keys: list[OneTimePrekey]) -> int:
    """Upload; the one-time stock the relay reports afterwards."""
    done = await upload(ws, signed, keys)
    assert isinstance(done, Done), done
    return int(done.outcome.removeprefix("stored:"))


async def fetch(ws, handle: str) -> object:
    return await request(ws, FetchBundle(rid=new_id(), handle=handle))


def code(frame: object) -> str:
    assert isinstance(frame, Error), frame
    return frame.code


async def test_one_time_prekeys_are_handed_out_once_then_the_signed_prekey_alone(relay, e2ee_on):
    ana = await Person("ana").register(relay)
    ben = await Person("ben").register(relay)
    async with connect(relay, ana) as a:
        assert await stored(a, signed_prekey(ana), one_time(3)) == 3
    ids = []
    async with connect(relay, ben) as b:
        for _ in range(4):
            bundle = await fetch(b, "ana")
            assert isinstance(bundle, Bundle), bundle
            assert bundle.mode == "e2ee"
            assert bundle.identity_key == ana.identity_key
            assert bundle.signed_prekey == signed_prekey(ana)
            assert bundle.declaration.handle == "ana"
            assert bundle.declaration.band == band(
                ana.birthdate, bundle.declaration.declared_at.date()
            )
            ids.append(bundle.one_time_prekey.id if bundle.one_time_prekey else None)
    assert ids == [1, 2, 3, None]
    # A retried upload of the same ids doesn't duplicate them.
    async with connect(relay, ana) as a:
        assert await stored(a, None, one_time(2, start=10)) == 2
        assert await stored(a, None, one_time(2, start=10)) == 2


async def test_asking_only_for_the_mode_spends_no_one_time_prekey(relay, e2ee_on):
    ana = await Person("ana").register(relay)
    ben = await Person("ben").register(relay)
    async with connect(relay, ana) as a:
        assert await stored(a, signed_prekey(ana), one_time(2)) == 2
    async with connect(relay, ben) as b:
        quiet = await request(b, FetchBundle(rid=new_id(), handle="ana", one_time_prekey=False))
        assert isinstance(quiet, Bundle) and quiet.mode == "e2ee"
        assert quiet.one_time_prekey is None
        ids = [(await fetch(b, "ana")).one_time_prekey for _ in range(3)]  # type: ignore[union-attr]
    assert [k.id if k else None for k in ids] == [1, 2, None]


async def test_a_forged_signed_prekey_is_refused(relay):
    ana = await Person("ana").register(relay)
    async with connect(relay, ana) as a:
        forged = SignedPrekey(id=1, public=x25519_public(1), signature=b"\x00" * 64)
        assert code(await upload(a, forged, [])) == "bad_signature"


async def test_no_bundle_before_keys_and_none_for_whom_the_policy_hides(relay, e2ee_on):
    ana = await Person("ana").register(relay)
    ben = await Person("ben").register(relay)
    kid = await Person("kid", TEEN).register(relay)
    async with connect(relay, ana) as a:
        assert code(await fetch(a, "kid")) == "contact_not_allowed"  # an adult stranger
        assert code(await fetch(a, "nobody_here")) == "unknown_recipient"
        assert code(await fetch(a, "ana")) == "cannot_target_self"
    async with connect(relay, ben) as b:
        assert code(await fetch(b, "ana")) == "no_prekeys"  # e2ee, and ana published none
    async with connect(relay, kid) as k:
        # A minor and an adult: visible, so the bundle (for the declaration) needs no keys.
        bundle = await fetch(k, "ana")
        assert isinstance(bundle, Bundle), bundle
        assert (bundle.mode, bundle.signed_prekey, bundle.one_time_prekey) == (
            "visible",
            None,
            None,
        )


async def test_the_owner_is_asked_for_more_when_stock_runs_low(relay, e2ee_on):
    ana = await Person("ana").register(relay)
    ben = await Person("ben").register(relay)
    async with connect(relay, ana) as a:
        assert await stored(a, signed_prekey(ana), one_time(PREKEYS_LOW_WATER)) == (
            PREKEYS_LOW_WATER
        )
        async with connect(relay, ben) as b:
            assert isinstance(await fetch(b, "ana"), Bundle)
        low = await wait_for(a, lambda f: isinstance(f, PrekeysLow))
        assert low == PrekeysLow(remaining=PREKEYS_LOW_WATER - 1)
