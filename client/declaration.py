"""The account's signed age-band declaration (PROTOCOL.md §3.3), made on the client."""

from __future__ import annotations

from datetime import date, datetime

import nacl.signing

from protocol import identity
from protocol.policy import band
from protocol.registration import AgeDeclaration


def sign_declaration(
    signing_key: nacl.signing.SigningKey, handle: str, birthdate: date, now: datetime
) -> AgeDeclaration:
    """The account's own signed statement of its band today (PROTOCOL.md §3.3)."""
    public = bytes(signing_key.verify_key)
    declared_at = now.replace(microsecond=0)
    declared_band = band(birthdate, declared_at.date())
    signed = identity.declaration_message(handle, declared_band, public, declared_at)
    return AgeDeclaration(
        handle=handle,
        band=declared_band,
        identity_key=public,
        declared_at=declared_at,
        signature=signing_key.sign(signed).signature,
    )
