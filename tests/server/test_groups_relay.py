"""Groups on a real relay, frame by frame (issue 15): who may add whom and with which code,
the group's one mode and the lines that announce it, and the fan-out of a visible message
to every member exactly once. Raw frames: nothing in the client library hides a step."""

from __future__ import annotations

import contextlib

import pytest_asyncio

from protocol.e2ee import MIN_RATCHET_MESSAGE, Envelope, encode_body, is_envelope
from protocol.frames import ContactRequest, ContactRespond, Deliver, Done, Error
from protocol.group_frames import (
    GroupAdd,
    GroupCopy,
    GroupCreate,
    GroupLeave,
    GroupList,
    GroupRespond,
    GroupResult,
    GroupSend,
    GroupsResult,
)
from server.policy.loader import PRESETS_DIR
from tests.server.raw import Person, connect, new_id, request, wait_for
from tests.support import Relay, years_ago

ADULT, TEEN = years_ago(40), years_ago(14)


@pytest_asyncio.fixture
async def world(tmp_path):
    """A default relay with adults ana, ben, cal, dan and teens tia, uma (ana–tia, ana–ben,
    ana–cal connected; dan is nobody's contact)."""
    relay = await Relay(tmp_path / "relay").start()
    people = {
        h: await Person(h, TEEN if h in ("tia", "uma") else ADULT).register(relay)
        for h in ("ana", "ben", "cal", "dan", "tia", "uma")
    }
    async with contextlib.AsyncExitStack() as stack:
        ws = {h: await stack.enter_async_context(connect(relay, p)) for h, p in people.items()}
        for asker, answerer in (("tia", "ana"), ("ben", "ana"), ("cal", "ana"), ("uma", "tia")):
            await request(ws[asker], ContactRequest(rid=new_id(), to=answerer))
            done = await request(
                ws[answerer], ContactRespond(rid=new_id(), handle=asker, accept=True)
            )
            assert isinstance(done, Done), done
        yield relay, ws
    await relay.stop()


def outcomes(result: GroupResult) -> dict[str, str]:
    return {o.handle: o.code or o.outcome for o in result.outcomes}


async def line(ws, code: str) -> Deliver:
    return await wait_for(ws, lambda f: isinstance(f, Deliver) and f.code == code)


async def test_an_adults_only_group_is_e2ee_and_its_adds_obey_the_pair_rules(world):
    _, ws = world
    result = await request(
        ws["ana"], GroupCreate(rid=new_id(), name="Book club", members=["ben", "dan", "uma"])
    )
    assert isinstance(result, GroupResult)
    # ben is a contact: he joins. dan is a stranger adult: invited (as a contact request
    # would be). uma is a minor ana isn't connected with: refused with the pair rule's code.
    assert outcomes(result) == {"ben": "joined", "dan": "invited", "uma": "contact_not_allowed"}
    assert result.group.mode == "e2ee"
    gid = result.group.id
    invite = await line(ws["dan"], "group_invite")
    assert invite.conversation == f"grp:{gid}" and "Book club" in invite.body
    # An invitee sees the group's name and who invited them, no members.
    (view,) = (await request(ws["dan"], GroupList(rid=new_id()))).groups
    assert (view.state, view.invited_by, view.members) == ("invited", "ana", [])
    assert isinstance(
        await request(ws["dan"], GroupRespond(rid=new_id(), group=gid, accept=True)), Done
    )
    (view,) = (await request(ws["dan"], GroupList(rid=new_id()))).groups
    assert {m.handle for m in view.members} == {"ana", "ben", "dan"}
    # Only an admin adds.
    refused = await request(ws["ben"], GroupAdd(rid=new_id(), group=gid, handle="cal"))
    assert isinstance(refused, Error) and refused.code == "not_group_admin"
    # A group one isn't in doesn't exist, as far as one can tell.
    refused = await request(ws["cal"], GroupSend(id=new_id(), group=gid, mode="visible", body="x"))
    assert isinstance(refused, Error) and refused.code == "unknown_group"


