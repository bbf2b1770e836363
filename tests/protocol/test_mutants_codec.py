"""The codec and the frame definitions, asserted exactly (issue 17).

What mutation testing found unguarded: a frame dropped from a union, a renamed wire tag,
a reserved handle gone, the frame-size boundary, the error's detail and `ref`, and fuzz
tests that passed whenever decoding succeeded. The sets below are written from
docs/PROTOCOL.md's tables (§4, §6.2, §6.3, §8), not read back from the code.
"""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import frames as f
from protocol import group_frames as g
from protocol import moderation
from protocol.codec import (
    FrameError,
    _FrameDecoder,
    client_frames,
    decode_client_frame,
    decode_relay_frame,
    encode,
    encode_frame,
    relay_frames,
)
from protocol.errors import wire_message
from protocol.frame_base import Frame
from protocol.limits import MAX_FRAME_BYTES, MAX_WEBSOCKET_MESSAGE_BYTES

CLIENT_TYPES = {
    # §4
    "auth": f.Auth,
    "send": f.Send,
    "ack": f.Ack,
    # §6.2
    "contact_request": f.ContactRequest,
    "contact_respond": f.ContactRespond,
    "contacts_list": f.ContactsList,
    "search": f.Search,
    "block": f.Block,
    "unblock": f.Unblock,
    "report": f.Report,
    "set_birthdate": f.SetBirthdate,
    "redeclare": f.Redeclare,
    # §6.3
    "upload_prekeys": f.UploadPrekeys,
    "fetch_bundle": f.FetchBundle,
    # §6.7 (guardian links)
    "guardian_invite": f.GuardianInvite,
    "guardian_accept": f.GuardianAccept,
    "guardian_unlink": f.GuardianUnlink,
    "guardian_list": f.GuardianList,
    "guardian_decide": f.GuardianDecide,
    # §8 (moderators)
    "mod_queues": moderation.ModQueues,
    "mod_queue": moderation.ModQueue,
    "mod_next": moderation.ModNext,
    "mod_case": moderation.ModCase,
    "mod_reveal": moderation.ModReveal,
    "mod_decide": moderation.ModDecide,
    "mod_preview": moderation.ModPreview,
    "mod_overview": moderation.ModOverview,
    "group_create": g.GroupCreate,
    "group_add": g.GroupAdd,
    "group_remove": g.GroupRemove,
    "group_leave": g.GroupLeave,
    "group_rename": g.GroupRename,
    "group_respond": g.GroupRespond,
    "group_list": g.GroupList,
    "group_send": g.GroupSend,
}
RELAY_TYPES = {
    "challenge": f.Challenge,
    "ready": f.Ready,
    "synced": f.Synced,
    "accepted": f.Accepted,
    "deliver": f.Deliver,
    "delivered": f.Delivered,
    "error": f.Error,
    "done": f.Done,
    "contacts": f.ContactsResult,
    "search_result": f.SearchResult,
    "bundle": f.Bundle,
    "prekeys_low": f.PrekeysLow,
    "guardians": f.GuardiansResult,
    "group": g.GroupResult,
    "groups": g.GroupsResult,
    "mod_queues_result": moderation.ModQueuesResult,
    "mod_cases": moderation.ModCases,
    "mod_case_result": moderation.ModCaseResult,
    "mod_evidence": moderation.ModEvidence,
    "mod_preview_result": moderation.ModPreviewResult,
    "mod_overview_result": moderation.ModOverviewResult,
}


def tag(cls: type) -> str:
    return cls.__struct_config__.tag


def members(union: object) -> set[type]:
    return set(getattr(union, "__args__", ()))


def test_each_side_accepts_exactly_its_documented_frames():
    assert set(CLIENT_TYPES) == f.CLIENT_FRAME_TYPES
    assert set(RELAY_TYPES) == f.RELAY_FRAME_TYPES
    assert members(f.ClientFrame) - {moderation.ModRequest} | members(moderation.ModRequest) == set(
        CLIENT_TYPES.values()
    )
    assert members(f.RelayFrame) - {moderation.ModAnswer} | members(moderation.ModAnswer) == set(
        RELAY_TYPES.values()
    )
    for name, cls in {**CLIENT_TYPES, **RELAY_TYPES}.items():
        assert tag(cls) == name, cls


