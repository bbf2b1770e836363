"""Groups in the app (PROTOCOL.md §6.8, POLICY.md "Groups"): the New group dialog (a name
and handles; each person's outcome in words) and the Members dialog (who is in the group,
how each member bears on its mode, and Add, Remove, Block, Report and Leave).

Everything goes through ChatSession, which asks the relay; the relay decides who may join
under the same rules as a direct contact, and tells every member what changed.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, ListItem, ListView, Static

from client.errors import ClientError, error_message
from client.session import ChatSession
from client.tui.group_words import (
    MAX_NAME,
    hidden_text,
    member_consequence,
    member_text,
    mode_sentence,
    outcome_text,
    parse_handles,
    quoted,
    size_text,
)
from client.tui.screens.dialogs import ConfirmDialog, Dialog, ReportDialog
from protocol.group_frames import GroupMemberView, GroupView
from protocol.groups import group_conversation
from protocol.policy import is_minor

# --- New group ---------------------------------------------------------------------------


class NewGroupDialog(Dialog):
    """A name and members; after Create, each person's outcome and the group's mode stay on
    screen. Dismissed with the group's conversation id (Open the group) or None."""

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session
        self.created: GroupView | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("New group", classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(self._intro(), id="group-intro")
                yield Label("Name")
                yield Input(placeholder="e.g. Family", id="group-name", max_length=MAX_NAME)
                yield Label("Members")
                yield Input(placeholder="their @handles, comma-separated", id="group-members")
                yield Static("", id="group-status")
                yield Static("", id="group-outcomes")
            with Horizontal(classes="buttons"):
                yield Button("Create", id="create", variant="primary")
                yield Button("Open the group", id="open-group", variant="success")
                yield Button("Close", id="close")

    def _intro(self) -> Text:
        text = Text(
            "People you're connected with join. Others are invited, if the rules let you "
            "ask them, and accept or decline. A group is end-to-end encrypted only while "
            "everyone in it is an adult; with anyone under 18 it is visible to safety checks."
        )
        if is_minor(self.session.band):
            text.append("\nOnly add people you know in real life.", style="yellow")
        else:
            text.append("\nYou can't add someone under 18 you aren't connected with.", style="dim")
        return text

    def on_mount(self) -> None:
        self.query_one("#open-group").display = False
        self.query_one("#group-name", Input).focus()

    def _status(self, text: str) -> None:
        self.query_one("#group-status", Static).update(Text(text))

    @on(Input.Submitted, "#group-name")
    def _to_members(self) -> None:
        self.query_one("#group-members", Input).focus()

    @on(Button.Pressed, "#create")
    @on(Input.Submitted, "#group-members")
    @work(exclusive=True)
    async def _create(self) -> None:
        if self.created is not None:
            return  # one group per dialog: its outcomes stay on screen
        name = self.query_one("#group-name", Input).value.strip()
        if not name:
            self._status("Give the group a name.")
            return
        if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):
            self._status("The name can't hold control characters.")
            return
        handles = parse_handles(self.query_one("#group-members", Input).value)
        if isinstance(handles, str):
            self._status(handles)
            return
        self._status("")
        try:
            view, outcomes = await self.session.create_group(name, handles)
        except ClientError as exc:
            self._status(f"{exc.message} [{exc.code}]")
            return
        self.created = view
        text = Text.assemble("Created ", (quoted(view.name), "bold"), ".\n")
        text.append_text(mode_sentence(view, self.session.band))
        for o in outcomes:
            text.append("\n")
            text.append_text(outcome_text(o))
        self.query_one("#group-intro").display = False  # room for the outcomes
        outcomes = self.query_one("#group-outcomes", Static)
        outcomes.update(text)
        outcomes.scroll_visible(animate=False)
        self.query_one("#create").display = False
        self.query_one("#open-group").display = True
        self.query_one("#open-group", Button).focus()
        for field in ("#group-name", "#group-members"):
            self.query_one(field, Input).disabled = True

    @on(Button.Pressed, "#open-group")
    def _open(self) -> None:
        self.dismiss(group_conversation(self.created.id) if self.created else None)

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(group_conversation(self.created.id) if self.created else None)


