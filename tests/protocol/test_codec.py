"""The codec: every frame type round-trips; anything else gets a code, never a crash."""

from __future__ import annotations

import string

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import FrameError, decode_client_frame, decode_relay_frame, encode_frame
from protocol.frames import (
    Accepted,
    Ack,
    Auth,
    Challenge,
    Deliver,
    Error,
    MessageRef,
    Ready,
    Send,
    Synced,
)
from protocol.limits import MAX_BODY_CHARS, MAX_FRAME_BYTES

handles = st.text(string.ascii_lowercase + string.digits + "_", min_size=3, max_size=32)
ids = st.text(string.ascii_letters + string.digits + "_-", min_size=8, max_size=64)
modes = st.sampled_from(["visible", "e2ee"])
bodies = st.text(max_size=200)
times = st.datetimes(timezones=st.just(__import__("datetime").UTC))
sig = st.binary(min_size=64, max_size=64)

client_frames = st.one_of(
    st.builds(Auth, handle=handles, signature=sig),
    st.builds(Send, id=ids, to=handles, mode=modes, body=bodies),
    st.builds(
        Ack,
        refs=st.lists(st.builds(MessageRef, sender=handles, id=ids), min_size=1, max_size=5),
    ),
)
relay_frames = st.one_of(
    st.builds(
        Challenge,
        nonce=st.binary(min_size=32, max_size=32),
        relay_id=st.text(max_size=40),
        server_time=times,
    ),
    st.builds(Ready, handle=handles, server_time=times),
    st.just(Synced()),
    st.builds(Accepted, id=ids, conversation=st.text(max_size=80), sent_at=times),
    st.builds(
        Deliver,
        id=ids,
        sender=handles,
        to=handles,
        conversation=st.text(max_size=80),
        mode=modes,
        body=bodies,
        sent_at=times,
    ),
    st.builds(Error, code=st.text(max_size=30), message=st.text(max_size=60), ref=st.none() | ids),
)


@settings(max_examples=200)
@given(client_frames)
def test_client_frames_round_trip(frame):
    assert decode_client_frame(encode_frame(frame)) == frame


@settings(max_examples=200)
@given(relay_frames)
def test_relay_frames_round_trip(frame):
    assert decode_relay_frame(encode_frame(frame)) == frame


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_frame_error(data):
    for decode in (decode_client_frame, decode_relay_frame):
        try:
            decode(data)
        except FrameError as exc:
            assert exc.code in {"invalid_json", "invalid_frame", "unknown_frame_type"}


@settings(max_examples=300)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["type", "id", "to", "mode", "body", "handle", "refs"]),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_random_json_only_ever_raises_frame_error(value):
    try:
        decode_client_frame(msgspec.json.encode(value))
    except FrameError as exc:
        assert exc.code in {"invalid_frame", "unknown_frame_type"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'"\x80"', "invalid_json"),  # found by hypothesis: a JSON string that isn't UTF-8
        (b"[1, 2]", "invalid_frame"),
        (b'{"id": "x"}', "invalid_frame"),
        (b'{"type": 7}', "invalid_frame"),
        (b'{"type": "launch_missiles"}', "unknown_frame_type"),
        (
            b'{"type": "send", "id": "abcdefgh", "to": "bob", "mode": "visible", "body": 5}',
            "invalid_frame",
        ),
        (
            b'{"type": "send", "id": "abcdefgh", "to": "Bob!", "mode": "visible", "body": ""}',
            "invalid_frame",
        ),
        (
            b'{"type": "send", "id": "abcdefgh", "to": "bob", "mode": "shouting", "body": ""}',
            "invalid_frame",
        ),
        (b'{"type": "ack", "refs": []}', "invalid_frame"),
        (b'{"type": "auth", "handle": "bob", "signature": "AAAA"}', "invalid_frame"),
        # a relay frame sent to the relay is not a client frame
        (b'{"type": "synced"}', "unknown_frame_type"),
    ],
)
def test_bad_client_frames_get_their_code(raw, code):
    with pytest.raises(FrameError) as info:
        decode_client_frame(raw)
    assert info.value.code == code
    assert info.value.message  # a sentence for the error frame


def test_oversized_frame_is_refused_before_parsing():
    big = b'{"type":"send","body":"' + b"a" * MAX_FRAME_BYTES + b'"}'
    with pytest.raises(FrameError) as info:
        decode_client_frame(big)
    assert info.value.code == "frame_too_large"


def test_body_limit_is_enforced_by_the_schema():
    frame = Send(id="abcdefgh", to="bob", mode="visible", body="a" * (MAX_BODY_CHARS + 1))
    with pytest.raises(FrameError) as info:
        decode_client_frame(encode_frame(frame))
    assert info.value.code == "invalid_frame"


def test_wire_spelling_matches_protocol_md():
    frame = Deliver(
        id="abcdefgh",
        sender="alice",
        to="bob",
        conversation="dm:alice:bob",
        mode="visible",
        body="hi",
        sent_at=__import__("datetime").datetime(
            2026, 1, 2, 3, 4, 5, tzinfo=__import__("datetime").UTC
        ),
    )
    assert encode_frame(frame) == (
        '{"type":"deliver","id":"abcdefgh","from":"alice","to":"bob",'
        '"conversation":"dm:alice:bob","mode":"visible","body":"hi",'
        '"sent_at":"2026-01-02T03:04:05Z","kind":"message","code":null,"request":false,'
        '"commitment":null,"franking_tag":null}'
    )
