"""The end-to-end encryption core: pure functions and small state machines over bytes.

No I/O, no clock, randomness injected (``random: Callable[[int], bytes]``). Built only
from PyNaCl primitives and the standard library's hmac/hashlib (PROTOCOL.md §6.4): X3DH
(``x3dh``), the Double Ratchet (``ratchet``), message franking
(``franking``) and safety numbers (``safety_number``).
"""

from protocol.crypto.errors import CryptoError
from protocol.crypto.franking import FrankedPlaintext, frank, relay_tag, unfrank, verify_report
from protocol.crypto.keys import IdentityKeyPair, X25519KeyPair
from protocol.crypto.ratchet import Session, initiation_winner, keep_own_session
from protocol.crypto.safety_number import format_safety_number, safety_number
from protocol.crypto.x3dh import InitialHeader, PrekeyBundle, initiate, respond, sign_prekey

__all__ = [
    "CryptoError",
    "FrankedPlaintext",
    "IdentityKeyPair",
    "InitialHeader",
    "PrekeyBundle",
    "Session",
    "X25519KeyPair",
    "format_safety_number",
    "frank",
    "initiate",
    "initiation_winner",
    "keep_own_session",
    "relay_tag",
    "respond",
    "safety_number",
    "sign_prekey",
    "unfrank",
    "verify_report",
]
