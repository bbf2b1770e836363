"""Groups in the app (issue 15), driven with Pilot against a real relay: a group someone
else made appears in the list with its mode and its messages, and what the app sends reaches
every member; New group (F2) shows each person's outcome, a refusal in words; Members
(Ctrl+G) explains each member's bearing on the mode and counts the minors you can't see,
and an admin adds and removes, anyone leaves; an invitation is answered like a request; a
grooming-risk notice in a group points to Members, which reports the adult."""

from __future__ import annotations

from datetime import date

from textual.widgets import Button, Input

from client.keystore import MINIMUM
from client.session import ChatSession, ProfileSessions
from client.tui.app import AgechatApp
from client.tui.screens.dialogs import ConfirmDialog
from client.tui.screens.groups import MembersDialog, NewGroupDialog
from client.tui.screens.main import MainScreen
from client.tui.widgets.notice_banner import NoticeBanner
from protocol.groups import group_conversation
from server.app_keys import SIGNALS
from tests.client.tui.test_app import (
    SIZE,
    footer_text,
    log_text,
    screen_text,
    settle,
    text_of,
)
from tests.client.tui.test_snapshots import PASSPHRASE as OFFLINE_PASSPHRASE
from tests.client.tui.test_snapshots import fill_group, until_offline, write_profile
from tests.e2e.test_e2ee import connect
from tests.e2e.test_groups import group_messages, in_group
from tests.support import PASSPHRASE, drain, make_profile, open_clients, years_ago

ADULT, ADULT2, ADULT3, TEEN, TEEN2 = (
    years_ago(40),
    years_ago(35),
    years_ago(52),
    years_ago(14),
    years_ago(15),
)


def app_of(tmp_path, handle: str) -> AgechatApp:
    """The app on a profile made (and connected with people) before it starts."""
    return AgechatApp(ProfileSessions(tmp_path / handle, kdf=MINIMUM), passphrase=PASSPHRASE)


def conversation(app, key: str):
    screen = app.screen
    if not isinstance(screen, MainScreen):
        return None
    return next((c for c in screen._conversations if c.handle == key), None)


async def shows(app, pilot, *texts: str) -> str:
    """The screen once it shows every one of ``texts`` (a dialog paints a moment after it
    is pushed); fails naming what is missing."""
    await settle(pilot, lambda: all(t in screen_text(app) for t in texts))
    shown = screen_text(app)
    for t in texts:
        assert t in shown, (t, shown)
    return shown


def risk_banners(screen) -> list[NoticeBanner]:
    return [b for b in screen.query(NoticeBanner) if b.code.startswith("risk_")]


async def open_chat(app, pilot, key: str) -> MainScreen:
    await settle(pilot, lambda: conversation(app, key) is not None)
    screen = app.screen
    assert isinstance(screen, MainScreen)
    await screen.open_conversation(conversation(app, key))
    await settle(pilot)
    return screen


