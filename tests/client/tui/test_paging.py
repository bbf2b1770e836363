"""A long conversation pages through a bounded window of mounted lines, both ways."""

from __future__ import annotations

from datetime import date

from client.keystore import MINIMUM
from client.session import ProfileSessions
from client.tui.app import AgechatApp
from client.tui.screens.main import MainScreen
from client.tui.widgets.message_item import MessageItem
from client.tui.widgets.message_log import WINDOW, MessageLog
from tests.client.tui.test_snapshots import PASSPHRASE, fill, write_profile

COUNT = 1_000


async def test_scrolling_a_long_conversation_keeps_a_bounded_window(tmp_path):
    profile = write_profile(tmp_path / "ana", "ana", "Ana", date(1990, 1, 1))
    lines = [("ben" if i % 2 else "ana", f"line {i:04d}") for i in range(COUNT)]
    await fill(profile, "ben", lines, notice=None)
    app = AgechatApp(ProfileSessions(tmp_path / "ana", kdf=MINIMUM), passphrase=PASSPHRASE)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, MainScreen) and app.screen.query(MessageItem):
                break
        log = app.screen.query_one(MessageLog)

        def bodies() -> list[str]:
            return [item.message.body for item in log.query(MessageItem)]

        assert bodies()[-1] == f"line {COUNT - 1:04d}"
        while await log.load_older():
            await pilot.pause()
            assert len(bodies()) <= WINDOW
        assert bodies()[0] == "line 0000"
        while await log.load_newer():
            await pilot.pause()
            assert len(bodies()) <= WINDOW
        assert bodies()[-1] == f"line {COUNT - 1:04d}"
        assert bodies() == sorted(bodies())  # in order, no gaps inside the window


async def test_opening_a_conversation_shows_its_newest_line(tmp_path):
    profile = write_profile(tmp_path / "ana", "ana", "Ana", date(1990, 1, 1))
    await fill(profile, "ben", [("ben", f"line {i:03d}") for i in range(150)], notice=None)
    app = AgechatApp(ProfileSessions(tmp_path / "ana", kdf=MINIMUM), passphrase=PASSPHRASE)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, MainScreen) and app.screen.query(MessageItem):
                break
        await pilot.pause(0.2)
        log = app.screen.query_one(MessageLog)
        newest = list(log.query(MessageItem))[-1]
        assert newest.message.body == "line 149"
        assert log.scroll_y == log.max_scroll_y > 0  # scrolled to the end, where it is
