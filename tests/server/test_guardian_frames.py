"""Guardian-link frames from a peer that doesn't play along (PROTOCOL.md §6.7, §7): every
malformed or misdirected one gets its code and its `ref`, and the connection lives on."""

from __future__ import annotations

import json

from protocol.frames import (
    Done,
    Error,
    GuardianAccept,
    GuardianDecide,
    GuardianInvite,
    GuardiansResult,
    GuardianUnlink,
)
from tests.server.raw import Person, connect, receive, request, wait_for
from tests.support import ADULT, TEEN

MALFORMED = [
    ({"type": "guardian_invite", "rid": "abcdefgh"}, "invalid_frame"),  # no handle
    ({"type": "guardian_invite", "rid": "abcdefgh", "handle": "Not A Handle"}, "invalid_frame"),
    ({"type": "guardian_accept", "rid": "abcdefgh", "handle": 7}, "invalid_frame"),
    ({"type": "guardian_unlink", "rid": "short", "handle": "mum"}, "invalid_frame"),
    (
        {"type": "guardian_decide", "rid": "abcdefgh", "ward": "tia", "contact": "rex"},
        "invalid_frame",  # no `approve`
    ),
    (
        {
            "type": "guardian_decide",
            "rid": "abcdefgh",
            "ward": "tia",
            "contact": "rex",
            "approve": "yes",
        },
        "invalid_frame",
    ),
    ({"type": "guardians", "rid": "abcdefgh"}, "unknown_frame_type"),  # a relay frame
]


async def test_malformed_guardian_frames_get_codes_and_the_connection_lives(relay):
    mum = await Person("mum", ADULT).register(relay)
    async with connect(relay, mum) as ws:
        for raw, code in MALFORMED:
            await ws.send_str(json.dumps(raw))
            reply = await receive(ws)
            assert isinstance(reply, Error), raw
            assert reply.code == code, raw
        await ws.send_str(json.dumps({"type": "guardian_list", "rid": "still-alive"}))
        listed = await wait_for(ws, lambda f: isinstance(f, GuardiansResult | Error))
        assert isinstance(listed, GuardiansResult) and listed.rid == "still-alive"


async def test_misdirected_guardian_requests_are_refused_with_their_ref(relay):
    mum = await Person("mum", ADULT).register(relay)
    await Person("tia", TEEN).register(relay)
    async with connect(relay, mum) as ws:
        cases = [
            (GuardianInvite(rid="invite-nobody", handle="nobody_here"), "unknown_recipient"),
            (GuardianInvite(rid="invite-myself", handle="mum"), "cannot_target_self"),
            (GuardianAccept(rid="accept-nothing", handle="tia"), "no_pending_invite"),
            (GuardianUnlink(rid="unlink-nothing", handle="tia"), "not_linked"),
            (
                GuardianDecide(rid="decide-nothing", ward="tia", contact="mum", approve=True),
                "cannot_target_self",
            ),
            (
                GuardianDecide(rid="decide-no-ward", ward="tia", contact="tia", approve=False),
                "no_pending_approval",
            ),
            (GuardianInvite(rid="invite-teen-1", handle="tia"), "contact_not_allowed"),
        ]
        for frame, code in cases:
            reply = await request(ws, frame)
            assert isinstance(reply, Error), frame
            assert (reply.code, reply.ref) == (code, frame.rid)
        await ws.send_str(json.dumps({"type": "guardian_list", "rid": "list-it-now"}))
        listed = await wait_for(ws, lambda f: isinstance(f, GuardiansResult | Done | Error))
        assert isinstance(listed, GuardiansResult) and listed.rid == "list-it-now"
        assert (listed.links, listed.approvals) == ([], [])