async def test_a_connected_minor_switches_the_group_to_visible_before_she_joins(world):
    _, ws = world
    result = await request(ws["ana"], GroupCreate(rid=new_id(), name="Family", members=["ben"]))
    gid = result.group.id
    assert result.group.mode == "e2ee"
    added = await request(ws["ana"], GroupAdd(rid=new_id(), group=gid, handle="tia"))
    assert outcomes(added) == {"tia": "joined"} and added.group.mode == "visible"
    # Everyone is told, and why; tia's first line in the group already says visible.
    switched = await line(ws["ben"], "group_mode_changed")
    assert "visible to safety checks" in switched.body and "under 18" in switched.body
    first = await wait_for(
        ws["tia"], lambda f: isinstance(f, Deliver) and f.conversation == f"grp:{gid}"
    )
    assert first.code == "group_mode_changed"
    # Ben can't find tia (an adult, not connected with her): she isn't listed to him.
    (view,) = (await request(ws["ben"], GroupList(rid=new_id()))).groups
    assert {m.handle for m in view.members} == {"ana", "ben"} and view.hidden_members == 1
    # A visible message reaches every other member once, in the group's conversation.
    mid = new_id()
    sent = await request(ws["ben"], GroupSend(id=mid, group=gid, mode="visible", body="hello all"))
    assert sent.conversation == f"grp:{gid}"
    for h in ("ana", "tia"):
        got = await wait_for(ws[h], lambda f: isinstance(f, Deliver) and f.body == "hello all")
        assert got.sender == "ben" and got.conversation == f"grp:{gid}" and got.id.startswith(mid)
    # A resend is answered again and stores nothing new.
    again = await request(ws["ben"], GroupSend(id=mid, group=gid, mode="visible", body="hello all"))
    assert again.id == mid
    # e2ee is refused now, with the group's mode.
    wrong = await request(ws["ben"], GroupSend(id=new_id(), group=gid, mode="e2ee"))
    assert isinstance(wrong, Error) and wrong.code == "mode_mismatch"
    # When she leaves, it is end-to-end encrypted again, and everyone is told.
    assert isinstance(await request(ws["tia"], GroupLeave(rid=new_id(), group=gid)), Done)
    back = await line(ws["ana"], "group_mode_changed")
    assert "end-to-end encrypted" in back.body


async def test_with_refuse_an_encrypted_group_takes_no_minor(tmp_path):
    """`groups.minor_joins_e2ee = "refuse"` (the `strict` preset's setting), on a copy of
    `default` where a parent and her teen can be connected."""
    text = (PRESETS_DIR / "default.toml").read_text(encoding="utf-8")
    policy = tmp_path / "refuse.toml"
    policy.write_text(text.replace('minor_joins_e2ee = "visible"', 'minor_joins_e2ee = "refuse"'))
    relay = await Relay(tmp_path / "relay", policy=str(policy)).start()
    try:
        people = [
            await Person(h, TEEN if h == "tia" else ADULT).register(relay)
            for h in ("ana", "ben", "tia")
        ]
        async with contextlib.AsyncExitStack() as stack:
            a, b, t = [await stack.enter_async_context(connect(relay, p)) for p in people]
            for asker, ws_asker in (("ben", b), ("tia", t)):
                await request(ws_asker, ContactRequest(rid=new_id(), to="ana"))
                await request(a, ContactRespond(rid=new_id(), handle=asker, accept=True))
            result = await request(a, GroupCreate(rid=new_id(), name="Work", members=["ben"]))
            assert result.group.mode == "e2ee"
            added = await request(a, GroupAdd(rid=new_id(), group=result.group.id, handle="tia"))
            assert outcomes(added) == {"tia": "group_encrypted"}
            assert added.group.mode == "e2ee"
            # A group that starts with her in it is visible from the start.
            family = await request(a, GroupCreate(rid=new_id(), name="Us", members=["tia", "ben"]))
            assert outcomes(family) == {"tia": "joined", "ben": "joined"}
            assert family.group.mode == "visible"
    finally:
        await relay.stop()


