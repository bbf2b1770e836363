"""Getting around the main screen with the keyboard: the footer at 120 columns, a key to the
conversation list, where Tab and Shift+Tab go, and closing the Keys panel."""

from __future__ import annotations

from textual.widgets import Button, HelpPanel, Input

from client.tui.screens.main import MainScreen
from client.tui.widgets.conversation_list import ConversationList
from tests.client.tui.test_app import SIZE, app_for, footer_text, settle
from tests.support import make_profile, open_clients, years_ago


async def test_with_a_request_open_the_footer_still_shows_quit_at_120_columns(relay, tmp_path):
    assert SIZE[0] == 120
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    cal = await make_profile(tmp_path, relay.url, "cal", years_ago(42))
    async with open_clients(cal) as (c,), app.run_test(size=SIZE) as pilot:
        await c.contact_request("ana")
        await settle(pilot, lambda: app.screen.current and app.screen.current.is_request)
        # The footer recomposes after every change of bindings: wait until it shows Accept.
        await settle(pilot, lambda: "^y Accept" in footer_text(app))
        footer = footer_text(app)
        for key in ("^f Find", "^y Accept", "^n Decline", "^b Block", "^r Report", "^q Quit"):
            assert key in footer, footer
        assert footer.rstrip().endswith("^p palette")  # nothing cut off before it


async def test_a_key_moves_to_the_conversation_list(relay, tmp_path):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    ben = await make_profile(tmp_path, relay.url, "ben", years_ago(41))
    async with open_clients(ben) as (b,), app.run_test(size=SIZE) as pilot:
        await b.contact_request("ana")
        await settle(pilot, lambda: app.screen.current and app.screen.current.is_request)
        app.screen.query_one("#accept", Button).press()
        await settle(pilot, lambda: app.screen.current.state == "connected")
        await settle(pilot, lambda: isinstance(app.focused, Input))
        await settle(pilot, lambda: "^l Chats" in footer_text(app))  # (it recomposes)
        assert "^l Chats" in footer_text(app)
        await pilot.press("ctrl+l")
        assert isinstance(app.focused, ConversationList)


async def test_shift_tab_from_the_input_goes_to_the_list_and_never_to_decline(relay, tmp_path):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    ben = await make_profile(tmp_path, relay.url, "ben", years_ago(41))
    cal = await make_profile(tmp_path, relay.url, "cal", years_ago(42))
    async with open_clients(ben, cal) as (b, c), app.run_test(size=SIZE) as pilot:
        await b.contact_request("ana")
        await settle(pilot, lambda: app.screen.current and app.screen.current.is_request)
        main = app.screen
        main.query_one("#accept", Button).press()
        await settle(pilot, lambda: main.current.state == "connected")
        await c.contact_request("ana")  # a new request waits while Ana is writing to Ben
        await settle(pilot, lambda: any(x.is_request for x in main._conversations))
        main.query_one("#compose", Input).focus()
        # The new request re-renders the list: let that and the focus land before the key.
        await settle(pilot, lambda: isinstance(app.focused, Input))
        await pilot.press("shift+tab")
        await settle(pilot, lambda: isinstance(app.focused, ConversationList))
        assert isinstance(app.focused, ConversationList)
        # With Cal's request open, Tab and Shift+Tab go round without landing on its
        # buttons: Ctrl+Y and Ctrl+N (shown in the footer) or a click do that.
        cal_request = next(x for x in main._conversations if x.handle == "cal")
        await main.open_conversation(cal_request)
        await settle(pilot, lambda: main.query_one("#decline", Button).display)
        main.query_one(ConversationList).focus()
        for key in ("shift+tab", "tab"):
            for _ in range(4):
                await pilot.press(key)
                assert app.focused is not None
                assert app.focused.id not in ("decline", "accept"), (key, app.focused)


async def test_escape_closes_the_keys_panel(relay, tmp_path):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        main = app.screen
        await pilot.press("ctrl+p")
        await settle(pilot, lambda: app.screen is not main)
        await pilot.press(*"keys")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen is main and main.query(HelpPanel))
        assert main.query(HelpPanel)
        await pilot.press("escape")
        await settle(pilot, lambda: not main.query(HelpPanel))
        assert not main.query(HelpPanel)
        assert app.screen is main  # and the app is still there
