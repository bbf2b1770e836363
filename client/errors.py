"""Client-side refusals: the relay's wire codes plus the client's own, with one shape."""

from __future__ import annotations

from typing import Final

from protocol.errors import wire_message

LOCAL_ERRORS: Final[dict[str, str]] = {
    "bad_passphrase": "The passphrase does not unlock this profile.",
    "passphrase_required": "Set AGECHAT_PASSPHRASE or run this at a terminal to type it.",
    "no_profile": "There is no account in this profile yet: run `agechat account create`.",
    "profile_exists": "This profile already has an account; use another --profile.",
    "profile_corrupt": "The profile's files are unreadable or from an unknown version.",
    "relay_unreachable": "The relay could not be reached.",
    "relay_unreachable_after_send": "The connection to the relay broke during the request.",
    "tls_untrusted": "The relay's TLS certificate is not trusted: set SSL_CERT_FILE to the "
    "certificate (or its CA) if you trust this relay.",
    "timeout": "The relay did not answer in time.",
    "protocol_error": "The relay sent something this client does not understand.",
    "invalid_birthdate": "The birth date is not a real date in the past (YYYY-MM-DD).",
    "invalid_handle": "Handles are 3 to 32 characters: lowercase letters, digits and _.",
    "invalid_server_url": "The relay URL must start with http:// or https://.",
    "registration_pending": "An earlier registration from this profile did not finish.",
    "connection_closed": "The relay closed the connection.",
    "no_terminal": "The chat app needs a terminal.",
    # End-to-end encryption (issue #4)
    "downgrade_refused": "The relay says this chat can't be encrypted, but both of you "
    "declared yourselves adults: not sending it unencrypted.",
    "safety_number_changed": "Their safety number changed since you verified it. Verify it "
    "again (or accept the new key) before sending.",
    "no_peer_key": "You haven't exchanged keys with them yet: send a message first.",
    # Attachments (issue #13)
    "upload_failed": "The file's upload broke off; sending it again retries.",
    "download_failed": "The file's download broke off.",
    "download_too_large": "The file is larger than its message said.",
    # Groups (issue #15)
    "ambiguous_group": "Several of your groups have that name: use the group's id.",
}


def error_message(code: str) -> str:
    return LOCAL_ERRORS.get(code) or wire_message(code)


class ClientError(Exception):
    """A refusal with a stable code (matched by scripts and tests) and a sentence (for people)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.message = message or error_message(code)
        super().__init__(f"{code}: {self.message}")
