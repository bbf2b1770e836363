"""POST /v1/accounts: register an age-declared account (PROTOCOL.md §3.1)."""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta

import msgspec
from aiohttp import web

from protocol import identity
from protocol.codec import UNPARSABLE, encode
from protocol.frames import RESERVED_HANDLES
from protocol.names import display_name_problem, impersonates_staff
from protocol.policy import band, may_register
from protocol.registration import Account, RegisterRequest
from server.app_keys import CONFIG, LIMITS, POLICY, SOCIAL, STORE
from server.delivery.records import AccountRecord
from server.delivery.store import HandleTakenError
from server.edge.http_errors import error_response
from server.keys.declarations import declaration_error

log = logging.getLogger("agechat.relay.accounts")

_decoder = msgspec.json.Decoder(RegisterRequest)

# Which refusal a validation failure at a path maps to; anything else is invalid_request.
_FIELD_CODES = {
    "$.handle": "invalid_handle",
    "$.display_name": "invalid_display_name",
    "$.identity_key": "invalid_key",
    "$.dh_identity_key": "invalid_key",
    "$.birthdate": "invalid_birthdate",
}
MAX_AGE_YEARS = 130


def _validation_code(detail: str) -> str:
    for path, code in _FIELD_CODES.items():
        if detail.endswith(f"`{path}`"):
            return code
    if "`$.declaration" in detail:
        return "declaration_mismatch"
    return "invalid_request"


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a Unix socket, or unknown: counted
        return False


async def register(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    store = request.app[STORE]
    # Every attempt counts, valid or not: a flood of junk costs as much as one of accounts.
    address = request.remote or "?"
    counted = config.limit_loopback_registrations or not _loopback(address)
    if counted and not request.app[LIMITS].registrations.allow(address, config.clock()):
        return error_response(429, "registration_limited")
    # The app's client_max_size bounds this; the middleware turns the overflow into 413.
    raw = await request.read()
    try:
        req = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return error_response(400, _validation_code(str(exc)), str(exc))
    except UNPARSABLE:
        return error_response(400, "invalid_json")

    now = config.clock()
    today = now.date()
    if req.handle in RESERVED_HANDLES or impersonates_staff(req.handle):
        return error_response(400, "invalid_handle", "that handle is reserved")
    if (name_problem := display_name_problem(req.display_name)) is not None:
        return error_response(400, *name_problem)
    if req.birthdate > today or req.birthdate < today - timedelta(days=366 * MAX_AGE_YEARS):
        return error_response(400, "invalid_birthdate")
    allowed = may_register(request.app[POLICY], req.birthdate, today)
    if allowed.outcome == "refuse":
        return error_response(400, allowed.reason)
    try:
        expected_dh = identity.dh_key_for(req.identity_key)
    except Exception:  # libsodium refuses keys that are not valid Ed25519 points
        return error_response(400, "invalid_key", "identity_key is not an Ed25519 public key")
    if expected_dh != req.dh_identity_key:
        return error_response(
            400, "invalid_key", "dh_identity_key is not the identity key's X25519 form"
        )

    decl = req.declaration
    problem = declaration_error(decl, req.handle, req.identity_key, req.birthdate, now)
    if problem is not None:
        return error_response(400, problem)

    record = AccountRecord(
        handle=req.handle,
        display_name=req.display_name,
        identity_key=req.identity_key,
        dh_identity_key=req.dh_identity_key,
        birthdate=req.birthdate,
        declaration=encode(decl),
        created_at=now,
    )
    try:
        await store.create_account(record)
    except HandleTakenError:
        existing = await store.get_account(req.handle)
        if existing is None or existing.identity_key != req.identity_key:
            return error_response(409, "handle_taken")
        # The same key registering the same handle again: a client retrying after it lost
        # the first answer. Idempotent, so the key it kept is not orphaned.
        body = Account(
            handle=existing.handle,
            display_name=existing.display_name,
            band=band(existing.birthdate, today),
            created_at=existing.created_at,
        )
        return web.Response(status=201, body=encode(body), content_type="application/json")
    social = request.app[SOCIAL]
    social.add_account(req.handle, req.display_name, req.birthdate)
    await social.record_new_account(req.handle)
    log.info("account registered handle=%s band=%s", req.handle, band(req.birthdate, today))
    body = Account(
        handle=req.handle,
        display_name=req.display_name,
        band=band(req.birthdate, today),
        created_at=now,
    )
    return web.Response(status=201, body=encode(body), content_type="application/json")