async def test_a_group_made_by_someone_else_appears_and_talks_both_ways(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, relay.url, "ben", ADULT2)
    cal = await make_profile(tmp_path, relay.url, "cal", ADULT3)
    async with open_clients(ana, ben, cal) as (a, b, c):
        await connect(b, a)
        await connect(b, c)
    app = app_of(tmp_path, "ana")
    async with open_clients(ben, cal) as (b, c), app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        view, outcomes = await b.groups.create("Book club", ["ana", "cal"])
        assert [o.outcome for o in outcomes] == ["joined", "joined"]
        key = group_conversation(view.id)
        await settle(pilot, lambda: conversation(app, key) is not None)
        listed = conversation(app, key)
        assert listed.is_group and listed.mode == "e2ee" and listed.display_name == "Book club"
        await shows(app, pilot, "👥 Book club", "group · 3 members")
        sent = await b.send_group(view.id, "chapter 3 tonight?")
        await b.wait_accepted(sent.msg_id)
        screen = await open_chat(app, pilot, key)
        await settle(pilot, lambda: "chapter 3 tonight?" in log_text(app))
        assert "ben: chapter 3 tonight?" in log_text(app)
        assert "You joined the group “Book club”" in log_text(app)  # the relay's line
        title = text_of(app, "#chat-title")
        assert "Book club" in title and "🔒 end-to-end encrypted" in title
        assert "End-to-end encrypted: everyone in this group is an adult." in text_of(
            app, "#chat-reason"
        )
        # A person's keys aren't offered in a group; Members is.
        await settle(pilot, lambda: "^g Members" in footer_text(app))
        footer = footer_text(app)
        for hidden in ("Block", "Report", "Attach"):
            assert hidden not in footer, footer
        # A message from the app reaches every other member, encrypted for each.
        screen.query_one("#compose", Input).focus()
        await pilot.press(*"yes, 8pm", "enter")
        await settle(pilot, lambda: "you: yes, 8pm  sent ✓" in log_text(app))
        for member, count in ((b, 1), (c, 2)):  # cal had ben's message waiting too
            got = await group_messages(member, view.id, count)
            assert (got[-1].sender, got[-1].body, got[-1].mode) == ("ana", "yes, 8pm", "e2ee")
        # A new message in a group that isn't open counts as unread in the list.
        await screen.open_conversation(conversation(app, "ben"))
        again = await c.send_group(view.id, "see you all")
        await c.wait_accepted(again.msg_id)
        await shows(app, pilot, "👥 Book club  (1 new)")
        assert conversation(app, key).unread == 1


