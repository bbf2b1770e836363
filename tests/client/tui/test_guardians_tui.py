"""Guardian links in the app (Account → Guardians), driven with Pilot against a real relay:
a teen is told what a guardian would see before inviting, links and unlinks (asked first);
a parent accepts and answers a new adult contact waiting for approval."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button, Input

from client.profile import Profile
from client.tui.screens.dialogs import AccountDialog, ConfirmDialog
from client.tui.screens.guardians import GuardiansDialog
from client.tui.screens.main import MainScreen
from server.policy.loader import PRESETS_DIR
from tests.client.tui.test_app import SIZE, app_for, screen_text, settle, text_of
from tests.support import Relay, drain, make_profile, open_clients, years_ago


async def open_guardians(app, pilot) -> GuardiansDialog:
    await settle(pilot, lambda: isinstance(app.screen, MainScreen))
    await pilot.press("ctrl+o")
    await settle(pilot, lambda: isinstance(app.screen, AccountDialog))
    app.screen.query_one("#guardians", Button).press()
    await settle(
        pilot,
        lambda: (
            isinstance(app.screen, GuardiansDialog)
            and "Loading" not in text_of(app, "#guardian-intro")
        ),
    )
    return app.screen


async def press(app, pilot, button: str, handle: str | None = None) -> None:
    if handle is not None:
        app.screen.query_one("#guardian-handle", Input).value = handle
    app.screen.query_one(f"#{button}", Button).press()
    await settle(pilot, lambda: text_of(app, "#guardian-status").strip() != "")


async def test_a_teen_is_told_what_a_guardian_sees_then_links_and_unlinks(tmp_path):
    relay = await Relay(tmp_path / "relay", policy="strict").start()
    try:
        app = await app_for(tmp_path, relay, "maya", years_ago(14))
        dana = await make_profile(tmp_path, relay.url, "dana", years_ago(41))
        async with open_clients(dana) as (d,), app.run_test(size=SIZE) as pilot:
            dialog = await open_guardians(app, pilot)
            shown = screen_text(app)
            assert "Never your messages" in shown
            assert "A new adult contact has to wait until your guardian approves it" in shown
            await press(app, pilot, "invite", "dana")
            assert "Invited @dana" in text_of(app, "#guardian-status")
            assert "you invited them" in text_of(app, "#guardian-links")
            assert await d.guardians.accept("maya") == "linked"
            dialog.reload()
            await settle(pilot, lambda: "your guardian" in text_of(app, "#guardian-links"))
            # Unlinking asks first, then takes effect at once.
            app.screen.query_one("#guardian-handle", Input).value = "dana"
            app.screen.query_one("#unlink", Button).press()
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            assert "Unlink @dana?" in screen_text(app)
            app.screen.query_one("#confirm", Button).press()
            await settle(pilot, lambda: "Unlinked @dana" in text_of(app, "#guardian-status"))
            assert (await d.guardians.view()).links == []
    finally:
        await relay.stop()


async def test_a_parent_accepts_and_approves_a_new_adult_contact(tmp_path: Path):
    policy = tmp_path / "supervised.toml"
    text = (PRESETS_DIR / "default.toml").read_text()
    policy.write_text(text.replace('approvals = "never"', 'approvals = "adults_only"'))
    relay = await Relay(tmp_path / "relay", policy=str(policy)).start()
    try:
        app = await app_for(tmp_path, relay, "dana", years_ago(41))
        kim = await make_profile(tmp_path, relay.url, "kim", years_ago(14))
        coach = await make_profile(tmp_path, relay.url, "coach", years_ago(35))
        async with open_clients(kim, coach) as (k, c), app.run_test(size=SIZE) as pilot:
            assert await k.guardians.invite("dana") == "invited"
            dialog = await open_guardians(app, pilot)
            assert "invited you to be their guardian" in text_of(app, "#guardian-links")
            assert "As their guardian" in text_of(app, "#guardian-intro")
            await press(app, pilot, "accept", "kim")
            assert "linked with @kim" in text_of(app, "#guardian-status")
            await k.contact_request("coach")
            assert await c.respond("kim", accept=True) == "awaiting_guardian"
            dialog.reload()
            await settle(pilot, lambda: dialog.query_one("#approval-buttons").display)
            assert "@kim wants Coach @coach" in screen_text(app)
            app.screen.query_one("#approve", Button).press()
            await settle(pilot, lambda: "Approved" in text_of(app, "#guardian-status"))
            states = {e.handle: e.state for e in await k.contacts()}
            assert states["coach"] == "connected"
    finally:
        await relay.stop()


async def test_an_adults_invitation_reaches_a_teen_as_a_safety_notice(relay, tmp_path):
    app = await app_for(tmp_path, relay, "maya", years_ago(14))
    dana = await make_profile(tmp_path, relay.url, "dana", years_ago(41))
    async with open_clients(Profile.load(tmp_path / "maya"), dana) as (m, d):
        await m.contact_request("dana")
        await d.respond("maya", accept=True)
        assert await d.guardians.invite("maya") == "invited"
        await drain(m)  # stored in her history, as the app will find it
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "asks to be your guardian" in screen_text(app))
        shown = screen_text(app)
        assert "Someone asks to be your guardian" in shown
        assert "really are your parent or carer" in shown  # wrapped in the banner


async def test_accepting_an_adult_waits_for_the_guardian_and_the_chat_says_so(tmp_path):
    text = (PRESETS_DIR / "default.toml").read_text()
    adult_may_ask = 'search = "connected_only"\ninitiate = "refused"'
    assert adult_may_ask in text
    text = text.replace(adult_may_ask, 'search = "connected_only"\ninitiate = "request"')
    policy = tmp_path / "supervised.toml"
    policy.write_text(text.replace('approvals = "never"', 'approvals = "adults_only"'))
    relay = await Relay(tmp_path / "relay", policy=str(policy)).start()
    try:
        app = await app_for(tmp_path, relay, "maya", years_ago(14))
        dana = await make_profile(tmp_path, relay.url, "dana", years_ago(41))
        coach = await make_profile(tmp_path, relay.url, "coach", years_ago(35))
        async with open_clients(Profile.load(tmp_path / "maya"), dana, coach) as (m, d, c):
            assert await m.guardians.invite("dana") == "invited"
            assert await d.guardians.accept("maya") == "linked"
            assert await c.contact_request("maya") == "requested"
            await drain(m)
        async with open_clients(dana, coach) as (d, c), app.run_test(size=SIZE) as pilot:
            await settle(
                pilot,
                lambda: (
                    isinstance(app.screen, MainScreen)
                    and app.screen.current is not None
                    and app.screen.current.handle == "coach"
                    and app.screen.current.is_request
                ),
            )
            await pilot.press("ctrl+y")
            main = app.screen
            await settle(pilot, lambda: main.current.state == "awaiting_guardian")
            compose = main.query_one("#compose", Input)
            assert compose.disabled
            assert "guardian's approval" in compose.placeholder
            (waiting,) = (await d.guardians.view()).approvals
            assert (waiting.ward, waiting.contact) == ("maya", "coach")
    finally:
        await relay.stop()