async def test_lists_show_only_ones_own_groups(world):
    _, ws = world
    await request(ws["ana"], GroupCreate(rid=new_id(), name="A", members=["ben"]))
    await request(ws["tia"], GroupCreate(rid=new_id(), name="B", members=["uma"]))
    for h, expected in (("ana", {"A"}), ("ben", {"A"}), ("uma", {"B"}), ("dan", set())):
        got = await request(ws[h], GroupList(rid=new_id()))
        assert isinstance(got, GroupsResult)
        assert {g.name for g in got.groups} == expected, h


BAD_GROUP_FRAMES = [
    # Wrong types and sizes: refused as frames, with the request's id where it can be read.
    ('{"type": "group_create", "rid": "req-00001", "name": ""}', "invalid_frame"),
    ('{"type": "group_create", "rid": "req-00002", "name": "a\\nb"}', "invalid_frame"),
    (
        '{"type": "group_create", "rid": "req-00003", "name": "x", "members": "ben"}',
        "invalid_frame",
    ),
    (
        '{"type": "group_add", "rid": "req-00004", "group": "short", "handle": "ben"}',
        "invalid_frame",
    ),
    (
        '{"type": "group_send", "id": "msg-00005", "group": "' + "g" * 22 + '", "mode": "nope"}',
        "invalid_frame",
    ),
    (
        '{"type": "group_send", "id": "'
        + "m" * 60
        + '", "group": "'
        + "g" * 22
        + '", "mode": "visible"}',
        "invalid_frame",
    ),
    # Well-formed, about a group that doesn't exist (or isn't ours): the same code either way.
    ('{"type": "group_leave", "rid": "req-00007", "group": "' + "g" * 22 + '"}', "unknown_group"),
    (
        '{"type": "group_send", "id": "msg-00008", "group": "'
        + "g" * 22
        + '", "mode": "visible", "body": "hi"}',
        "unknown_group",
    ),
]


async def test_malformed_and_misdirected_group_frames_get_codes_and_the_connection_lives(world):
    _, ws = world
    a = ws["ana"]
    for raw, code in BAD_GROUP_FRAMES:
        await a.send_str(raw)
        reply = await wait_for(a, lambda f: isinstance(f, Error))
        assert reply.code == code, raw[:60]
        assert reply.ref is not None, raw[:60]
    # An e2ee group message whose copies don't name exactly the members, or twice the same.
    made = await request(a, GroupCreate(rid=new_id(), name="Pair", members=["ben"]))
    gid = made.group.id
    plain = GroupCopy(to="ben", body="not an envelope", commitment=b"\x01" * 32)
    wrong = await request(a, GroupSend(id=new_id(), group=gid, mode="e2ee", copies=[plain]))
    assert wrong.code == "mode_mismatch"
    envelope = encode_body(Envelope(b"\x01" + b"\x00" * (MIN_RATCHET_MESSAGE + 8), None))
    assert is_envelope(envelope)
    copy = GroupCopy(to="cal", body=envelope, commitment=b"\x01" * 32)
    wrong = await request(a, GroupSend(id=new_id(), group=gid, mode="e2ee", copies=[copy]))
    assert (wrong.code, "ben" in wrong.message) == ("group_members_changed", True)
    twice = GroupCopy(to="ben", body=envelope, commitment=b"\x01" * 32)
    wrong = await request(a, GroupSend(id=new_id(), group=gid, mode="e2ee", copies=[twice, twice]))
    assert wrong.code == "group_members_changed"
    # A visible send with copies, and the connection still answers.
    wrong = await request(
        a, GroupSend(id=new_id(), group=gid, mode="visible", body="x", copies=[copy])
    )
    assert wrong.code == "mode_mismatch"
    assert isinstance(await request(a, GroupList(rid=new_id())), GroupsResult)
