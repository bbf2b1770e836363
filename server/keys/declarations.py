"""Checking a signed age declaration (PROTOCOL.md §3.3) at registration and on re-declaration."""

from __future__ import annotations

from datetime import UTC, date, datetime

from protocol import identity
from protocol.limits import DECLARATION_MAX_SKEW_SECONDS
from protocol.policy import band
from protocol.registration import AgeDeclaration


def declaration_error(
    decl: AgeDeclaration, handle: str, identity_key: bytes, birthdate: date, now: datetime
) -> str | None:
    """The refusal code for a declaration that doesn't hold, or None when it does."""
    if (
        decl.handle != handle
        or decl.identity_key != identity_key
        # The band on the declaration's own day in UTC, the same day its signature names.
        or decl.band != band(birthdate, decl.declared_at.astimezone(UTC).date())
    ):
        return "declaration_mismatch"
    if abs((decl.declared_at - now).total_seconds()) > DECLARATION_MAX_SKEW_SECONDS:
        return "stale_declaration"
    signed = identity.declaration_message(
        decl.handle, decl.band, decl.identity_key, decl.declared_at
    )
    if not identity.verify(identity_key, signed, decl.signature):
        return "bad_signature"
    return None