# --- Members -----------------------------------------------------------------------------


class MembersDialog(Dialog):
    """A group's members, each with what they mean for its mode, and those under 18 you
    can't see counted. Admins add and remove; anyone blocks or reports a member, or leaves
    (asked first). Dismissed with ``"left"`` or None."""

    def __init__(self, session: ChatSession, group: str) -> None:
        super().__init__()
        self.session = session
        self.group = group
        self.view: GroupView | None = None  # as shown
        self.fresh = False  # what is shown is the relay's answer, not the list kept
        self.refuse = False  # the policy refuses a minor joining an encrypted group

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Members", classes="dialog-title", id="members-title")
            yield Static(Text("Loading…"), id="members-mode")
            yield ListView(id="members")
            yield Static("", id="members-hidden")
            with Horizontal(id="add-row"):
                yield Input(placeholder="add someone: their @handle", id="add-handle")
                yield Button("Add", id="add", variant="primary")
            yield Static("", id="members-status")
            with Horizontal(classes="buttons", id="members-buttons"):
                yield Button("Remove", id="remove", variant="warning")
                yield Button("Block", id="block-member", variant="error")
                yield Button("Report", id="report-member", variant="error")
                yield Button("Leave", id="leave", variant="error")
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        self.query_one("#add-row").display = False
        self.query_one("#remove").display = False
        self.query_one("#members-hidden").display = False
        self.query_one("#members", ListView).focus()
        self.reload()

    def _status(self, text: str | Text) -> None:
        self.query_one("#members-status", Static).update(
            text if isinstance(text, Text) else Text(text)
        )

    @property
    def admin(self) -> bool:
        return self.view is not None and self.view.role == "admin"

    @work(exclusive=True, group="members-load")
    async def reload(self) -> None:
        """The group as last listed at once, then as the relay has it now."""
        policy = await self.session.policy()
        self.refuse = policy is not None and policy.groups.minor_joins_e2ee == "refuse"
        if self.view is None and (kept := await self.session.group_view(self.group)):
            await self._show(kept, fresh=False)
        fresh = await self.session.refresh_groups()
        view = await self.session.group_view(self.group)
        if view is None:
            self._status(Text(error_message("unknown_group"), style="red"))
            return
        await self._show(view, fresh=fresh)

    async def _show(self, view: GroupView, *, fresh: bool) -> None:
        me = self.session.handle
        title = Text.assemble((quoted(view.name), "bold"), f" — {size_text(view)}")
        self.query_one("#members-title", Label).update(title)
        mode = mode_sentence(view, self.session.band)
        if not fresh:
            mode.append("\n(As the relay last listed it: it can't be reached now.)", style="dim")
        self.query_one("#members-mode", Static).update(mode)
        members = self.query_one("#members", ListView)
        index = members.index
        await members.clear()
        for m in view.members:
            why = Static(Text(member_consequence(m, view, me, self.refuse)), classes="member-why")
            item = ListItem(Static(member_text(m, me)), why)
            item.member = m  # type: ignore[attr-defined]
            await members.append(item)
        if view.members:
            members.index = min(index or 0, len(view.members) - 1)
        hidden = self.query_one("#members-hidden", Static)
        hidden.display = view.hidden_members > 0
        hidden.update(Text(hidden_text(view)))
        self.view, self.fresh = view, fresh  # once all of it is on screen
        self.query_one("#add-row").display = self.admin
        self.query_one("#remove").display = self.admin

    def _selected(self) -> GroupMemberView | None:
        item = self.query_one("#members", ListView).highlighted_child
        member = getattr(item, "member", None)
        if member is None:
            self._status("Pick someone in the list first.")
            return None
        if member.handle == self.session.handle:
            self._status("That's you: to go, press Leave.")
            return None
        return member

    # --- admins ------------------------------------------------------------------------

    @on(Button.Pressed, "#add")
    @on(Input.Submitted, "#add-handle")
    @work(exclusive=True, group="members-act")
    async def _add(self) -> None:
        field = self.query_one("#add-handle", Input)
        handles = parse_handles(field.value)
        if isinstance(handles, str) or len(handles) != 1:
            self._status(handles if isinstance(handles, str) else "Type one @handle to add.")
            return
        try:
            _, outcome = await self.session.add_to_group(self.group, handles[0])
        except ClientError as exc:
            self._status(Text(f"{exc.message} [{exc.code}]", style="red"))
            return
        field.value = ""
        self._status(outcome_text(outcome))
        self.reload()

    @on(Button.Pressed, "#remove")
    def _remove(self) -> None:
        if (m := self._selected()) is None or self.view is None:
            return
        name = quoted(self.view.name)
        if m.state == "invited":
            title, body = f"Withdraw @{m.handle}'s invitation?", f"They won't join {name}."
        else:
            title = f"Remove @{m.handle} from {name}?"
            body = (
                "They stop getting the group's messages, and everyone in it sees that they "
                "were removed."
            )
        self.app.push_screen(
            ConfirmDialog(title, body, "Remove"),
            lambda answer: self._do_remove(m) if answer else None,
        )

    @work(exclusive=True, group="members-act")
    async def _do_remove(self, m: GroupMemberView) -> None:
        try:
            await self.session.remove_from_group(self.group, m.handle)
        except ClientError as exc:
            self._status(Text(f"{exc.message} [{exc.code}]", style="red"))
            return
        done = (
            f"Withdrew @{m.handle}'s invitation."
            if m.state == "invited"
            else f"@{m.handle} is no longer in the group."
        )
        self._status(Text(done, style="green"))
        self.reload()

    # --- everyone ----------------------------------------------------------------------

    @on(Button.Pressed, "#block-member")
    def _block(self) -> None:
        if (m := self._selected()) is None:
            return
        body = (
            f"Nothing @{m.handle} sends will reach you — in this group or anywhere else — "
            "and they can't find you. They won't be told. You can unblock them later."
        )
        self.app.push_screen(
            ConfirmDialog(f"Block @{m.handle}?", body, "Block"),
            lambda answer: self._do_block(m.handle) if answer else None,
        )

    @work(exclusive=True, group="members-act")
    async def _do_block(self, handle: str) -> None:
        try:
            await self.session.block(handle)
        except ClientError as exc:
            self._status(Text(f"{exc.message} [{exc.code}]", style="red"))
            return
        self._status(Text(f"Blocked @{handle}.", style="green"))

    @on(Button.Pressed, "#report-member")
    def _report(self) -> None:
        if (m := self._selected()) is None or self.view is None:
            return

        def reported(result: str | None) -> None:
            if result:
                self._status(Text("Thank you. The report was sent to the safety team.", "green"))

        dialog = ReportDialog(
            self.session, m.handle, self.view.mode, group=self.group, group_name=self.view.name
        )
        self.app.push_screen(dialog, reported)

    @on(Button.Pressed, "#leave")
    def _leave(self) -> None:
        if self.view is None:
            return
        view = self.view
        body = "You stop getting its messages, and everyone in it is told you left."
        me = self.session.handle
        others = [m for m in view.members if m.handle != me and m.state == "member"]
        if not others and not view.hidden_members:
            body += " You are the last one in it, so the group ends."
        elif view.role == "admin" and not any(m.role == "admin" for m in others):
            body += " The member who has been in it longest becomes its admin."
        body += " To come back, an admin has to add you again."
        self.app.push_screen(
            ConfirmDialog(f"Leave {quoted(view.name)}?", body, "Leave"),
            lambda answer: self._do_leave() if answer else None,
        )

    @work(exclusive=True, group="members-act")
    async def _do_leave(self) -> None:
        try:
            await self.session.leave_group(self.group)
        except ClientError as exc:
            self._status(Text(f"{exc.message} [{exc.code}]", style="red"))
            return
        self.dismiss("left")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)
