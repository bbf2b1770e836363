"""`is_envelope` (the relay's mode check) answers exactly as decoding the body would: its
quick look at the first characters only turns away what decoding would refuse too."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.crypto.errors import CryptoError
from protocol.e2ee import ENVELOPE_VERSION, decode_body, is_envelope

# Bytes that often start like an envelope (version, kind 0 or 1), and often not.
_lead = st.sampled_from([bytes((ENVELOPE_VERSION, 0)), bytes((ENVELOPE_VERSION, 1)), b""])
_envelope_like = st.builds(
    lambda lead, rest: base64.b64encode(lead + rest).decode(), _lead, st.binary(max_size=300)
)


def _decodes(body: str) -> bool:
    try:
        decode_body(body)
    except CryptoError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.one_of(_envelope_like, st.text(max_size=200)))
def test_is_envelope_agrees_with_decoding(body: str) -> None:
    assert is_envelope(body) is _decodes(body)


def test_a_real_envelope_shape_is_one_and_text_is_not() -> None:
    message = bytes(200)  # long enough for a ratchet message
    assert is_envelope(base64.b64encode(bytes((ENVELOPE_VERSION, 0)) + message).decode())
    assert not is_envelope("hey, how was school today?")
    assert not is_envelope(base64.b64encode(bytes((ENVELOPE_VERSION + 1, 0)) + message).decode())
