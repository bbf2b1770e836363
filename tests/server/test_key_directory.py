"""The key directory (issue #4's first relay piece): signed prekeys are checked, one-time
prekeys are handed out at most once, and the policy decides who may fetch a bundle."""

from __future__ import annotations

import asyncio

import nacl.bindings
import pytest

from client.errors import ClientError
from protocol.frames import OneTimePrekey, PrekeysLow, SignedPrekey
from protocol.limits import PREKEYS_LOW_WATER
from protocol.policy import band
from tests.support import PASSPHRASE, TEEN, make_profile, open_clients


def x25519_public(seed: int) -> bytes:
    return nacl.bindings.crypto_scalarmult_base(bytes([seed]) * 32)


def signed_prekey(profile, key_id: int = 1) -> SignedPrekey:
    public = x25519_public(200 + key_id)
    signature = profile.unlock(PASSPHRASE).sign(b"\x05" + public)
    return SignedPrekey(id=key_id, public=public, signature=signature)


def one_time(count: int, start: int = 1) -> list[OneTimePrekey]:
    return [OneTimePrekey(id=i, public=x25519_public(i % 200)) for i in range(start, start + count)]


async def test_one_time_prekeys_are_handed_out_once_then_the_signed_prekey_alone(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana")
    ben = await make_profile(tmp_path, relay.url, "ben")
    async with open_clients(ana, ben) as (a, b):
        assert await a.upload_prekeys(signed_prekey(ana), one_time(3)) == 3
        ids = []
        for _ in range(4):
            bundle = await b.fetch_bundle("ana")
            assert bundle.identity_key == ana.data.identity_key
            assert bundle.signed_prekey == signed_prekey(ana)
            assert bundle.declaration.band == band(
                ana.data.birthdate, bundle.declaration.declared_at.date()
            )
            ids.append(bundle.one_time_prekey.id if bundle.one_time_prekey else None)
        assert ids == [1, 2, 3, None]
        # A retried upload of the same ids doesn't duplicate them.
        assert await a.upload_prekeys(None, one_time(2, start=10)) == 2
        assert await a.upload_prekeys(None, one_time(2, start=10)) == 2


async def test_a_forged_signed_prekey_is_refused(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana")
    async with open_clients(ana) as (a,):
        forged = SignedPrekey(id=1, public=x25519_public(1), signature=b"\x00" * 64)
        with pytest.raises(ClientError) as info:
            await a.upload_prekeys(forged, [])
        assert info.value.code == "bad_signature"


async def test_no_bundle_before_keys_and_none_for_whom_the_policy_hides(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana")
    kid = await make_profile(tmp_path, relay.url, "kid", TEEN)
    async with open_clients(ana, kid) as (a, k):
        with pytest.raises(ClientError) as info:
            await a.fetch_bundle("kid")
        assert info.value.code == "contact_not_allowed"  # an adult stranger can't reach her
        with pytest.raises(ClientError) as info:
            await k.fetch_bundle("ana")
        assert info.value.code == "no_prekeys"
        with pytest.raises(ClientError) as info:
            await a.fetch_bundle("nobody_here")
        assert info.value.code == "unknown_recipient"


async def test_the_owner_is_asked_for_more_when_stock_runs_low(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana")
    ben = await make_profile(tmp_path, relay.url, "ben")
    async with open_clients(ana, ben) as (a, b):
        await a.upload_prekeys(signed_prekey(ana), one_time(PREKEYS_LOW_WATER))
        low: list[PrekeysLow] = []
        original = a._on_text

        async def spy(ws, text):
            if '"prekeys_low"' in text:
                low.append(text)
            await original(ws, text)

        a._on_text = spy  # observe frames the library handles silently
        await b.fetch_bundle("ana")
        for _ in range(20):
            if low:
                break
            await asyncio.sleep(0.05)
        assert low and f'"remaining":{PREKEYS_LOW_WATER - 1}' in low[0]
