"""Snapshot tests of the app's screens (pytest-textual-snapshot).

The profiles are real, the history is written through the client library with fixed
times, and the relay address points at a closed port so the screens don't depend on a
network; the tests that need a relay are in test_app.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import nacl.signing
import pytest
from textual.widgets import Input

from client.history import History
from client.keystore import MINIMUM, seal
from client.profile import Profile, ProfileData
from client.session import ProfileSessions
from client.tui.app import AgechatApp
from client.tui.widgets.connection_indicator import ConnectionIndicator
from protocol.group_frames import GroupMemberView, GroupView
from protocol.groups import group_conversation

SIZE = (110, 32)
PASSPHRASE = "snapshot"
T0 = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)


#: Port 9 (discard) is closed here: the app stays offline and the address is stable.
CLOSED_SERVER = "http://127.0.0.1:9"


def write_profile(directory: Path, handle: str, name: str, born: date) -> Profile:
    key = nacl.signing.SigningKey(bytes(32 * [7]))
    data = ProfileData(
        handle=handle,
        display_name=name,
        server=CLOSED_SERVER,
        birthdate=born,
        identity_key=bytes(key.verify_key),
        created_at=T0,
        secret=seal(bytes(key), PASSPHRASE, MINIMUM),
    )
    Profile.write_file(Profile.path_in(directory), data)
    return Profile(directory, data)


async def fill(
    profile: Profile,
    peer: str,
    lines: list[tuple[str, str]],
    notice: str | None,
    mode: str = "visible",
    code: str = "new_adult_contact",
) -> None:
    history = History(profile.history_path)
    await history.open()
    me = profile.handle
    conversation = f"dm:{min(me, peer)}:{max(me, peer)}"
    for i, (who, text) in enumerate(lines):
        at = T0 + timedelta(minutes=i)
        if who == me:
            m = await history.add_outgoing(
                sender=me,
                msg_id=f"out-{i:05d}",
                recipient=peer,
                conversation=conversation,
                mode=mode,
                body=text,
                created_at=at,
            )
            await history.mark_sent(m.msg_id, me, at)
        else:
            await history.add_incoming(
                sender=who,
                msg_id=f"in-{i:06d}",
                recipient=me,
                conversation=conversation,
                kind="message",
                mode=mode,
                body=text,
                sent_at=at,
                received_at=at,
            )
    if notice:
        await history.add_incoming(
            sender="agechat",
            msg_id="notice-0001",
            recipient=me,
            conversation=conversation,
            kind="notice",
            mode="visible",
            body=notice,
            sent_at=T0,
            received_at=T0,
            code=code,
        )
    await history.close()


GROUP_ID = "SaturdayPlans000000000"  # 22 characters, as the relay makes them


async def fill_group(profile: Profile, notice: str | None = None) -> None:
    """Maya's group with her mum and Leo (16): the relay's line, a few messages and the group
    as the relay last listed it (kept in the history for when the relay is unreachable)."""
    history = History(profile.history_path)
    await history.open()
    me, conversation = profile.handle, group_conversation(GROUP_ID)
    view = GroupView(
        id=GROUP_ID,
        name="Saturday plans",
        mode="visible",
        role="member",
        state="member",
        members=[
            GroupMemberView(handle="dana", display_name="Dana", role="admin", state="member"),
            GroupMemberView(
                handle="leo", display_name="Leo", role="member", state="member", minor=True
            ),
            GroupMemberView(
                handle="maya", display_name="Maya", role="member", state="member", minor=True
            ),
        ],
    )
    await history.save_groups([view], T0)
    lines = [
        ("agechat", "You joined the group “Saturday plans”. It is visible to safety checks."),
        ("dana", "Who's in for the climbing wall on Saturday?"),
        ("leo", "me!"),
        ("maya", "Me too! Can we go at 2?"),
        ("dana", "2 it is. I'll drive."),
    ]
    for i, (who, text) in enumerate(lines):
        at = T0 + timedelta(hours=1, minutes=i)
        if who == me:
            m = await history.add_outgoing(
                sender=me,
                msg_id=f"grp-out-{i:05d}",
                recipient=GROUP_ID,
                conversation=conversation,
                mode="visible",
                body=text,
                created_at=at,
            )
            await history.mark_sent(m.msg_id, me, at)
            continue
        await history.add_incoming(
            sender=who,
            msg_id=f"grp-in-{i:05d}",
            recipient=me,
            conversation=conversation,
            kind="system" if who == "agechat" else "message",
            mode="visible",
            body=text,
            sent_at=at,
            received_at=at,
            code="group_joined" if who == "agechat" else None,
        )
    if notice:
        at = T0 + timedelta(hours=2)
        await history.add_incoming(
            sender="agechat",
            msg_id="grp-notice-0001",
            recipient=me,
            conversation=conversation,
            kind="notice",
            mode="visible",
            body=notice,
            sent_at=at,
            received_at=at,
            code="risk_secrecy",
        )
    await history.close()


async def until_offline(pilot) -> None:
    """Wait until the app gave up its first connection attempt (a stable screen)."""
    for _ in range(100):
        await pilot.pause(0.05)
        found = pilot.app.screen.query(ConnectionIndicator)
        if found and found.first().state in ("reconnecting", "offline"):
            break
    await pilot.pause(0.2)


@pytest.fixture
def maya(tmp_path) -> Path:
    profile = write_profile(tmp_path / "maya", "maya", "Maya", date(2012, 3, 1))
    lines = [
        ("dana", "Did you finish your homework?"),
        ("maya", "Almost! Can Leo come over on Saturday?"),
        ("dana", "Sure, if his parents say it's ok."),
    ]
    asyncio.run(
        fill(
            profile,
            "dana",
            lines,
            notice=(
                "Dana (@dana) is an adult and is now one of your contacts. If anything they "
                "say makes you uncomfortable, you can block or report them at any time."
            ),
        )
    )
    return tmp_path / "maya"


@pytest.fixture
def dana(tmp_path) -> Path:
    profile = write_profile(tmp_path / "dana", "dana", "Dana", date(1984, 7, 12))
    lines = [
        ("sam", "Are we still on for the school fundraiser meeting?"),
        ("dana", "Yes, 7pm. I'll bring the raffle tickets."),
        ("sam", "Great, see you there."),
    ]
    asyncio.run(fill(profile, "sam", lines, notice=None, mode="e2ee"))
    return tmp_path / "dana"


def test_onboarding_for_a_minor(snap_compare, tmp_path):
    app = AgechatApp(ProfileSessions(tmp_path / "new", kdf=MINIMUM))

    async def type_details(pilot) -> None:
        for field, value in (("handle", "maya_r"), ("name", "Maya"), ("birthdate", "2012-03-01")):
            pilot.app.screen.query_one(f"#{field}", Input).value = value
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=type_details)


def test_main_screen_visible_mode_with_a_notice_banner(snap_compare, maya):
    app = AgechatApp(ProfileSessions(maya, kdf=MINIMUM), passphrase=PASSPHRASE)
    assert snap_compare(app, terminal_size=SIZE, run_before=until_offline)


def test_a_grooming_risk_notice_with_block_and_report(snap_compare, tmp_path):
    """What a 14-year-old sees after an adult asked for secrecy (docs/SIGNALS.md)."""
    profile = write_profile(tmp_path / "maya", "maya", "Maya", date(2012, 3, 1))
    lines = [
        ("jay", "gg earlier! how old are you btw? what school do you go to?"),
        ("maya", "14 lol"),
        ("jay", "cool. let's keep our chats between us ok? don't tell your mum"),
    ]
    notice = (
        "This person asked you to keep your chat a secret. Adults you don't know well "
        "shouldn't ask that. You can block or report them."
    )
    asyncio.run(fill(profile, "jay", lines, notice=notice, code="risk_secrecy"))
    app = AgechatApp(ProfileSessions(tmp_path / "maya", kdf=MINIMUM), passphrase=PASSPHRASE)
    assert snap_compare(app, terminal_size=SIZE, run_before=until_offline)


def test_main_screen_e2ee_mode(snap_compare, dana):
    app = AgechatApp(ProfileSessions(dana, kdf=MINIMUM), passphrase=PASSPHRASE)
    assert snap_compare(app, terminal_size=SIZE, run_before=until_offline)


def test_account_dialog(snap_compare, maya):
    app = AgechatApp(ProfileSessions(maya, kdf=MINIMUM), passphrase=PASSPHRASE)

    async def open_account(pilot) -> None:
        await until_offline(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=open_account)


def test_a_group_chat_with_its_mode_explained(snap_compare, tmp_path):
    """Maya (14) in a group with her mum and Leo, offline: the group from the last list the
    relay gave, its mode and why in the header, Ctrl+G Members in the footer."""
    profile = write_profile(tmp_path / "maya", "maya", "Maya", date(2012, 3, 1))
    lines = [("dana", "Did you finish your homework?"), ("maya", "Almost!")]
    asyncio.run(fill(profile, "dana", lines, notice=None))
    asyncio.run(fill_group(profile))
    app = AgechatApp(ProfileSessions(tmp_path / "maya", kdf=MINIMUM), passphrase=PASSPHRASE)
    assert snap_compare(app, terminal_size=SIZE, run_before=until_offline)
