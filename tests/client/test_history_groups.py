"""The local history and groups (issue 15): a history written before groups were kept
(schema v5) opens as v6 with its messages; group conversations have summaries keyed by
their conversation id; the relay's list of groups is kept, and a group it no longer lists
is marked, not forgotten."""

from __future__ import annotations

from datetime import UTC, datetime

from client import history as history_module
from client.history import History, conversation_key
from client.local_db import open_profile_db
from protocol.group_frames import GroupMemberView, GroupView
from protocol.groups import group_conversation

T0 = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)
GID = "AbCdEfGhIjKlMnOpQrStUv"  # 22 characters, as the relay makes them


def view(name: str = "Trip", state: str = "member") -> GroupView:
    return GroupView(
        id=GID,
        name=name,
        mode="visible",
        role="member",
        state=state,
        members=[
            GroupMemberView(handle="ana", display_name="Ana", role="admin", state="member"),
            GroupMemberView(
                handle="tia", display_name="Tia", role="member", state="member", minor=True
            ),
        ],
        hidden_members=1,
    )


async def add(history: History, conversation: str, msg_id: str, body: str, code=None) -> None:
    await history.add_incoming(
        sender="ana" if code is None else "agechat",
        msg_id=msg_id,
        recipient="ben",
        conversation=conversation,
        kind="message" if code is None else "system",
        mode="visible",
        body=body,
        sent_at=T0,
        received_at=T0,
        code=code,
    )


def test_conversation_keys():
    assert conversation_key("dm:ana:ben", "ben") == "ana"
    assert conversation_key(group_conversation(GID), "ben") == f"grp:{GID}"
    assert conversation_key("dm:ana:cal", "ben") is None


async def test_a_v5_history_opens_as_v6_and_keeps_the_relays_group_list(tmp_path):
    path = tmp_path / "history.sqlite3"
    v5 = [
        history_module._SCHEMA_V1,
        history_module._SCHEMA_V2,
        history_module._SCHEMA_V3,
        history_module._SCHEMA_V4,
        history_module._SCHEMA_V5,
    ]
    db = await open_profile_db(path, v5)
    await db.execute(
        "INSERT INTO messages (sender, msg_id, recipient, conversation, mode, body, direction, "
        "state, created_at) VALUES ('ana', 'm1', 'ben', 'dm:ana:ben', 'e2ee', 'hi', 'in', "
        "'received', ?)",
        (T0.timestamp(),),
    )
    await db.commit()
    await db.close()

    history = History(path)
    await history.open()
    try:
        async with history.db.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == 6
        assert await history.saved_groups() == {}
        await add(history, group_conversation(GID), "g1", "You joined.", code="group_joined")
        await add(history, group_conversation(GID), "g2", "hello group")
        summaries = {s.peer: s for s in await history.conversation_summaries("ben")}
        assert set(summaries) == {"ana", f"grp:{GID}"}
        group = summaries[f"grp:{GID}"]
        assert group.is_group and not summaries["ana"].is_group
        assert (group.unread, group.last.body) == (1, "hello group")  # lines aren't unread

        await history.save_groups([view()], T0)
        (kept,) = (await history.saved_groups()).values()
        assert kept.current and kept.view == view()
        await history.save_groups([view("Trip 2")], T0)  # renamed: the newer list wins
        assert (await history.saved_groups())[GID].view.name == "Trip 2"
        await history.save_groups([], T0)  # no longer listed: left, or removed
        kept = (await history.saved_groups())[GID]
        assert not kept.current and kept.view.name == "Trip 2"
    finally:
        await history.close()
