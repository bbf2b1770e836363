"""Message franking on the relay (PROTOCOL.md §6.4): its secret and the check of reports.

The relay tags every e2ee delivery with an HMAC under a secret only it knows
(``StoredMessage.franking_tag``). The secret is 32 random bytes made on the relay's first
start and kept in the store's ``meta`` table, so tags stay verifiable across restarts. It
is never logged. A report that attaches franking evidence for an e2ee message is accepted
only if the relay can recompute the commitment from the reported text and its own tag
over the routing facts: then the relay knows the reported account really sent that text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from protocol.crypto.errors import CryptoError
from protocol.crypto.franking import (
    RELAY_SECRET_MIN_BYTES,
    timestamp_micros,
    verify_report,
)
from protocol.crypto.keys import Random
from protocol.frames import ReportedMessage
from server.delivery.store import Store

#: The ``meta`` key holding the secret (hex).
SECRET_META_KEY: Final = "franking_secret"
SECRET_BYTES: Final = 32


async def load_or_create_secret(store: Store, *, random: Random = os.urandom) -> bytes:
    """The relay's franking secret: read from the store, or made and stored on first start."""
    stored = await store.get_meta(SECRET_META_KEY)
    if stored is not None:
        secret = bytes.fromhex(stored)
        if len(secret) < RELAY_SECRET_MIN_BYTES:
            raise RuntimeError(f"the stored {SECRET_META_KEY} is too short")
        return secret
    secret = random(SECRET_BYTES)
    if len(secret) != SECRET_BYTES:
        raise RuntimeError("the random source returned the wrong number of bytes")
    await store.set_meta(SECRET_META_KEY, secret.hex())
    return secret


def is_franked(message: ReportedMessage) -> bool:
    """Does this reported message carry any franking evidence?"""
    return (
        message.franking_key is not None
        or message.commitment is not None
        or message.franking_tag is not None
    )


def verify_franked(secret: bytes, reporter: str, message: ReportedMessage) -> bool:
    """Is this the e2ee text ``message.sender`` sent the reporter at ``message.sent_at``?"""
    if (
        message.franking_key is None
        or message.commitment is None
        or message.franking_tag is None
        or message.sent_at is None
        or message.to != reporter  # only the recipient holds the franking key
    ):
        return False
    timestamp = timestamp_micros(message.sent_at)
    if timestamp < 0:
        return False  # before any relay tagged anything (and not a u64)
    try:
        return verify_report(
            secret,
            text=message.text,
            franking_key=message.franking_key,
            reported_commitment=message.commitment,
            reported_tag=message.franking_tag,
            sender=message.sender,
            recipient=message.to,
            timestamp=timestamp,
            mode="e2ee",
            attachment_digest=message.attachment_sha256,
        )
    except (CryptoError, ValueError):
        return False


def check_report(
    secret: bytes, reporter: str, reported: str, messages: Sequence[ReportedMessage]
) -> list[bool] | None:
    """Per reported message, whether the relay verified it (unfranked messages: False);
    ``None`` when any franked message fails, and the whole report is refused. A franked
    message must come from the reported account: verified evidence can't be moved onto
    someone else."""
    verified: list[bool] = []
    for message in messages:
        if not is_franked(message):
            verified.append(False)
        elif message.sender == reported and verify_franked(secret, reporter, message):
            verified.append(True)
        else:
            return None
    return verified