def test_every_frame_class_is_in_exactly_one_union():
    defined = {
        cls
        for module in (f, moderation)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, Frame) and cls is not Frame
    }
    assert defined == set(CLIENT_TYPES.values()) | set(RELAY_TYPES.values())
    assert not set(CLIENT_TYPES) & set(RELAY_TYPES)


@pytest.mark.parametrize("name", sorted(CLIENT_TYPES))
def test_a_client_frame_type_is_recognised_by_its_wire_tag(name):
    """Only the client decoder knows it: with fields missing it is `invalid_frame` (a known
    type), at the relay decoder `unknown_frame_type`."""
    raw = json.dumps({"type": name, "rid": "abcdefgh", "id": "abcdefgh"})
    try:
        assert type(decode_client_frame(raw)) is CLIENT_TYPES[name]
    except FrameError as exc:
        assert exc.code == "invalid_frame"
    with pytest.raises(FrameError) as info:
        decode_relay_frame(raw)
    assert info.value.code == "unknown_frame_type"


@pytest.mark.parametrize("name", sorted(RELAY_TYPES))
def test_a_relay_frame_type_is_recognised_by_its_wire_tag(name):
    raw = json.dumps({"type": name, "rid": "abcdefgh", "id": "abcdefgh"})
    try:
        assert type(decode_relay_frame(raw)) is RELAY_TYPES[name]
    except FrameError as exc:
        assert exc.code == "invalid_frame"
    with pytest.raises(FrameError) as info:
        decode_client_frame(raw)
    assert info.value.code == "unknown_frame_type"


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (f.Block(rid="abcdefgh", handle="bob"), '{"type":"block","rid":"abcdefgh","handle":"bob"}'),
        (
            f.Unblock(rid="abcdefgh", handle="bob"),
            '{"type":"unblock","rid":"abcdefgh","handle":"bob"}',
        ),
        (
            f.Ack(refs=[f.MessageRef(sender="ann", id="abcdefgh")]),
            '{"type":"ack","refs":[{"from":"ann","id":"abcdefgh"}]}',
        ),
        (f.Synced(), '{"type":"synced"}'),
        (
            f.Done(rid="abcdefgh", outcome="blocked"),
            '{"type":"done","rid":"abcdefgh","outcome":"blocked"}',
        ),
        (
            f.Error(code="you_blocked", message="m", ref=None),
            '{"type":"error","code":"you_blocked","message":"m","ref":null}',
        ),
    ],
)
def test_wire_spelling(frame, wire):
    assert encode_frame(frame) == wire
    decode = decode_client_frame if tag(type(frame)) in CLIENT_TYPES else decode_relay_frame
    assert decode(wire) == frame


def test_delivered_and_set_birthdate_round_trip_by_their_tags():
    delivered = (
        '{"type":"delivered","id":"abcdefgh","to":"bob","delivered_at":"2026-01-02T03:04:05Z"}'
    )
    frame = decode_relay_frame(delivered)
    assert isinstance(frame, f.Delivered)
    assert encode_frame(frame) == delivered


def test_reserved_handles_are_the_documented_ones():
    """PROTOCOL.md §1: `agechat`, `admin`, `relay`, `system`, `root`, `moderator`, `safety`,
    `safety_team`, `staff` and `support` are reserved."""
    assert {
        "agechat",
        "admin",
        "relay",
        "system",
        "root",
        "moderator",
        "safety",
        "safety_team",
        "staff",
        "support",
    } == f.RESERVED_HANDLES
    assert f.RELAY_HANDLE == "agechat"


def test_conversation_id_is_the_same_from_both_ends():
    assert f.conversation_id("bob", "ann") == f.conversation_id("ann", "bob") == "dm:ann:bob"
    assert f.conversation_id("ann_2", "ann") == "dm:ann:ann_2"