async def test_new_group_shows_each_outcome_and_a_refusals_sentence(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, relay.url, "ben", ADULT2)
    await make_profile(tmp_path, relay.url, "uma", TEEN)  # a minor ana isn't connected with
    dan = await make_profile(tmp_path, relay.url, "dan", ADULT3)  # an adult she doesn't know
    async with open_clients(ana, ben) as (a, b):
        await connect(b, a)
    app = app_of(tmp_path, "ana")
    async with open_clients(ben, dan) as (b, d), app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: conversation(app, "ben") is not None)
        await shows(app, pilot, "F2 new group")  # the key, where it fits (not the footer)
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(app.screen, NewGroupDialog))
        dialog = app.screen
        dialog.query_one("#group-name", Input).value = "Trip"
        dialog.query_one("#group-members", Input).value = "@ben, uma"
        dialog.query_one("#create", Button).press()
        await settle(pilot, lambda: "Created" in text_of(app, "#group-outcomes"))
        shown = text_of(app, "#group-outcomes")
        assert "@ben joined." in shown
        assert (
            "@uma wasn't added: Adults can't start conversations with accounts under 18. "
            "[contact_not_allowed]"
        ) in shown
        assert "🔒 End-to-end encrypted: everyone in this group is an adult." in shown
        dialog.query_one("#open-group", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        screen = app.screen
        await settle(pilot, lambda: screen.current is not None and screen.current.is_group)
        assert "Trip" in text_of(app, "#chat-title")
        (made,) = await b.groups.list()
        assert made.name == "Trip" and {m.handle for m in made.members} == {"ana", "ben"}

        # Members, as the admin: add someone she doesn't know (an invitation), then withdraw it.
        await pilot.press("ctrl+g")
        await settle(
            pilot,
            lambda: isinstance(app.screen, MembersDialog) and app.screen.fresh,
        )
        members = app.screen
        members.query_one("#add-handle", Input).value = "dan"
        members.query_one("#add", Button).press()
        await settle(pilot, lambda: "@dan" in text_of(app, "#members-status"))
        assert "@dan was invited: they accept or decline." in text_of(app, "#members-status")
        await settle(pilot, lambda: "(invited)" in screen_text(app))
        assert [g.state for g in await d.groups.list()] == ["invited"]
        members.query_one("#add-handle", Input).value = "uma"
        members.query_one("#add", Button).press()
        await settle(pilot, lambda: "@uma" in text_of(app, "#members-status"))
        assert "[contact_not_allowed]" in text_of(app, "#members-status")
        # Remove asks first.
        listing = members.query_one("#members")
        listing.index = next(
            i for i, item in enumerate(listing.children) if item.member.handle == "dan"
        )
        members.query_one("#remove", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await shows(app, pilot, "Withdraw @dan's invitation?")
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: "Withdrew @dan's" in text_of(app, "#members-status"))
        assert await d.groups.list() == []


async def test_members_explain_the_mode_per_member_and_count_hidden_minors(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
    ben = await make_profile(tmp_path, relay.url, "ben", ADULT2)
    tia = await make_profile(tmp_path, relay.url, "tia", TEEN)  # connected with ana and ben
    uma = await make_profile(tmp_path, relay.url, "uma", TEEN2)  # connected with ben only
    async with open_clients(ana, ben, tia, uma) as (a, b, t, u):
        await connect(b, a)
        await connect(t, a)
        await connect(t, b)
        await connect(u, b)
    app = app_of(tmp_path, "ana")
    async with open_clients(ben) as (b,), app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        view, outcomes = await b.groups.create("Climbing", ["ana", "tia", "uma"])
        assert [o.outcome for o in outcomes] == ["joined"] * 3 and view.mode == "visible"
        key = group_conversation(view.id)
        await open_chat(app, pilot, key)
        assert "👀 visible to safety checks" in text_of(app, "#chat-title")
        assert "Visible to safety checks, because someone in this group is under 18." in (
            text_of(app, "#chat-reason")
        )
        await pilot.press("ctrl+g")
        await settle(
            pilot,
            lambda: isinstance(app.screen, MembersDialog) and app.screen.fresh,
        )
        shown = await shows(app, pilot, "“Climbing” — 3 members and 1 under 18 you can't see")
        assert "@tia is under 18, so this group is visible to safety checks." in shown
        assert "@ben is an adult: not the reason this group is visible." in shown
        assert "Tia @tia  (under 18)" in shown and "Ben @ben  (admin)" in shown
        assert "1 member under 18 you can't see" in shown
        assert "uma" not in shown  # never named to an adult who couldn't find her
        # Not an admin: no Add, no Remove.
        assert not app.screen.query_one("#add-row").display
        assert not app.screen.query_one("#remove").display
        # Leaving asks first; then the chat says so and the message box is closed.
        app.screen.query_one("#leave", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await shows(app, pilot, "Leave “Climbing”?")
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        await settle(pilot, lambda: conversation(app, key).state == "left")
        assert app.screen.query_one("#compose", Input).disabled
        await shows(app, pilot, "you're not in it any more")
        lines = in_group(await drain(b), view.id)
        assert any(m.code == "group_member_left" for m in lines)


async def test_an_invitation_is_a_request_and_accept_joins(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
    await make_profile(tmp_path, relay.url, "dan", ADULT3)  # not connected with ana
    app = app_of(tmp_path, "dan")
    async with open_clients(ana) as (a,), app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        view, (outcome,) = await a.groups.create("Choir", ["dan"])
        assert outcome.outcome == "invited"
        key = group_conversation(view.id)
        await settle(pilot, lambda: conversation(app, key) is not None)
        screen = app.screen
        first = screen._conversations[0]
        assert first.handle == key and first.is_request  # listed first, like a request
        await shows(app, pilot, "● invitation", "@ana invited you")
        await screen.open_conversation(first)
        await settle(pilot, lambda: "^y Accept" in footer_text(app))
        assert "@ana invited you to the group “Choir”" in text_of(app, "#request-text")
        assert screen.query_one("#compose", Input).disabled
        await pilot.press("ctrl+y")
        await settle(pilot, lambda: conversation(app, key).state == "member")
        await settle(pilot, lambda: not screen.query_one("#compose", Input).disabled)
        assert not screen.query_one("#request-actions").display
        lines = in_group(await drain(a), view.id)
        assert any(m.code == "group_member_joined" for m in lines)
        (now,) = await a.groups.list()
        assert {m.handle: m.state for m in now.members} == {"ana": "member", "dan": "member"}


async def test_a_second_invitation_declined_asks_first_and_disappears(relay, tmp_path):
    ana = await make_profile(tmp_path, relay.url, "ana", ADULT)
    await make_profile(tmp_path, relay.url, "dan", ADULT3)
    app = app_of(tmp_path, "dan")
    async with open_clients(ana) as (a,), app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, MainScreen))
        view, _ = await a.groups.create("Pub quiz", ["dan"])
        key = group_conversation(view.id)
        screen = await open_chat(app, pilot, key)
        await pilot.press("ctrl+n")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await shows(app, pilot, "Whoever invited you won't be told.")
        app.screen.query_one("#confirm", Button).press()
        await settle(pilot, lambda: conversation(app, key) is None)
        assert screen.current is None or screen.current.handle != key
        (now,) = await a.groups.list()
        assert [m.handle for m in now.members] == ["ana"]


async def test_a_risk_notice_in_a_group_points_to_members_and_the_footer_fits(tmp_path):
    """Offline, from history: a grooming-risk notice in a group can't name its person on
    the wire, so the banner offers Members (where each member can be blocked or reported);
    the footer of a group chat fits at 100 columns."""
    profile = write_profile(tmp_path / "maya", "maya", "Maya", date(2012, 3, 1))
    notice = "This person asked you to keep your chat a secret."
    await fill_group(profile, notice=notice)
    sessions = ProfileSessions(tmp_path / "maya", kdf=MINIMUM)
    app = AgechatApp(sessions, passphrase=OFFLINE_PASSPHRASE)
    async with app.run_test(size=(100, 32)) as pilot:
        await until_offline(pilot)
        await settle(pilot, lambda: app.screen.query(NoticeBanner))
        banner = app.screen.query_one(NoticeBanner)
        assert banner.query("#notice-members") and not banner.query("#notice-block")
        assert not banner.query("#notice-report")
        footer = footer_text(app)
        assert "^g Members" in footer and footer.rstrip().endswith("^p palette"), footer
        assert "^q Quit" in footer, footer


async def test_a_risk_notice_from_a_group_lands_in_it_and_members_reports_the_adult(
    relay, tmp_path
):
    """The relay's signals score each adult–minor pair in a group; the teen's notice arrives
    in the group's chat, and Members reports the adult with what he sent in the group."""
    await make_profile(tmp_path, relay.url, "tia", TEEN)
    vic = await make_profile(tmp_path, relay.url, "vic", ADULT)
    async with open_clients(vic) as (v,):
        session = await ChatSession.open(tmp_path / "tia", PASSPHRASE)
        await session.client.wait_connected()
        await session.request("vic")  # she asked; he accepted
        await session.close()
        await v.respond("tia", accept=True)
        view, _ = await v.groups.create("Gaming", ["tia"])
        app = app_of(tmp_path, "tia")
        async with app.run_test(size=SIZE) as pilot:
            key = group_conversation(view.id)
            screen = await open_chat(app, pilot, key)
            for line in (
                "how old are you? which school do you go to?",
                "let's keep this between us, don't tell your parents",
            ):
                sent = await v.send_group(view.id, line)
                await v.wait_accepted(sent.msg_id)
            await relay.app[SIGNALS].drain()
            await settle(pilot, lambda: risk_banners(screen))
            (banner,) = risk_banners(screen)
            assert screen.current.handle == key
            assert not banner.query("#notice-block") and not banner.query("#notice-report")
            banner.query_one("#notice-members", Button).press()
            await settle(
                pilot,
                lambda: isinstance(app.screen, MembersDialog) and app.screen.fresh,
            )
            members = app.screen
            listing = members.query_one("#members")
            listing.index = next(
                i for i, item in enumerate(listing.children) if item.member.handle == "vic"
            )
            members.query_one("#report-member", Button).press()
            await settle(pilot, lambda: "attached" in text_of(app, "#attach-label"))
            await shows(
                app,
                pilot,
                "Report @vic in “Gaming”",
                "These 2 messages they sent in this group will be attached",
            )
            app.screen.query_one("#reason", Input).value = "asked me to keep secrets"
            app.screen.query_one("#send", Button).press()
            await settle(pilot, lambda: "report was sent" in text_of(app, "#members-status"))
