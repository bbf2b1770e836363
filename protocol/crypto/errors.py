"""The one exception the crypto core raises, with a stable snake_case code.

Tests and callers match on ``code`` (PROTOCOL.md §7); the sentence may be reworded.
Every failure of a decryption, a signature or a key check is a ``CryptoError`` and
leaves any session state exactly as it was before the call.
"""

from __future__ import annotations

from typing import Final

CRYPTO_ERRORS: Final[dict[str, str]] = {
    "invalid_key": "A key or key-sized value has the wrong size or is not a valid point.",
    "weak_key": "A Diffie-Hellman exchange produced the all-zero value (low-order point).",
    "bad_prekey_signature": "The signed prekey's signature does not verify with the identity key.",
    "prekey_mismatch": "The initial message names prekeys other than the ones supplied.",
    "invalid_mode": "The conversation mode is not one the protocol knows.",
    "malformed_message": "The encrypted message is too short or its header is malformed.",
    "unsupported_version": "The message or saved state has a version this code does not read.",
    "decryption_failed": "The message does not authenticate with this session.",
    "duplicate_message": "This message was already decrypted (or its key was discarded).",
    "too_many_skipped": "The message is too far ahead of the chain; it is refused.",
    "invalid_plaintext": "The decrypted plaintext is not a valid franked message.",
    "franking_mismatch": "The franking commitment does not match the decrypted message.",
    "invalid_state": "The saved session state is malformed.",
    # Attachments (PROTOCOL.md §6.6.1)
    "attachment_corrupt": "The encrypted file does not authenticate, or is not in this format.",
    "attachment_truncated": "The encrypted file ends before its final chunk.",
    "attachment_digest_mismatch": "The decrypted file is not the one the message named.",
}


class CryptoError(Exception):
    """A cryptographic check failed; ``code`` says which (a key of ``CRYPTO_ERRORS``)."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        self.code = code
        super().__init__(f"{code}: {detail or CRYPTO_ERRORS.get(code, 'crypto failure')}")
