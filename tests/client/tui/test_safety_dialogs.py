"""Block, unblock and report: what the dialogs ask and say before anything is sent."""

from __future__ import annotations

from textual.widgets import Button

from client.tui.screens.main import MainScreen
from tests.client.tui.test_app import SIZE, app_for, log_text, screen_text, settle, text_of
from tests.support import make_profile, open_clients, years_ago


async def test_unblocking_asks_first(relay, tmp_path):
    """Ctrl+B blocks after a confirmation; pressed again it must not quietly unblock
    someone a child blocked."""
    app = await app_for(tmp_path, relay, "maya", years_ago(14))
    leo = await make_profile(tmp_path, relay.url, "leo", years_ago(16))
    async with open_clients(leo) as (lo,), app.run_test(size=SIZE) as pilot:
        m = await lo.send("maya", "hey")
        await lo.wait_accepted(m.msg_id)
        await settle(pilot, lambda: isinstance(app.screen, MainScreen) and "hey" in log_text(app))
        main = app.screen
        await pilot.press("ctrl+b")
        await settle(pilot, lambda: app.screen is not main)
        assert "Block @leo?" in screen_text(app)
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: app.screen is main and main.current.state == "blocked")
        await pilot.press("ctrl+b")
        await settle(pilot, lambda: app.screen is not main)
        asked = screen_text(app)
        assert "Unblock @leo?" in asked
        assert "message you again" in asked
        await pilot.press("enter")  # the default button is Cancel
        await settle(pilot, lambda: app.screen is main)
        await settle(pilot)
        assert main.current.state == "blocked"
        await pilot.press("ctrl+b")
        await settle(pilot, lambda: app.screen is not main)
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: app.screen is main and main.current.state != "blocked")
        assert main.current.state != "blocked"


async def open_report(app, pilot, main: MainScreen) -> str:
    await pilot.press("ctrl+r")
    await settle(
        pilot, lambda: app.screen is not main and "attached" in text_of(app, "#attach-label")
    )
    shown = screen_text(app)
    await pilot.press("escape")
    await settle(pilot, lambda: app.screen is main)
    return shown


async def test_the_report_dialog_counts_in_words_and_warns_when_the_chat_is_encrypted(
    relay, tmp_path
):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    ben = await make_profile(tmp_path, relay.url, "ben", years_ago(41))
    async with open_clients(ben) as (b,), app.run_test(size=SIZE) as pilot:
        m = await b.send("ana", "one")
        await b.wait_accepted(m.msg_id)
        await settle(pilot, lambda: isinstance(app.screen, MainScreen) and "one" in log_text(app))
        main = app.screen
        assert main.current.mode == "e2ee"
        one = await open_report(app, pilot, main)
        assert "This message will be attached" in one
        assert "message(s)" not in one
        # Reporting an encrypted chat hands its text over: the dialog says so plainly.
        assert "end-to-end encrypted" in one and "readable" in one
        for text in ("two", "three"):
            m = await b.send("ana", text)
            await b.wait_accepted(m.msg_id)
        await settle(pilot, lambda: "three" in log_text(app))
        three = await open_report(app, pilot, main)
        assert "These 3 messages will be attached" in three


async def test_reporting_a_visible_chat_says_nothing_about_encryption(relay, tmp_path):
    app = await app_for(tmp_path, relay, "maya", years_ago(14))
    leo = await make_profile(tmp_path, relay.url, "leo", years_ago(16))
    async with open_clients(leo) as (lo,), app.run_test(size=SIZE) as pilot:
        for text in ("hey", "you there?"):
            m = await lo.send("maya", text)
            await lo.wait_accepted(m.msg_id)
        await settle(
            pilot, lambda: isinstance(app.screen, MainScreen) and "there?" in log_text(app)
        )
        main = app.screen
        shown = await open_report(app, pilot, main)
        assert "These 2 messages will be attached" in shown
        assert "readable" not in shown