# --- the codec's errors, exactly ----------------------------------------------------------


def test_frame_error_carries_code_detail_ref_and_sentence():
    plain = FrameError("invalid_json")
    assert (plain.code, plain.detail, plain.ref) == ("invalid_json", None, None)
    assert plain.message == wire_message("invalid_json")
    assert str(plain) == f"invalid_json: {wire_message('invalid_json')}"
    detailed = FrameError("invalid_frame", "Expected `str`", "abcdefgh")
    assert (detailed.code, detailed.detail, detailed.ref) == (
        "invalid_frame",
        "Expected `str`",
        "abcdefgh",
    )
    assert detailed.message == f"{wire_message('invalid_frame')} (Expected `str`)"
    assert str(detailed) == "invalid_frame: Expected `str`"


def refused(decode, raw) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode(raw)
    return info.value


@pytest.mark.parametrize(
    ("raw", "code", "detail"),
    [
        (b"[1]", "invalid_frame", "a frame is a JSON object"),
        (b'"send"', "invalid_frame", "a frame is a JSON object"),
        (b'{"id": "abcdefgh"}', "invalid_frame", "missing string field `type`"),
        (b'{"type": 7}', "invalid_frame", "missing string field `type`"),
        (b'{"type": "launch"}', "unknown_frame_type", "type 'launch'"),
        (b'{"type": "' + b"x" * 60 + b'"}', "unknown_frame_type", "type " + repr("x" * 40)),
        (b"{nope", "invalid_json", None),
    ],
)
def test_each_refusal_says_what_was_wrong(raw, code, detail):
    error = refused(decode_client_frame, raw)
    assert (error.code, error.detail, error.ref) == (code, detail, None)


def test_an_invalid_field_is_named_and_the_frame_referenced():
    raw = b'{"type": "send", "id": "abcdefgh", "to": "bob", "mode": "visible", "body": 5}'
    error = refused(decode_client_frame, raw)
    assert error.code == "invalid_frame"
    assert error.detail == "Expected `str`, got `int` - at `$.body`"
    assert error.ref == "abcdefgh"


@pytest.mark.parametrize(
    ("fields", "ref"),
    [
        ({"rid": "r" * 8, "id": "i" * 8}, "r" * 8),  # `rid` first
        ({"id": "i" * 8}, "i" * 8),
        ({"rid": 5, "id": "i" * 8}, None),  # not a string: nothing to refer to
        ({"rid": ""}, None),
        ({"rid": "r"}, "r"),
        ({"rid": "r" * 64}, "r" * 64),
        ({"rid": "r" * 65}, None),
        ({}, None),
    ],
)
def test_the_ref_of_a_refused_frame(fields, ref):
    raw = json.dumps({"type": "block", "handle": "NOT A HANDLE", **fields})
    error = refused(decode_client_frame, raw)
    assert (error.code, error.ref) == ("invalid_frame", ref)


def padded(size: int) -> bytes:
    """A well-formed `synced` frame of exactly ``size`` bytes (whitespace padding)."""
    head = b'{"type":"synced"'
    return head + b" " * (size - len(head) - 1) + b"}"


