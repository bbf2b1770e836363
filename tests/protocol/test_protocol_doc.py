"""docs/PROTOCOL.md stays true: its worked example is recomputed and its tables are complete."""

from __future__ import annotations

import base64
import json
import re
from datetime import date, datetime
from pathlib import Path

import nacl.signing

from protocol.codec import decode_client_frame, decode_relay_frame
from protocol.errors import WIRE_ERRORS
from protocol.frames import CLIENT_FRAME_TYPES, RELAY_FRAME_TYPES
from protocol.identity import auth_message, declaration_message, dh_key_for
from protocol.policy import band

DOC = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
KEY = nacl.signing.SigningKey(bytes(range(32)))


def frames(prefix: str) -> list[str]:
    return [line[2:] for line in DOC.splitlines() if line.startswith(prefix + " {")]


def test_every_wire_error_code_is_documented():
    missing = [code for code in WIRE_ERRORS if f"`{code}`" not in DOC]
    assert missing == []


def test_every_frame_type_is_documented():
    for frame_type in CLIENT_FRAME_TYPES | RELAY_FRAME_TYPES:
        assert f"| `{frame_type}` |" in DOC


def test_example_frames_decode():
    assert frames("→") and frames("←")
    for raw in frames("→"):
        decode_client_frame(raw)
    for raw in frames("←"):
        decode_relay_frame(raw)


def test_example_keys_and_signatures_are_reproducible():
    public = bytes(KEY.verify_key)
    assert base64.b64encode(public).decode() in DOC
    assert base64.b64encode(dh_key_for(public)).decode() in DOC

    registration = json.loads(re.search(r'^\{"handle":"alice".*$', DOC, re.M).group(0))
    decl = registration["declaration"]
    declared_at = datetime.fromisoformat(decl["declared_at"].replace("Z", "+00:00"))
    signed = declaration_message("alice", "adult", public, declared_at)
    assert signed.hex() in DOC
    assert base64.b64encode(KEY.sign(signed).signature).decode() == decl["signature"]
    assert decl["band"] == band(date.fromisoformat(registration["birthdate"]), declared_at.date())

    challenge = decode_relay_frame(frames("←")[0])
    signed = auth_message(challenge.relay_id, challenge.nonce, "alice")
    assert signed.hex() in DOC
    auth = decode_client_frame(frames("→")[0])
    assert auth.signature == KEY.sign(signed).signature
