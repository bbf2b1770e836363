"""A grooming-risk notice in the teen's chat (issue 14): after an adult asks her to keep the
chat secret, the relay's signals send a notice that the app shows in that chat — not as a
toast — with block and report one key away, on the banner and on the keyboard."""

from __future__ import annotations

from textual.widgets import Button

from client.session import ChatSession
from client.tui.screens.main import MainScreen
from client.tui.widgets.notice_banner import NoticeBanner
from server.app_keys import SIGNALS
from tests.client.tui.test_app import SIZE, app_for, log_text, screen_text, settle, text_of
from tests.support import PASSPHRASE, make_profile, open_clients, send_and_wait, years_ago


async def test_a_secrecy_request_brings_a_notice_in_the_chat_with_block_and_report(relay, tmp_path):
    app = await app_for(tmp_path, relay, "tia", years_ago(14))
    vic = await make_profile(tmp_path, relay.url, "vic", years_ago(41))
    async with open_clients(vic) as (v,):
        session = await ChatSession.open(tmp_path / "tia", PASSPHRASE)
        await session.client.wait_connected()
        await session.request("vic")
        await session.close()
        await v.respond("tia", accept=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.current)
            main = app.screen
            for line in (
                "how old are you? which school do you go to?",
                "let's keep this between us, don't tell your parents",
            ):
                await send_and_wait(v, "tia", line)
            await relay.app[SIGNALS].drain()
            await settle(
                pilot, lambda: app.screen.query(NoticeBanner) and "secret" in screen_text(app)
            )

            banner = next(b for b in main.query(NoticeBanner) if b.code == "risk_secrecy")
            # In the chat it is about, above the messages; the words say what happened.
            assert main.current.handle == "vic"
            assert "let's keep this between us" in log_text(app)
            shown = str(banner.query_one(".notice-text").render())
            assert "Be careful with this person" in shown
            assert "secret" in shown.lower()

            # Opening the chat again (reading it) doesn't make the notice go: only "Got it".
            await main.open_conversation(main.current)
            await settle(pilot)
            banner = next(b for b in main.query(NoticeBanner) if b.code == "risk_secrecy")

            # Block, one press away on the banner: the same confirmation as Ctrl+B.
            banner.query_one("#notice-block", Button).press()
            await settle(pilot, lambda: app.screen is not main)
            assert "Block @vic?" in screen_text(app)
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is main)

            # Report, one press away: the report dialog for this chat, the secrecy line in it.
            banner.query_one("#notice-report", Button).press()
            await settle(
                pilot,
                lambda: app.screen is not main and "attached" in text_of(app, "#attach-label"),
            )
            assert "@vic" in screen_text(app)
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is main)

            # And the keys work from the chat itself while the notice is up.
            await pilot.press("ctrl+b")
            await settle(pilot, lambda: app.screen is not main)
            assert "Block @vic?" in screen_text(app)
            app.screen.query_one("#confirm", Button).press()
            await settle(pilot, lambda: app.screen is main and main.current.state == "blocked")
            assert main.current.state == "blocked"
