"""Guardian links in the app (Account → Guardians): invite, accept, unlink, and a guardian's
answers to their ward's new adult contacts. Everything goes through the client library
(``RelayClient.guardians``); the relay decides, and both people get its events.

A minor is told, before anything is linked, what a guardian would see under this relay's
policy — the same words the relay sends (``protocol.guardians``).
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, ListItem, ListView, Static

from client.errors import ClientError
from client.explain import BAND_WORDS
from client.session import ChatSession
from client.tui.screens.dialogs import ConfirmDialog, Dialog
from protocol.guardians import GuardianApproval, GuardianLink, guardian_disclosure, ward_disclosure
from protocol.policy import Guardians, is_minor


def intro(rules: Guardians, minor: bool) -> Text:
    """What a link is and gives, in this relay's policy."""
    if rules.max_guardians == 0:
        return Text("This relay's policy doesn't allow guardian links.")
    text = Text()
    if minor:
        text.append(
            "A guardian is a parent or carer you link your account with. You both have to "
            "confirm, and only link with someone you really know. If you link:\n"
        )
        lines = ward_disclosure(rules)
    else:
        text.append("Link with your child's account: they have to confirm it. As their guardian:\n")
        lines = guardian_disclosure(rules)
    for line in lines:
        text.append(f"• {line}\n")
    return text


def _since(link: GuardianLink) -> str:
    return link.since.strftime("%Y-%m-%d")


def links_text(links: list[GuardianLink]) -> Text:
    if not links:
        return Text("No guardian links or invitations yet.", style="dim")
    text = Text()
    for link in links:
        text.append(f"{link.display_name} @{link.handle}", style="bold")
        if link.state == "linked":
            text.append(f" — your {link.role}, linked since {_since(link)}\n")
        elif link.state == "invite_sent":
            text.append(f" — you invited them ({_since(link)}); waiting for them\n")
        else:
            role = "ward" if link.role == "guardian" else "guardian"
            text.append(f" — invited you to be their {role}: Accept or Unlink\n", style="yellow")
        if link.contacts is not None:
            text.append("  Their contacts (never their messages):\n", style="dim")
            for c in link.contacts:
                band = BAND_WORDS.get(c.band, c.band)
                text.append(f"    {c.display_name} @{c.handle}, {band}, since ")
                text.append(f"{c.since.strftime('%Y-%m-%d')}\n")
            if not link.contacts:
                text.append("    none yet\n", style="dim")
    return text


def approval_line(a: GuardianApproval, me: str) -> Text:
    band = BAND_WORDS.get(a.contact_band, a.contact_band)
    if a.ward == me:
        return Text(f"Your contact with {a.contact_name} @{a.contact} waits for your guardian.")
    return Text.assemble(
        (f"@{a.ward}", "bold"), f" wants {a.contact_name} @{a.contact} ({band}) as a contact"
    )