def test_the_frame_size_boundary():
    # The relay's decoder: at the limit the frame is read; one byte more is refused unread.
    at_limit = padded(MAX_FRAME_BYTES)
    assert refused(decode_client_frame, at_limit).code == "unknown_frame_type"  # read
    over = refused(decode_client_frame, padded(MAX_FRAME_BYTES + 1))
    assert over.code == "frame_too_large"
    assert over.detail == f"{MAX_FRAME_BYTES + 1} bytes, limit {MAX_FRAME_BYTES}"
    # Text is measured in UTF-8 bytes, not characters.
    text = '{"type":"synced","x":"' + "é" * (MAX_FRAME_BYTES // 2) + '"}'
    assert len(text) < MAX_FRAME_BYTES < len(text.encode())
    assert refused(decode_client_frame, text).code == "frame_too_large"
    # A client reads frames up to the WebSocket limit (a `deliver` is larger than its `send`).
    assert isinstance(decode_relay_frame(padded(MAX_FRAME_BYTES + 1)), f.Synced)
    assert isinstance(decode_relay_frame(padded(MAX_WEBSOCKET_MESSAGE_BYTES)), f.Synced)
    too_big = refused(decode_relay_frame, padded(MAX_WEBSOCKET_MESSAGE_BYTES + 1))
    assert too_big.code == "frame_too_large"
    assert (client_frames._default_limit, relay_frames._max_bytes) == (
        MAX_FRAME_BYTES,
        MAX_WEBSOCKET_MESSAGE_BYTES,
    )
    # A `group_send` (one envelope per member) may use the whole WebSocket limit; any other
    # client frame that large is refused, and nothing over the WebSocket limit is read.
    copy = g.GroupCopy(to="ben", body="x" * 40_000, commitment=b"\x01" * 32)
    group_send = encode_frame(
        g.GroupSend(id="group-msg-1", group="g" * 22, mode="e2ee", copies=[copy] * 4)
    )
    assert MAX_FRAME_BYTES < len(group_send) < MAX_WEBSOCKET_MESSAGE_BYTES
    assert isinstance(decode_client_frame(group_send), g.GroupSend)
    send = encode_frame(f.Send(id="message-1", to="ben", mode="visible", body="é" * 40_000))
    assert len(send.encode()) > MAX_FRAME_BYTES
    assert refused(decode_client_frame, send).code == "frame_too_large"
    assert refused(decode_client_frame, padded(MAX_WEBSOCKET_MESSAGE_BYTES + 1)).code == (
        "frame_too_large"
    )


def test_encode_gives_json_bytes_and_encode_frame_text():
    assert encode(f.Person(handle="ann", display_name="Ann")) == (
        b'{"handle":"ann","display_name":"Ann"}'
    )
    assert encode_frame(f.Synced()) == '{"type":"synced"}'


# --- fuzzing that checks what it decoded --------------------------------------------------

TYPES = [*sorted(CLIENT_TYPES), "synced", "nope"]


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["type", "rid", "id", "to", "handle", "mode", "body", "query", "refs"]),
        st.sampled_from(TYPES)
        | st.text(max_size=12)
        | st.integers()
        | st.booleans()
        | st.none()
        | st.lists(st.dictionaries(st.sampled_from(["from", "id"]), st.text(max_size=10))),
        max_size=6,
    )
)
def test_whatever_decodes_is_the_frame_its_type_names_and_re_encodes_the_same(value):
    raw = msgspec.json.encode(value)
    try:
        frame = decode_client_frame(raw)
    except FrameError as exc:
        expected = (
            "unknown_frame_type"
            if isinstance(value.get("type"), str) and value["type"] not in CLIENT_TYPES
            else "invalid_frame"
        )
        assert exc.code == expected
        return
    assert type(frame) is CLIENT_TYPES[value["type"]]
    assert decode_client_frame(encode_frame(frame)) == frame
    assert json.loads(encode_frame(frame))["type"] == value["type"]


def test_a_decoder_is_made_from_its_union_its_types_and_its_limit():
    decoder = _FrameDecoder(f.ClientFrame, f.CLIENT_FRAME_TYPES, 100)
    assert decoder.decode(b'{"type":"contacts_list","rid":"abcdefgh"}') == f.ContactsList(
        rid="abcdefgh"
    )
    assert refused(decoder.decode, b'{"type":"synced"}').code == "unknown_frame_type"
    assert refused(decoder.decode, padded(101)).code == "frame_too_large"


# --- what each frame's fields accept (PROTOCOL.md §4, §6.2, §6.3), at the bounds -----------

B64 = {n: base64.b64encode(bytes(n)).decode() for n in (31, 32, 33, 64)}


def decodes(decode, value: dict) -> bool:
    try:
        decode(json.dumps(value))
    except FrameError as exc:
        assert exc.code == "invalid_frame"
        return False
    return True


def report(**message) -> dict:
    return {
        "type": "report",
        "rid": "abcdefgh",
        "handle": "bob",
        "reason": "spam",
        "messages": [{"id": "abcdefgh", "from": "bob", "to": "ann", "text": "hi", **message}],
    }


