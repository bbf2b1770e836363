"""The Textual app driven with Pilot against a real relay on loopback."""

from __future__ import annotations

import asyncio
import sqlite3

from textual.widgets import Button, Input, Static

from client.keystore import MINIMUM
from client.session import ChatSession, ProfileSessions
from client.tui.app import AgechatApp
from client.tui.screens.main import MainScreen
from client.tui.screens.onboarding import OnboardingScreen
from client.tui.widgets.conversation_list import ConversationItem, ConversationList
from client.tui.widgets.message_log import MessageLog
from client.tui.widgets.notice_banner import NoticeBanner
from tests.support import (
    PASSPHRASE,
    collect,
    drain,
    make_profile,
    open_client,
    open_clients,
    received_bodies,
    years_ago,
)

SIZE = (120, 40)


async def settle(pilot, until=None, timeout: float = 10.0) -> None:
    """Let workers and the relay catch up, optionally until a condition holds.

    (Not workers.wait_for_complete(): the event-following worker runs for the app's life.)
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + (timeout if until is not None else 0.3)
    while True:
        await pilot.pause(0.05)
        try:
            done = until is not None and bool(until())
        except Exception:  # the screen may still be switching
            done = False
        if done or loop.time() > end:
            return


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def log_text(app) -> str:
    return "\n".join(str(item.render()) for item in app.screen.query_one(MessageLog).children)


async def app_for(tmp_path, relay, handle: str, born) -> AgechatApp:
    await make_profile(tmp_path, relay.url, handle, born)
    return AgechatApp(ProfileSessions(tmp_path / handle, kdf=MINIMUM), passphrase=PASSPHRASE)


async def fill_onboarding(pilot, relay, handle: str, born: str) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, OnboardingScreen)
    screen.query_one("#server", Input).value = relay.url
    for field, value in (
        ("handle", handle),
        ("name", handle.title()),
        ("birthdate", born),
        ("passphrase", PASSPHRASE),
    ):
        screen.query_one(f"#{field}", Input).value = value
    await pilot.pause()


async def submit_onboarding(pilot) -> None:
    """Enter in the last field submits the form (the button may be below the fold)."""
    pilot.app.screen.query_one("#passphrase", Input).focus()
    await pilot.press("enter")


async def test_onboarding_explains_protections_by_age_then_creates_the_account(relay, tmp_path):
    app = AgechatApp(ProfileSessions(tmp_path / "teen", kdf=MINIMUM))
    async with app.run_test(size=SIZE) as pilot:
        await fill_onboarding(pilot, relay, "teen_one", years_ago(14).isoformat())
        minor_text = text_of(app, "#protections")
        assert "not end-to-end encrypted" in minor_text
        assert "Adults you haven't connected with can't message you" in minor_text
        app.screen.query_one("#birthdate", Input).value = years_ago(30).isoformat()
        await pilot.pause()
        adult_text = text_of(app, "#protections")
        assert "Your chats with other adults are end-to-end encrypted" in adult_text
        assert adult_text != minor_text
        await submit_onboarding(pilot)
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        assert isinstance(app.screen, MainScreen)
        assert "@teen_one" in app.screen.title


async def test_onboarding_shows_refusals_on_the_form(relay, tmp_path):
    await make_profile(tmp_path, relay.url, "taken")
    app = AgechatApp(ProfileSessions(tmp_path / "new", kdf=MINIMUM))
    async with app.run_test(size=SIZE) as pilot:
        await fill_onboarding(pilot, relay, "taken", years_ago(30).isoformat())
        await submit_onboarding(pilot)
        await settle(pilot, lambda: "handle_taken" in text_of(app, "#onboarding-error"))
        assert "That handle is already taken. [handle_taken]" in text_of(app, "#onboarding-error")
        app.screen.query_one("#handle", Input).value = "tiny"
        app.screen.query_one("#birthdate", Input).value = years_ago(12).isoformat()
        await submit_onboarding(pilot)
        await settle(pilot, lambda: "under_minimum_age" in text_of(app, "#onboarding-error"))
        assert isinstance(app.screen, OnboardingScreen)


async def accept_request_from(app, pilot, handle: str) -> MainScreen:
    """Wait for the pending request from ``handle`` to be on screen, accept it, and return
    the main screen once the conversation is connected."""
    await settle(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.current)
    screen = app.screen
    assert screen.current.handle == handle and screen.current.is_request
    screen.query_one("#accept", Button).press()
    await settle(pilot, lambda: screen.current.state == "connected")
    return screen


async def test_send_and_receive_with_the_mode_badge(relay, tmp_path):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    ben = await make_profile(tmp_path, relay.url, "ben", years_ago(41))
    async with open_client(ben) as b, app.run_test(size=SIZE) as pilot:
        await b.wait_connected()
        await b.contact_request("ana")
        await accept_request_from(app, pilot, "ben")
        assert "🔒 end-to-end encrypted" in text_of(app, "#chat-title")  # two adults
        assert "not even agechat's relay" in text_of(app, "#chat-reason")
        app.screen.query_one("#compose", Input).focus()
        await pilot.press(*"hello ben", "enter")
        await settle(pilot, lambda: "sent ✓" in log_text(app))
        assert received_bodies(await collect(b, 2))[-1:] == ["hello ben"]
        m = await b.send("ana", "hi ana!")
        await b.wait_accepted(m.msg_id)
        await settle(pilot, lambda: "hi ana!" in log_text(app))
        assert "ben: hi ana!" in log_text(app)


async def test_a_key_change_warning_is_loud_sticky_and_pauses_a_verified_chat(relay, tmp_path):
    from dataclasses import replace

    from client.tui.screens.dialogs import SafetyNumberDialog

    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    ben = await make_profile(tmp_path, relay.url, "ben", years_ago(41))
    async with open_client(ben) as b, app.run_test(size=SIZE) as pilot:
        await b.wait_connected()
        await b.contact_request("ana")
        screen = await accept_request_from(app, pilot, "ben")
        screen.query_one("#compose", Input).focus()
        await pilot.press(*"hello ben", "enter")
        await settle(pilot, lambda: "sent ✓" in log_text(app))
        # Ana compares safety numbers with Ben and marks them verified.
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, SafetyNumberDialog))
        dialog = app.screen
        await settle(pilot, lambda: not dialog.query_one("#verify", Button).disabled)
        expected = (await b.safety_number("ana")).number.split()[0]
        assert expected in text_of(app, "#safety-number")  # the same number on both sides
        dialog.query_one("#verify", Button).press()
        await settle(pilot, lambda: app.screen is screen and screen.current.verified)
        assert "✓ verified" in text_of(app, "#chat-title")
        # Ana's client then sees another key for Ben than the one she verified.
        e2ee = screen.session.client.e2ee
        record = await e2ee.peer("ben")
        await e2ee.store.save_peer(replace(record, identity_key=bytes(32 * [9])))
        await e2ee.store.delete_sessions("ben")
        screen.query_one("#compose", Input).focus()
        await pilot.press(*"are you there?", "enter")
        await settle(pilot, lambda: "not sent ✗" in log_text(app))
        assert "safety number changed" in text_of(app, "#chat-reason")
        assert "Their safety number changed since you verified it" in log_text(app)
        assert "safety number changed" in log_text(app)  # the system line in the chat
        assert "are you there?" not in [e.message.body for e in await drain(b)]
        # Sticky: reopening the conversation still shows it.
        await screen.open_conversation(screen.current)
        assert "safety number changed" in text_of(app, "#chat-reason")
        # She accepts the new key: the warning goes, sending works again.
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, SafetyNumberDialog))
        dialog = app.screen
        await settle(pilot, lambda: dialog.query_one("#accept-key").display)
        assert "key changed" in text_of(app, "#safety-status")
        dialog.query_one("#accept-key", Button).press()
        await settle(pilot, lambda: app.screen is screen and not screen.current.key_changed)
        assert "safety number changed" not in text_of(app, "#chat-reason")
        screen.query_one("#compose", Input).focus()
        await pilot.press(*"back again", "enter")
        assert received_bodies(await collect(b, 1)) == ["back again"]


async def test_a_refusal_is_shown_in_the_conversation(relay, tmp_path):
    app = await app_for(tmp_path, relay, "adult", years_ago(40))
    kid = await make_profile(tmp_path, relay.url, "kid", years_ago(14))
    async with open_client(kid) as k, app.run_test(size=SIZE) as pilot:
        await k.wait_connected()
        await k.contact_request("adult")
        await settle(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.current)
        main = app.screen
        main.query_one("#decline", Button).press()
        await settle(pilot, lambda: app.screen is not main)  # asked to confirm first
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: app.screen is main and main.current.state == "declined_by_you")
        app.screen.query_one("#compose", Input).focus()
        await pilot.press(*"changed my mind", "enter")
        await settle(pilot, lambda: "not sent" in log_text(app))
        assert "Adults can't start conversations with accounts under 18." in log_text(app)


async def test_search_obeys_the_policy(relay, tmp_path):
    app = await app_for(tmp_path, relay, "rex", years_ago(30))
    await make_profile(tmp_path, relay.url, "maya", years_ago(14))
    await make_profile(tmp_path, relay.url, "mark", years_ago(50))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("ctrl+f")
        await settle(pilot)
        await pilot.press(*"ma", "enter")
        await settle(pilot, lambda: "found" in text_of(app, "#find-status"))
        results = text_of(app, "#find-status")
        assert results == "1 found."
        items = [str(i.query_one(Static).render()) for i in app.screen.query("#results ListItem")]
        assert len(items) == 1 and "@mark" in items[0]


async def test_block_and_report(relay, tmp_path):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    ben = await make_profile(tmp_path, relay.url, "ben", years_ago(41))
    async with open_client(ben) as b, app.run_test(size=SIZE) as pilot:
        await b.wait_connected()
        for text in ("one", "two", "three"):
            m = await b.send("ana", text)
            await b.wait_accepted(m.msg_id)
        await settle(pilot, lambda: isinstance(app.screen, MainScreen) and "three" in log_text(app))
        await pilot.press("ctrl+r")
        await settle(pilot, lambda: "three" in text_of(app, "#preview"))
        assert "one" in text_of(app, "#preview")  # the messages are shown before sending
        app.screen.query_one("#reason", Input).value = "spam"
        app.screen.query_one("#send", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("ctrl+b")
        await settle(pilot)
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: app.screen.current.state == "blocked")
        assert app.screen.query_one("#compose", Input).disabled
    with sqlite3.connect(relay.config.database_path) as db:
        assert db.execute("SELECT reporter, reported, reason FROM reports").fetchall() == [
            ("ana", "ben", "spam")
        ]
        assert db.execute("SELECT blocker, blocked FROM blocks").fetchall() == [("ana", "ben")]


async def test_minor_sees_a_notice_banner_and_can_dismiss_it(relay, tmp_path):
    app = await app_for(tmp_path, relay, "maya", years_ago(14))
    dad = await make_profile(tmp_path, relay.url, "dad", years_ago(45))
    maya = await make_profile(tmp_path, relay.url, "maya2", years_ago(14))
    del maya
    async with open_clients(dad) as (d,):
        session = await ChatSession.open(tmp_path / "maya", PASSPHRASE)
        await session.client.wait_connected()
        await session.request("dad")
        await session.close()
        await d.respond("maya", accept=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(
            pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.query(NoticeBanner)
        )
        await settle(pilot)  # let the start-up refreshes finish re-rendering
        banners = app.screen.query(NoticeBanner)
        assert [b.code for b in banners] == ["new_adult_contact"]
        app.screen.query_one("#dismiss-notice", Button).press()
        await settle(pilot, lambda: not app.screen.query(NoticeBanner))
        # Dismissed for good: reopening the conversation doesn't bring it back.
        await app.screen.open_conversation(app.screen.current)
        await settle(pilot)
        assert not app.screen.query(NoticeBanner)
        assert app.screen.query_one(ConversationList).index == 0


async def test_unread_counts_and_requests_first(relay, tmp_path):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    ben = await make_profile(tmp_path, relay.url, "ben", years_ago(41))
    cal = await make_profile(tmp_path, relay.url, "cal", years_ago(42))
    async with open_clients(ben, cal) as (b, c), app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        await c.contact_request("ana")
        m = await b.send("ana", "first message")
        await b.wait_accepted(m.msg_id)
        await settle(
            pilot,
            lambda: (
                len(app.screen._conversations) == 2
                and any(x.is_request for x in app.screen._conversations)
            ),
        )
        await app.screen.refresh_conversations()  # what the next relay event would do
        conversations = {x.handle: x for x in app.screen._conversations}
        # A stranger's first message is a request too: both wait for ana's answer.
        assert {h: c.state for h, c in conversations.items()} == {
            "ben": "incoming_request",
            "cal": "incoming_request",
        }
        # The conversation on screen is read; the other waits with its one unread line.
        shown = app.screen.current.handle
        other = ({"ben", "cal"} - {shown}).pop()
        assert (conversations[shown].unread, conversations[other].unread) == (0, 1)
        assert app.screen.query_one("#accept", Button).display


def screen_text(app) -> str:
    """Every line on the screen as a user sees it (a dialog and what is behind it)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def footer_text(app) -> str:
    return screen_text(app).splitlines()[-1]


async def test_messaging_someone_found_in_search_shows_their_real_name(relay, tmp_path):
    app = await app_for(tmp_path, relay, "ana", years_ago(40))
    await make_profile(tmp_path, relay.url, "rex", years_ago(29))  # display name "Rex"
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        main = app.screen
        await pilot.press("ctrl+f")
        await settle(pilot, lambda: app.screen is not main)
        await pilot.press(*"rex", "enter")
        await settle(pilot, lambda: "found" in text_of(app, "#find-status"))
        app.screen.query_one("#message", Button).press()
        await settle(pilot, lambda: app.screen is main and main.current is not None)
        assert text_of(app, "#chat-title").startswith("Rex @rex")
        await pilot.press(*"hi rex", "enter")
        await settle(pilot, lambda: "sent ✓" in log_text(app))
        await settle(pilot)
        assert text_of(app, "#chat-title").startswith("Rex @rex")
        listed = [str(i.query_one(Static).render()) for i in main.query(ConversationItem)]
        assert [line.splitlines()[0] for line in listed] == ["Rex @rex"]
        assert "rex @rex" not in screen_text(app)