class GuardiansDialog(Dialog):
    """Links, invitations and approvals; dismissed with None."""

    DEFAULT_CSS = """
    #guardian-approvals { height: auto; max-height: 6; }
    #guardian-intro { margin-bottom: 1; }
    """

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Guardians", classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text("Loading…"), id="guardian-intro")
                yield Static("", id="guardian-links")
                yield Label("Waiting for approval", id="approvals-title")
                yield ListView(id="guardian-approvals")
            yield Input(placeholder="their @handle", id="guardian-handle")
            yield Static("", id="guardian-status")
            with Horizontal(classes="buttons"):
                yield Button("Invite", id="invite", variant="primary")
                yield Button("Accept", id="accept", variant="success")
                yield Button("Unlink", id="unlink", variant="error")
                yield Button("Close", id="close")
            with Horizontal(classes="buttons", id="approval-buttons"):
                yield Button("Approve", id="approve", variant="success")
                yield Button("Decline", id="decline-contact", variant="error")

    def on_mount(self) -> None:
        for selector in ("#approvals-title", "#guardian-approvals", "#approval-buttons"):
            self.query_one(selector).display = False
        self.query_one("#guardian-handle", Input).focus()
        self.reload()

    def _status(self, text: str | Text) -> None:
        self.query_one("#guardian-status", Static).update(
            text if isinstance(text, Text) else Text(text)
        )

    @work(exclusive=True, group="guardians-load")
    async def reload(self) -> None:
        try:
            view = await self.session.client.guardians.view()
        except ClientError as exc:
            self._status(Text(f"{exc.message} [{exc.code}]", style="red"))
            return
        minor = is_minor(self.session.band)
        self.query_one("#guardian-intro", Static).update(intro(view.rules, minor))
        self.query_one("#guardian-links", Static).update(links_text(view.links))
        approvals = self.query_one("#guardian-approvals", ListView)
        await approvals.clear()
        for approval in view.approvals:
            item = ListItem(Static(approval_line(approval, self.session.handle)))
            item.approval = approval  # type: ignore[attr-defined]
            await approvals.append(item)
        deciding = any(a.ward != self.session.handle for a in view.approvals)
        self.query_one("#approvals-title").display = bool(view.approvals)
        approvals.display = bool(view.approvals)
        self.query_one("#approval-buttons").display = deciding
        if view.approvals:
            approvals.index = 0

    def _handle(self) -> str | None:
        value = self.query_one("#guardian-handle", Input).value.strip().lstrip("@")
        if not value:
            self._status("Type their @handle first.")
            return None
        return value

    async def _run(self, action: object, done: str) -> None:
        try:
            await action  # type: ignore[misc]
        except ClientError as exc:
            self._status(Text(f"{exc.message} [{exc.code}]", style="red"))
            return
        self._status(Text(done, style="green"))
        self.reload()

    @on(Button.Pressed, "#invite")
    @on(Input.Submitted, "#guardian-handle")
    @work(exclusive=True, group="guardians-act")
    async def _invite(self) -> None:
        if (handle := self._handle()) is not None:
            guardians = self.session.client.guardians
            await self._run(guardians.invite(handle), f"Invited @{handle}. They have to accept.")

    @on(Button.Pressed, "#accept")
    @work(exclusive=True, group="guardians-act")
    async def _accept(self) -> None:
        if (handle := self._handle()) is not None:
            guardians = self.session.client.guardians
            await self._run(guardians.accept(handle), f"You're linked with @{handle}.")

    @on(Button.Pressed, "#unlink")
    def _unlink(self) -> None:
        if (handle := self._handle()) is None:
            return
        body = (
            f"The link with @{handle} ends at once (or their invitation is withdrawn). "
            "They're told; you can link again later if you both confirm."
        )
        self.app.push_screen(
            ConfirmDialog(f"Unlink @{handle}?", body, "Unlink"),
            lambda answer: self._do_unlink(handle) if answer else None,
        )

    @work(exclusive=True, group="guardians-act")
    async def _do_unlink(self, handle: str) -> None:
        await self._run(self.session.client.guardians.unlink(handle), f"Unlinked @{handle}.")

    def _selected(self) -> GuardianApproval | None:
        item = self.query_one("#guardian-approvals", ListView).highlighted_child
        approval = getattr(item, "approval", None)
        if approval is None or approval.ward == self.session.handle:
            self._status("Pick a contact waiting for your approval.")
            return None
        return approval

    @on(Button.Pressed, "#approve")
    @work(exclusive=True, group="guardians-act")
    async def _approve(self) -> None:
        if (a := self._selected()) is not None:
            decide = self.session.client.guardians.decide(a.ward, a.contact, True)
            await self._run(decide, f"Approved: @{a.ward} and @{a.contact} are connected.")

    @on(Button.Pressed, "#decline-contact")
    @work(exclusive=True, group="guardians-act")
    async def _decline(self) -> None:
        if (a := self._selected()) is not None:
            decide = self.session.client.guardians.decide(a.ward, a.contact, False)
            await self._run(decide, f"Declined: @{a.ward} and @{a.contact} aren't connected.")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)