def test_optional_fields_and_their_defaults():
    minimal = decode_client_frame(json.dumps(report()))
    assert minimal.messages[0] == f.ReportedMessage(
        id="abcdefgh", sender="bob", to="ann", text="hi"
    )
    m = minimal.messages[0]
    assert (m.sent_at, m.franking_key, m.commitment, m.franking_tag, m.attachment_sha256) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert '"from":"bob"' in encode_frame(minimal)
    upload = decode_client_frame('{"type":"upload_prekeys","rid":"abcdefgh"}')
    assert (upload.signed_prekey, upload.one_time_prekeys) == (None, [])
    fetch = decode_client_frame('{"type":"fetch_bundle","rid":"abcdefgh","handle":"bob"}')
    assert fetch.one_time_prekey is True
    accepted = decode_relay_frame(
        '{"type":"accepted","id":"abcdefgh","conversation":"dm:a:b",'
        '"sent_at":"2026-01-02T03:04:05Z"}'
    )
    assert accepted.request is False
    error = decode_relay_frame('{"type":"error","code":"x","message":"m"}')
    assert error.ref is None
    contact = msgspec.convert(
        {"handle": "bob", "display_name": "Bob", "state": "connected", "mode": None},
        f.ContactEntry,
    )
    assert contact.restricted is False


def test_a_bundle_without_prekeys():
    declaration = {
        "handle": "bob",
        "band": "adult",
        "identity_key": B64[32],
        "declared_at": "2026-01-02T03:04:05Z",
        "signature": B64[64],
    }
    bundle = decode_relay_frame(
        json.dumps(
            {
                "type": "bundle",
                "rid": "abcdefgh",
                "handle": "bob",
                "mode": "visible",
                "identity_key": B64[32],
                "declaration": declaration,
            }
        )
    )
    assert (bundle.signed_prekey, bundle.one_time_prekey) == (None, None)


@pytest.mark.parametrize("kind", ["message", "system", "notice"])
def test_each_delivery_kind(kind):
    frame = decode_relay_frame(
        json.dumps(
            {
                "type": "deliver",
                "id": "abcdefgh",
                "from": "agechat",
                "to": "bob",
                "conversation": "dm:agechat:bob",
                "mode": "visible",
                "body": "hi",
                "sent_at": "2026-01-02T03:04:05Z",
                "kind": kind,
            }
        )
    )
    assert frame.kind == kind


@pytest.mark.parametrize("field", ["franking_key", "commitment", "franking_tag"])
def test_franking_values_are_exactly_32_bytes(field):
    assert decodes(decode_client_frame, report(**{field: B64[32]}))
    assert not decodes(decode_client_frame, report(**{field: B64[31]}))
    assert not decodes(decode_client_frame, report(**{field: B64[33]}))


def test_search_query_and_report_reason_lengths():
    def search(query: str) -> dict:
        return {"type": "search", "rid": "abcdefgh", "query": query}

    assert not decodes(decode_client_frame, search(""))
    assert decodes(decode_client_frame, search("a"))
    assert decodes(decode_client_frame, search("a" * 64))
    assert not decodes(decode_client_frame, search("a" * 65))
    assert not decodes(decode_client_frame, {**report(), "reason": ""})
    assert decodes(decode_client_frame, {**report(), "reason": "r"})
    assert decodes(decode_client_frame, {**report(), "reason": "r" * 200})
    assert not decodes(decode_client_frame, {**report(), "reason": "r" * 201})


def test_prekey_ids_are_u32():
    def upload(key_id: int) -> dict:
        return {
            "type": "upload_prekeys",
            "rid": "abcdefgh",
            "one_time_prekeys": [{"id": key_id, "public": B64[32]}],
        }

    assert not decodes(decode_client_frame, upload(-1))
    assert decodes(decode_client_frame, upload(0))
    assert decodes(decode_client_frame, upload(2**32 - 1))
    assert not decodes(decode_client_frame, upload(2**32))
