"""The main screen: conversations on the left, the open conversation on the right."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, ListView, Static

from client.cli import printable
from client.errors import ClientError
from client.events import (
    Connected,
    Disconnected,
    MessageAccepted,
    MessageDelivered,
    MessageReceived,
    MessageRefused,
    RelayError,
)
from client.explain import MODE_BADGE, mode_reason
from client.history import HistoryMessage, conversation_key
from client.session import ChatSession, Conversation
from client.tui.group_words import group_reason, quoted
from client.tui.screens.dialogs import (
    AccountDialog,
    ConfirmDialog,
    FindPeopleDialog,
    HelpDialog,
    ReportDialog,
    SafetyNumberDialog,
)
from client.tui.screens.files import AttachDialog, FilesDialog, SendFile
from client.tui.screens.groups import MembersDialog, NewGroupDialog
from client.tui.screens.guardians import GuardiansDialog
from client.tui.widgets.connection_indicator import ConnectionIndicator
from client.tui.widgets.conversation_list import ConversationItem, ConversationList
from client.tui.widgets.message_item import MessageItem
from client.tui.widgets.message_log import PAGE, MessageLog
from client.tui.widgets.notice_banner import NoticeBanner
from protocol.policy import is_minor

#: What acts on the one other person of a chat: hidden in a group chat (no files in groups
#: yet; block and report are per member, in Members).
ONE_TO_ONE_ACTIONS = frozenset({"block", "unblock", "report", "attach", "safety_number", "files"})


class MainScreen(Screen[None]):
    # Short words: at 120 columns, with a request open, the footer holds all of these and
    # the app's Quit. Safety number is in the command palette and the help (F1) instead.
    BINDINGS = [
        Binding("ctrl+f", "find", "Find", tooltip="Find people and ask to connect"),
        Binding("ctrl+l", "chats", "Chats", tooltip="Move to your conversations"),
        Binding("ctrl+y", "accept", "Accept", tooltip="Accept the open request"),
        Binding("ctrl+n", "decline", "Decline", tooltip="Decline the open request (asks first)"),
        # One key, two actions: the footer says which one it will do (both ask first).
        Binding("ctrl+b", "block", "Block", tooltip="Block the open conversation"),
        Binding("ctrl+b", "unblock", "Unblock", tooltip="Unblock the open conversation"),
        Binding("ctrl+r", "report", "Report", tooltip="Report the open conversation"),
        # Shown only where the message box is (not on a request, nor a blocked chat).
        Binding("ctrl+t", "attach", "Attach", tooltip="Send a file in the open conversation"),
        # In a group chat, Ctrl+G is its members (groups have no files yet); elsewhere it is
        # the chat's files (also a click on a file's line; in the palette and the help).
        Binding("ctrl+g", "members", "Members", tooltip="Who is in this group, and why its mode"),
        Binding("ctrl+g", "files", "Files", show=False),
        # Not in the footer (it would push Quit off at 100 columns): the sidebar's title says
        # it, and it is in the palette and the help (F1).
        Binding("f2", "new_group", "New group", key_display="F2", show=False),
        Binding("ctrl+s", "safety_number", "Safety number", show=False),
        Binding("ctrl+o", "account", "Account", tooltip="Your age group and what protects you"),
        Binding("f1", "help", "Help", key_display="F1", tooltip="The intro and the keys"),
        Binding("pageup", "scroll_log(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll_log(1)", "Scroll down", show=False),
    ]

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session
        self.current: Conversation | None = None
        self._conversations: list[Conversation] = []
        self._shown_notices: set[int] = set()
        self._opening = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="sidebar"):
                yield ConnectionIndicator(id="connection")
                yield Static(
                    Text.assemble("Conversations   ", ("F2", "bold"), (" new group", "")),
                    classes="sidebar-title",
                )
                yield ConversationList(id="conversations")
            with Vertical(id="chat"):
                # Docked at the bottom, but first in the focus order after the list, so
                # Shift+Tab from it goes back to the conversations.
                yield Input(placeholder="Write a message and press Enter", id="compose")
                yield Static(
                    "Pick a conversation, or press Ctrl+F to find people.", id="chat-title"
                )
                yield Static("", id="chat-reason")
                yield Vertical(id="notices")
                yield MessageLog(self.session.handle, id="log")
                with Horizontal(id="request-actions"):
                    yield Static("", id="request-text")
                    # Out of the Tab order, so neither is reached by accident: Ctrl+Y and
                    # Ctrl+N (in the footer) or a click.
                    for label, button_id, variant in (
                        ("Accept", "accept", "success"),
                        ("Decline", "decline", "error"),
                    ):
                        button = Button(label, id=button_id, variant=variant)
                        button.can_focus = False
                        yield button
        yield Footer()

    async def on_mount(self) -> None:
        self.title = f"agechat — @{self.session.handle}"
        self.sub_title = self.session.display_name
        self.query_one("#request-actions").display = False
        self.query_one("#compose", Input).disabled = True
        self._follow_events()
        await self.refresh_conversations()

    # --- the conversation list --------------------------------------------------------

    async def refresh_conversations(self, *, from_relay: bool = True) -> None:
        if from_relay and self.session.connected:
            await self.session.refresh_contacts()
        self._conversations = await self.session.conversations()
        selected = self.current.handle if self.current else None
        await self.query_one(ConversationList).show(self._conversations, selected)
        if self.current is not None:
            fresh = next((c for c in self._conversations if c.handle == self.current.handle), None)
            if fresh is not None:
                self.current = fresh
                self._show_header(fresh)
        elif self._conversations:
            await self.open_conversation(self._conversations[0])

    @on(ListView.Selected, "#conversations")
    async def _selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ConversationItem):
            await self.open_conversation(event.item.conversation)

    async def open_conversation(self, conversation: Conversation) -> None:
        # One at a time: a chat opened while another is still loading (a click during the
        # first open) would otherwise mix the two chats' banners and lines.
        async with self._opening:
            self.current = conversation
            self._show_header(conversation)
            await self._show_notices(conversation.handle)
            log = self.query_one(MessageLog)

            async def page(before: int | None, after: int | None) -> list[HistoryMessage]:
                return await self.session.messages(
                    conversation.handle, limit=PAGE, before_rowid=before, after_rowid=after
                )

            await log.show(page)
        await self.session.mark_read(conversation.handle)
        await self.refresh_conversations(from_relay=False)  # its unread count is now 0
        if not conversation.is_request and conversation.state != "blocked":
            self.query_one("#compose", Input).focus()

    def _focus_compose(self) -> None:
        compose = self.query_one("#compose", Input)
        if not compose.disabled:
            compose.focus()

    def _show_header(self, c: Conversation) -> None:
        if c.is_group:
            self._show_group_header(c)
            return
        title = Text.assemble((c.display_name, "bold"), f" @{c.handle}   ")
        title.append(
            MODE_BADGE.get(c.mode, c.mode),
            style="bold green" if c.mode == "e2ee" else "bold yellow",
        )
        if c.verified and c.mode == "e2ee":
            title.append("   ✓ verified", style="green")
        if c.restricted:
            title.append("   ⚠ restricted from contacting minors", style="bold red")
        self.query_one("#chat-title", Static).update(title)
        reason = Text(mode_reason(c.mode, self.session.band, None))
        if c.key_changed:
            # Sticky until they verify or accept the new key (THREAT_MODEL.md: loud and sticky).
            reason = Text.assemble(
                (f"⚠ @{c.handle}'s safety number changed. ", "bold red"),
                ("Press Ctrl+S to compare it before you trust this chat.", "red"),
            )
        self.query_one("#chat-reason", Static).update(reason)
        compose = self.query_one("#compose", Input)
        compose.disabled = c.is_request or c.state in ("blocked", "awaiting_guardian")
        if c.is_request:
            compose.placeholder = "Accept their request to reply"
        elif c.state == "awaiting_guardian":
            compose.placeholder = "Waiting for a guardian's approval: nobody can write yet"
        elif c.state == "blocked":
            compose.placeholder = "You blocked them (Ctrl+B to unblock)"
        else:
            compose.placeholder = "Write a message and press Enter"
        actions = self.query_one("#request-actions")
        actions.display = c.is_request
        if c.is_request:
            self.query_one("#request-text", Static).update(
                Text(f"{c.display_name} wants to connect with you. Only accept people you know.")
            )
        self.refresh_bindings()

    def _show_group_header(self, c: Conversation) -> None:
        view = c.group
        title = Text.assemble("👥 ", (printable(c.display_name), "bold"), "   ")
        title.append(
            MODE_BADGE.get(c.mode, c.mode),
            style="bold green" if c.mode == "e2ee" else "bold yellow",
        )
        self.query_one("#chat-title", Static).update(title)
        reason = group_reason(view, c.mode, self.session.band)
        if c.state == "member":
            reason += " Ctrl+G: who is in it and why."
        self.query_one("#chat-reason", Static).update(Text(reason))
        compose = self.query_one("#compose", Input)
        compose.disabled = c.state != "member"
        if c.state == "invited":
            compose.placeholder = "Accept the invitation to write here"
        elif c.state == "left":
            compose.placeholder = "You're not in this group any more"
        else:
            compose.placeholder = f"Write to everyone in {quoted(c.display_name)} and press Enter"
        actions = self.query_one("#request-actions")
        actions.display = c.is_request
        if c.is_request:
            who = f"@{view.invited_by}" if view is not None and view.invited_by else "Someone"
            self.query_one("#request-text", Static).update(
                Text(
                    f"{who} invited you to the group {quoted(c.display_name)}. Only accept if "
                    "you know the people in it. If you decline, they won't be told."
                )
            )
        self.refresh_bindings()

    async def _show_notices(self, handle: str) -> None:
        box = self.query_one("#notices")
        await box.remove_children()
        self._shown_notices.clear()
        state = self.current.state if self.current else None
        stale = {"message_request", "contact_request"} if state == "connected" else set()
        notices = [
            m
            for m in await self.session.history.unseen()
            if m.kind == "notice"
            and conversation_key(m.conversation, self.session.handle) == handle
            and m.code not in stale  # a request notice once the request was accepted
        ]
        for notice in notices[-3:]:
            await self._mount_notice(notice)

    async def _mount_notice(self, notice: HistoryMessage) -> None:
        """One banner per notice, however it reached us (history on open, or live)."""
        box = self.query_one("#notices")
        # Checked and recorded before the first await, so two paths racing can't both mount.
        if notice.rowid in self._shown_notices:
            return
        self._shown_notices.add(notice.rowid)
        in_group = self.current is not None and self.current.is_group
        banner = NoticeBanner(notice.code or "notice", notice.body, in_group=in_group)
        banner.rowid = notice.rowid  # type: ignore[attr-defined]
        await box.mount(banner)

    @on(NoticeBanner.Dismissed)
    async def _notice_dismissed(self, event: NoticeBanner.Dismissed) -> None:
        rowid = getattr(event.banner, "rowid", None)
        if rowid is not None:
            await self.session.history.mark_seen([rowid])
        await event.banner.remove()
        self._focus_compose()

    # --- sending ----------------------------------------------------------------------

    @on(Input.Submitted, "#compose")
    async def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or self.current is None:
            return
        event.input.clear()
        first_contact = self.current.state == "stranger"
        try:  # to a person, or to everyone in a group
            message = await self.session.send(self.current.handle, text)
        except ClientError as exc:
            self.notify(exc.message, title="Not sent", severity="error")
            return
        await self.query_one(MessageLog).add(message)
        # A new chat joins the list; a first message to someone new also makes a request
        # on the relay, which knows their name and the chat's mode: ask it.
        await self.refresh_conversations(from_relay=first_contact)

    def action_attach(self) -> None:
        if self.current is None or not self._can_write():
            return
        if self.current.is_group:
            self.notify("Files can't be sent in group chats yet.", title="Not in groups")
            return
        handle, mode = self.current.handle, self.current.mode
        self.app.push_screen(AttachDialog(self.session, handle, mode, self._file_sender(handle)))

    def _file_sender(self, handle: str) -> SendFile:
        async def send(path: Path, text: str) -> HistoryMessage:
            first_contact = self.current is not None and self.current.state == "stranger"
            # Copied under the profile, then uploaded (encrypted here in an e2ee chat).
            message = await self.session.client.send_file(handle, path, text)
            if self.current is not None and self.current.handle == handle:
                await self.query_one(MessageLog).add(message)
            await self.refresh_conversations(from_relay=first_contact)
            return message

        return send

    def action_files(self, selected: HistoryMessage | None = None) -> None:
        if self.current is None:
            return
        if self.current.is_group:
            self.notify("Group chats have no files yet.", title="Not in groups")
            return
        self.app.push_screen(FilesDialog(self.session, self.current.handle, selected))

    @on(MessageItem.AttachmentClicked)
    def _file_clicked(self, event: MessageItem.AttachmentClicked) -> None:
        self.action_files(event.message)

    # --- events from the relay --------------------------------------------------------

    @work(exclusive=True, group="events")
    async def _follow_events(self) -> None:
        indicator = self.query_one(ConnectionIndicator)
        indicator.state = "connected" if self.session.connected else "connecting"
        with contextlib.suppress(NoMatches):  # the screen is going away (the app quits)
            await self._handle_events(indicator)

    async def _handle_events(self, indicator: ConnectionIndicator) -> None:
        async for event in self.session.events():
            if isinstance(event, Connected):
                indicator.state = "connected"
                await self.refresh_conversations()
            elif isinstance(event, Disconnected):
                indicator.state = "reconnecting" if event.retry_in is not None else "offline"
            elif isinstance(event, MessageReceived):
                await self._received(event.message)
            elif isinstance(event, MessageAccepted | MessageDelivered):
                self.query_one(MessageLog).update(event.message)
            elif isinstance(event, MessageRefused):
                self.query_one(MessageLog).update(event.message, event.reason)
                self.notify(event.reason, title="Not sent", severity="error")
            elif isinstance(event, RelayError):
                self.notify(event.message, title=event.code, severity="warning")

    async def _received(self, message: HistoryMessage) -> None:
        key = conversation_key(message.conversation, self.session.handle)
        if self.current is not None and key == self.current.handle:
            await self.query_one(MessageLog).add(message)
            if message.kind == "notice":
                await self._mount_notice(message)
            else:
                await self.session.mark_read(self.current.handle)
        elif message.kind == "notice":
            self.notify(message.body, title="Safety notice", severity="warning", timeout=10)
        # Events and message requests change contact states, and a group's lines its
        # members or mode: ask the relay again.
        await self.refresh_conversations(from_relay=message.kind != "message" or message.request)

    # --- actions ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("accept", "decline"):
            return self.current is not None and self.current.is_request
        group = self.current is not None and self.current.is_group
        if action == "members":
            return group and self.current is not None and self.current.state == "member"
        if group and action in ONE_TO_ONE_ACTIONS:
            return False  # a person's (Members has Block and Report for each member)
        if action == "block":
            return self.current is not None and self.current.state != "blocked"
        if action == "unblock":
            return self.current is not None and self.current.state == "blocked"
        if action in ("report", "safety_number", "files"):
            return self.current is not None
        if action == "attach":
            return self._can_write()
        return True

    def _can_write(self) -> bool:
        """Where the message box is enabled (see _show_header)."""
        c = self.current
        silent = ("blocked", "awaiting_guardian", "left", "invited")
        return c is not None and not c.is_request and c.state not in silent

    def action_chats(self) -> None:
        self.query_one(ConversationList).focus()

    def action_help(self) -> None:
        self.app.push_screen(HelpDialog(getattr(self.app, "intro", None)))

    def action_scroll_log(self, direction: int) -> None:
        log = self.query_one(MessageLog)
        if direction < 0:
            log.scroll_page_up()
        else:
            log.scroll_page_down()

    def action_find(self) -> None:
        self.app.push_screen(FindPeopleDialog(self.session), self._found)

    @work
    async def _found(self, choice: str | None) -> None:
        if not choice:
            return
        what, handle = choice.split(":", 1)
        if what == "request":
            await self._run(self.session.request(handle), f"Asked @{handle} to connect.")
            await self.refresh_conversations()
            return
        existing = next((c for c in self._conversations if c.handle == handle), None)
        name = self.session.display_name_of(handle)  # as search found them, not the handle
        await self.open_conversation(
            existing or Conversation(handle, name, "stranger", "visible", False, 0, None)
        )

    async def _run(self, action: object, done: str) -> bool:
        try:
            await action  # type: ignore[misc]
        except ClientError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return False
        self.notify(done)
        return True

    @on(Button.Pressed, "#accept")
    @work
    async def action_accept(self) -> None:
        if self.current is None:
            return
        if self.current.is_group:
            await self._answer_invitation(self.current, True)
            return
        handle = self.current.handle
        try:
            outcome = await self.session.respond(handle, True)
        except ClientError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return
        if outcome == "awaiting_guardian":
            self.notify(
                f"Accepted. Your contact with @{handle} waits for a guardian's approval; "
                "until then neither of you can write.",
                title="Waiting for a guardian",
            )
        else:
            self.notify(f"You're connected with @{handle}.")
        await self.refresh_conversations()
        fresh = next((c for c in self._conversations if c.handle == handle), None)
        if fresh is not None:
            await self.open_conversation(fresh)
        self._focus_compose()

    @on(Button.Pressed, "#decline")
    def action_decline(self) -> None:
        if self.current is None:
            return
        if self.current.is_group:
            invitation = self.current
            name = quoted(invitation.display_name)
            self.app.push_screen(  # one key away from Accept: ask first
                ConfirmDialog(
                    f"Decline the invitation to {name}?",
                    "Whoever invited you won't be told. To join later, an admin has to add "
                    "you again.",
                    "Decline",
                ),
                lambda answer: self._decline_invitation(invitation) if answer else None,
            )
            return
        handle = self.current.handle
        body = f"@{handle} won't be able to message you or ask again."
        self.app.push_screen(  # one key away from Accept: ask first
            ConfirmDialog(f"Decline @{handle}'s request?", body, "Decline"),
            lambda answer: self._decline(handle) if answer else None,
        )

    async def _answer_invitation(self, c: Conversation, accept: bool) -> None:
        name = quoted(c.display_name)
        try:
            await self.session.respond(c.handle, accept)
        except ClientError as exc:
            self.notify(exc.message, title="Refused", severity="error")
            return
        self.notify(f"You joined {name}." if accept else f"Declined the invitation to {name}.")
        await self.refresh_conversations()
        fresh = next((x for x in self._conversations if x.handle == c.handle), None)
        if fresh is not None:
            await self.open_conversation(fresh)
        elif self._conversations:  # a declined invitation leaves the list
            await self.open_conversation(self._conversations[0])
        else:
            await self._close_conversation()
        self._focus_compose()

    async def _close_conversation(self) -> None:
        """Nothing open: the open conversation left the list (a declined invitation)."""
        self.current = None
        self.query_one("#chat-title", Static).update(
            "Pick a conversation, or press Ctrl+F to find people."
        )
        self.query_one("#chat-reason", Static).update("")
        self.query_one("#request-actions").display = False
        await self.query_one("#notices").remove_children()

        async def nothing(before: int | None, after: int | None) -> list[HistoryMessage]:
            return []

        await self.query_one(MessageLog).show(nothing)
        self.query_one("#compose", Input).disabled = True
        self.refresh_bindings()

    @work
    async def _decline_invitation(self, c: Conversation) -> None:
        await self._answer_invitation(c, False)

    @work
    async def _decline(self, handle: str) -> None:
        if await self._run(self.session.respond(handle, False), f"Declined @{handle}."):
            await self.refresh_conversations()
            self._focus_compose()

    def action_block(self) -> None:
        if self.current is None:
            return
        if self.current.is_group:  # from the palette: a person's, so each member's
            self._members_for("block")
            return
        handle = self.current.handle
        if self.current.state == "blocked":  # from the palette's "Block or unblock"
            self.action_unblock()
            return
        body = (
            f"Nothing @{handle} sends will reach you, and they can't find you. "
            "They won't be told. You can unblock them later."
        )
        self.app.push_screen(
            ConfirmDialog(f"Block @{handle}?", body, "Block"),
            lambda answer: self._block(handle) if answer else None,
        )

    @work
    async def _block(self, handle: str) -> None:
        await self._run(self.session.block(handle), f"Blocked @{handle}.")
        await self.refresh_conversations()

    def action_unblock(self) -> None:
        if self.current is None or self.current.state != "blocked":
            return
        handle = self.current.handle
        body = (
            f"@{handle} will be able to message you again, and to find you if the rules let "
            "them. They won't be told."
        )
        if is_minor(self.session.band):
            body += " If they upset you before, talk to an adult you trust first."
        self.app.push_screen(  # a block protects: undoing it takes a second, deliberate step
            ConfirmDialog(f"Unblock @{handle}?", body, "Unblock"),
            lambda answer: self._unblock(handle) if answer else None,
        )

    @work
    async def _unblock(self, handle: str) -> None:
        await self._run(self.session.unblock(handle), f"Unblocked @{handle}.")
        await self.refresh_conversations()

    def action_report(self) -> None:
        if self.current is None:
            return
        if self.current.is_group:  # from the palette: a person's, so each member's
            self._members_for("report")
            return

        def reported(result: str | None) -> None:
            if result:
                self.notify("Thank you. The report was sent to the safety team.", title="Reported")

        self.app.push_screen(
            ReportDialog(self.session, self.current.handle, self.current.mode), reported
        )

    def action_safety_number(self) -> None:
        if self.current is None:
            return
        if self.current.is_group:
            self.notify(
                "A safety number is between two people: compare it in your chat with each member.",
                title="Not in groups",
            )
            return
        handle = self.current.handle

        async def done(result: str | None) -> None:
            if result == "verified":
                self.notify(f"You verified @{handle}'s safety number.")
            elif result == "accepted":
                self.notify(f"You accepted @{handle}'s new key (not verified).")
            await self.refresh_conversations(from_relay=False)

        self.app.push_screen(SafetyNumberDialog(self.session, handle, self.current.mode), done)

    # --- groups -------------------------------------------------------------------------

    def action_new_group(self) -> None:
        async def created(key: str | None) -> None:
            await self.refresh_conversations()
            fresh = next((c for c in self._conversations if c.handle == key), None)
            if fresh is not None:
                await self.open_conversation(fresh)

        self.app.push_screen(NewGroupDialog(self.session), created)

    def action_members(self) -> None:
        c = self.current
        if c is None or not c.is_group or c.group_id is None:
            return
        if c.state != "member":
            self.notify("You're not in this group.", title="Members")
            return

        async def done(result: str | None) -> None:
            await self.refresh_conversations()  # adds, removals and mode changes
            if result == "left":
                self.notify(f"You left {quoted(c.display_name)}.")

        self.app.push_screen(MembersDialog(self.session, c.group_id), done)

    def _members_for(self, what: str) -> None:
        """Block or report asked for in a group chat: they are per person, in Members."""
        self.notify(f"In a group, {what} someone from Members (Ctrl+G).", title="Members")
        self.action_members()

    def action_account(self) -> None:
        def then(choice: str | None) -> None:
            if choice == "guardians":
                self.action_guardians()

        self.app.push_screen(AccountDialog(self.session), then)

    def action_guardians(self) -> None:
        async def done(_: str | None) -> None:
            await self.refresh_conversations()  # a link or an approval changes contacts

        self.app.push_screen(GuardiansDialog(self.session), done)

    async def on_unmount(self) -> None:
        # Stop this screen's workers before the session (and its database) closes under them.
        self.workers.cancel_node(self)
        with contextlib.suppress(Exception):
            await self.session.close()
