"""POST /v1/accounts against a real relay: each refusal has its code."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import aiohttp
import msgspec
import nacl.signing
import pytest

from client.account import build_registration
from protocol.codec import encode
from protocol.registration import AgeDeclaration, RegisterRequest

KEY = nacl.signing.SigningKey(b"\x07" * 32)


def request_for(handle="carol", birthdate=date(1985, 1, 1), now=None, key=KEY) -> RegisterRequest:
    return build_registration(key, handle, "Carol", birthdate, now or datetime.now(UTC))


async def post(relay, body: bytes | RegisterRequest) -> tuple[int, dict]:
    data = encode(body) if isinstance(body, RegisterRequest) else body
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{relay.url}/v1/accounts", data=data, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, await response.json()


async def test_register_then_duplicate_is_handle_taken(relay):
    status, body = await post(relay, request_for())
    assert status == 201
    assert body["handle"] == "carol" and body["band"] == "adult"
    other = nacl.signing.SigningKey(b"\x08" * 32)
    status, body = await post(relay, request_for(key=other))
    assert (status, body["error"]["code"]) == (409, "handle_taken")


def with_changes(req: RegisterRequest, **changes) -> RegisterRequest:
    return msgspec.structs.replace(req, **changes)


def with_declaration(req: RegisterRequest, **changes) -> RegisterRequest:
    return with_changes(req, declaration=msgspec.structs.replace(req.declaration, **changes))


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda r: with_declaration(r, signature=b"\x00" * 64), "bad_signature"),
        (lambda r: with_declaration(r, band="teen_16_17"), "declaration_mismatch"),
        (lambda r: with_declaration(r, handle="mallory"), "declaration_mismatch"),
        (lambda r: with_changes(r, dh_identity_key=b"\x09" * 32), "invalid_key"),
        (
            lambda r: with_changes(r, birthdate=date.today() + timedelta(days=3)),
            "invalid_birthdate",
        ),
        (lambda r: with_changes(r, display_name=""), "invalid_display_name"),
        (lambda r: with_changes(r, display_name="Safety Team"), "reserved_display_name"),
        (lambda r: with_changes(r, display_name="AgeChat"), "reserved_display_name"),
        (lambda r: with_changes(r, display_name="Sam\u202eevil"), "invalid_display_name"),
        (lambda r: with_changes(r, display_name="Sam\u200bSmith"), "invalid_display_name"),
        (lambda r: with_changes(r, handle="agechat_team"), "invalid_handle"),
        (lambda r: with_changes(r, handle="moderator1"), "invalid_handle"),
        (lambda r: with_changes(r, handle="safetyteam"), "invalid_handle"),
    ],
)
async def test_registration_refusals(relay, make, code):
    status, body = await post(relay, make(request_for()))
    assert status == 400
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_stale_declaration_is_refused(relay):
    old = datetime.now(UTC) - timedelta(hours=2)
    status, body = await post(relay, request_for(now=old))
    assert (status, body["error"]["code"]) == (400, "stale_declaration")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{nope", "invalid_json"),
        (b'{"handle": "Bad Handle!"}', "invalid_handle"),
        (b"[]", "invalid_request"),
        (b'{"handle": "okay_handle", "display_name": "x", "identity_key": "AAAA"}', "invalid_key"),
        # Nested deeper than the parser goes, in a field it would skip (issue 9, defect 3).
        (b'{"extra": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json"),
        (b'{"a":' * 1500 + b"1" + b"}" * 1500, "invalid_json"),
    ],
    ids=["not-json", "bad-handle", "array", "bad-key", "deep", "deep-field"],
)
async def test_malformed_registration_bodies(relay, raw, code):
    status, body = await post(relay, raw)
    assert status == 400
    assert body["error"]["code"] == code


async def test_oversized_registration_is_refused(relay):
    status, body = await post(relay, b"{" + b" " * 20000 + b"}")
    assert (status, body["error"]["code"]) == (413, "request_too_large")


async def test_unknown_route_and_health(relay):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{relay.url}/nowhere") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
        async with session.get(f"{relay.url}/healthz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ok"


def test_declaration_is_signed_by_the_identity_key():
    from protocol import identity

    req = request_for()
    d = req.declaration
    assert isinstance(d, AgeDeclaration)
    assert d.identity_key == bytes(KEY.verify_key)
    signed = identity.declaration_message(d.handle, d.band, d.identity_key, d.declared_at)
    assert identity.verify(d.identity_key, signed, d.signature)
    other = identity.declaration_message(d.handle, "teen_13_15", d.identity_key, d.declared_at)
    assert not identity.verify(d.identity_key, other, d.signature)  # the band is signed
