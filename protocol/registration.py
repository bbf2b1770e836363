"""HTTP bodies for account registration (PROTOCOL.md §3.1)."""

from __future__ import annotations

from datetime import date

import msgspec

from protocol.policy import Band
from protocol.types import DisplayName, Handle, PublicKey, Signature, Time


class AgeDeclaration(msgspec.Struct, frozen=True, kw_only=True):
    """An account's own signed statement of its age band (PROTOCOL.md §3.3)."""

    handle: Handle
    band: Band
    identity_key: PublicKey
    declared_at: Time
    signature: Signature


class RegisterRequest(msgspec.Struct, frozen=True, kw_only=True):
    """POST /v1/accounts."""

    handle: Handle
    display_name: DisplayName
    identity_key: PublicKey
    dh_identity_key: PublicKey
    birthdate: date
    declaration: AgeDeclaration


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """201 response to a registration."""

    handle: Handle
    display_name: str
    band: Band
    created_at: Time


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every HTTP error response: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """GET /healthz."""

    status: str
    relay_id: str
