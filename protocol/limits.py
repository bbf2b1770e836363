"""Size and time limits shared by both sides (PROTOCOL.md §2)."""

from typing import Final

#: Largest text frame the relay decodes; a bigger one gets `frame_too_large`.
MAX_FRAME_BYTES: Final = 64 * 1024
#: Beyond this the WebSocket layer itself closes the connection (close code 1009).
MAX_WEBSOCKET_MESSAGE_BYTES: Final = 4 * MAX_FRAME_BYTES
#: Largest message body in characters (visible text, or base64 ciphertext for e2ee).
MAX_BODY_CHARS: Final = 48 * 1024
#: Largest registration request body.
MAX_HTTP_BODY_BYTES: Final = 16 * 1024
#: Most message references in one `ack` frame.
MAX_ACK_REFS: Final = 1000
#: Seconds a connection may stay unauthenticated.
AUTH_TIMEOUT_SECONDS: Final = 10.0
#: How far a signed declaration's time may be from the relay's clock.
DECLARATION_MAX_SKEW_SECONDS: Final = 600
#: How long the relay remembers a (sender, id) pair after delivery, to drop resends.
DEDUPE_WINDOW_SECONDS: Final = 7 * 24 * 3600
#: Relay nonce size for the auth challenge.
NONCE_BYTES: Final = 32
#: Ed25519 / X25519 public key and Ed25519 signature sizes.
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
#: Most messages attached to one report.
MAX_REPORTED_MESSAGES: Final = 50
#: Most results one search returns.
MAX_SEARCH_RESULTS: Final = 20
#: One-time prekeys per upload, the most a relay keeps per account, and the stock below
#: which it asks the owner for more.
MAX_PREKEYS_PER_UPLOAD: Final = 100
MAX_PREKEYS_STORED: Final = 500
PREKEYS_LOW_WATER: Final = 10
