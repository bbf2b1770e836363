"""Modal dialogs: find people, block, report, safety number, account, help (files are in
files.py, guardian links in guardians.py)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ListItem, ListView, Static

from client.cli import printable
from client.errors import ClientError
from client.explain import BAND_WORDS, protections
from client.history import HistoryMessage
from client.session import ChatSession
from client.tui.widgets.message_item import render_message
from protocol.policy import is_minor


class Dialog(ModalScreen[str | None]):
    """Escape closes every dialog."""

    BINDINGS = [Binding("escape", "dismiss_none", "Close")]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class FindPeopleDialog(Dialog):
    """Search obeys the policy: who you can't find simply doesn't appear.

    Dismissed with ``"request:<handle>"`` or ``"message:<handle>"``.
    """

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Find people by handle or name", classes="dialog-title")
            if is_minor(self.session.band):
                yield Static(
                    Text(
                        "Only connect with people you know in real life. If someone you don't "
                        "know asks you for photos, secrets or to meet, tell an adult you trust.",
                        style="yellow",
                    )
                )
            yield Input(placeholder="type a name or @handle, then Enter", id="query")
            yield ListView(id="results")
            yield Static("", id="find-status")
            with Horizontal(classes="buttons"):
                yield Button("Ask to connect", id="request", variant="primary")
                yield Button("Message", id="message")
                yield Button("Close", id="close")

    @on(Input.Submitted, "#query")
    @work(exclusive=True)
    async def _search(self, event: Input.Submitted) -> None:
        results = self.query_one("#results", ListView)
        await results.clear()
        status = self.query_one("#find-status", Static)
        if not event.value.strip():
            return
        try:
            people = await self.session.search(event.value.strip())
        except ClientError as exc:
            status.update(Text(f"{exc.message} [{exc.code}]"))
            return
        for person in people:
            item = ListItem(
                Static(Text.assemble((person.display_name, "bold"), f" @{person.handle}"))
            )
            item.handle = person.handle  # type: ignore[attr-defined]
            await results.append(item)
        status.update(
            f"{len(people)} found."
            if people
            else "Nobody found. (Some people can't be found by everyone: see Account.)"
        )
        if people:
            results.index = 0

    def _selected(self) -> str | None:
        item = self.query_one("#results", ListView).highlighted_child
        return getattr(item, "handle", None)

    @on(Button.Pressed, "#request")
    def _request(self) -> None:
        if (handle := self._selected()) is not None:
            self.dismiss(f"request:{handle}")

    @on(Button.Pressed, "#message")
    @on(ListView.Selected)
    def _message(self) -> None:
        if (handle := self._selected()) is not None:
            self.dismiss(f"message:{handle}")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)


class ConfirmDialog(Dialog):
    def __init__(self, title: str, body: str, confirm: str) -> None:
        super().__init__()
        self.title_text, self.body, self.confirm = title, body, confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            # Text, not markup: a title may name a file someone else chose the name of.
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Static(Text(self.body))
            with Horizontal(classes="buttons"):
                yield Button(self.confirm, id="confirm", variant="error")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # the safe choice is the default

    @on(Button.Pressed, "#confirm")
    def _yes(self) -> None:
        self.dismiss("confirm")

    @on(Button.Pressed, "#cancel")
    def _no(self) -> None:
        self.dismiss(None)


class ReportDialog(Dialog):
    """Shows exactly what will be sent (the reason and the last N messages) before sending.
    With ``group``, a member of that group is reported with the last messages they sent in
    it (``group_name`` titles the dialog)."""

    LAST = 5

    def __init__(
        self,
        session: ChatSession,
        handle: str,
        mode: str,
        *,
        group: str | None = None,
        group_name: str | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.handle = handle
        self.mode = mode
        self.group = group
        self.group_name = group_name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            title = f"Report @{self.handle}"
            if self.group is not None:
                title += f" in “{printable(self.group_name or 'this group')}”"
            yield Label(Text(title), classes="dialog-title")
            yield Label("What happened? (a few words)")
            yield Input(
                placeholder="e.g. asked for photos, harassment, spam", id="reason", max_length=200
            )
            yield Label("", id="attach-label")
            yield Static("", id="disclosure")
            yield Static("loading…", id="preview")
            yield Static("", id="report-status")
            with Horizontal(classes="buttons"):
                yield Button("Send report", id="send", variant="error")
                yield Button("Cancel", id="cancel")

    async def on_mount(self) -> None:
        messages = await self.session.report_preview(self.handle, self.LAST, self.group)
        line = attachment_line(len(messages), self.group is not None)
        self.query_one("#attach-label", Label).update(Text(line))
        disclosure = self.query_one("#disclosure", Static)
        if messages and (self.mode == "e2ee" or any(m.mode == "e2ee" for m in messages)):
            disclosure.update(Text(e2ee_disclosure(messages), style="bold yellow"))
        else:
            disclosure.display = False
        preview = Text("\n").join(render_message(m, self.session.handle) for m in messages)
        self.query_one("#preview", Static).update(preview if messages else Text("(no messages)"))

    @on(Button.Pressed, "#send")
    @on(Input.Submitted, "#reason")
    @work(exclusive=True)
    async def _send(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        status = self.query_one("#report-status", Static)
        if not reason:
            status.update(Text("Please say in a few words what happened."))
            return
        try:
            attached = await self.session.report(self.handle, reason, self.LAST, self.group)
        except ClientError as exc:
            status.update(Text(f"{exc.message} [{exc.code}]"))
            return
        self.dismiss(f"reported:{len(attached)}")

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


def attachment_line(count: int, group: bool = False) -> str:
    if count == 0:
        if group:
            return "No messages will be attached: your device has none they sent in this group."
        return "No messages will be attached: your device has none from this chat."
    theirs = " they sent in this group" if group else ""
    if count == 1:
        return f"This message{theirs} will be attached, as your device has it:"
    return f"These {count} messages{theirs} will be attached, as your device has them:"


def e2ee_disclosure(messages: list[HistoryMessage]) -> str:
    """Reporting is the one time an encrypted chat's text leaves it: say so before sending."""
    which = "this message" if len(messages) == 1 else f"these {len(messages)} messages"
    return (
        "This chat is end-to-end encrypted, but a report is not: sending it gives agechat's "
        f"relay and its safety team the text of {which} in readable form, so they can check "
        "what was said. Nothing else from the chat is sent."
    )


class InfoDialog(Dialog):
    def __init__(self, title: str, body: str | Text) -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(self.body) if isinstance(self.body, str) else self.body)
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class Intro:
    """What a guided run (`agechat demo`) tells its user first: shown as the app opens
    and again with F1."""

    title: str
    text: str


KEY_TIPS = (
    ("Ctrl+F", "find people", "Ctrl+L", "your conversations (Tab: to the message box)"),
    ("Ctrl+Y", "accept a request or invitation", "Ctrl+N", "decline one (asks first)"),
    ("F2", "new group", "Ctrl+G", "in a group: members (add, remove, block, report, leave)"),
    ("Ctrl+B", "block or unblock (both ask first)", "Ctrl+R", "report"),
    ("Ctrl+S", "safety number (encrypted chats)", "Ctrl+O", "your account and what protects you"),
    ("Ctrl+T", "send a file", "Ctrl+G", "the chat's files: save a copy, show where (or click one)"),
    ("Ctrl+P", "every command by name", "F1", "this help · Esc closes it · Ctrl+Q quits"),
)


class HelpDialog(InfoDialog):
    """The intro (when there is one) and the keys."""

    def __init__(self, intro: Intro | None) -> None:
        body = Text()
        if intro is not None:
            body.append(intro.text.rstrip() + "\n\n")
        body.append("Keys\n", style="bold")
        for key, what, key2, what2 in KEY_TIPS:
            body.append(f"  {key}", style="bold")
            body.append(f" {what} · ")
            body.append(key2, style="bold")
            body.append(f" {what2}\n")
        body.rstrip()
        super().__init__(intro.title if intro else "Help", body)


class AccountDialog(InfoDialog):
    """Your account and what protects you; Guardians… opens the guardian links (dismissed
    with ``"guardians"``)."""

    def __init__(self, session: ChatSession) -> None:
        super().__init__("Your account", account_text(session))

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(self.body) if isinstance(self.body, str) else self.body)
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary")
                yield Button("Guardians…", id="guardians")

    @on(Button.Pressed, "#guardians")
    def _guardians(self) -> None:
        self.dismiss("guardians")


def account_text(session: ChatSession) -> str:
    b = session.band
    lines = "\n".join(f"• {line}" for line in protections(b))
    return (
        f"@{session.handle} ({session.display_name}) on {session.profile.server}\n"
        f"Age group: {BAND_WORDS[b]}\n\nWhat that means:\n{lines}"
    )


SAFETY_NUMBER_HELP = (
    "Compare this number with the one on their screen — in person, or on a call where you "
    "recognise their voice. If they match, nobody is secretly in the middle of your "
    "encrypted chat. If they don't, don't mark it verified."
)


def _grouped(digits: str) -> str:
    return " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))


class SafetyNumberDialog(Dialog):
    """Both fingerprints and the combined number; mark verified or accept a new key.

    Dismissed with ``"verified"``, ``"accepted"`` or None.
    """

    def __init__(self, session: ChatSession, handle: str, mode: str) -> None:
        super().__init__()
        self.session, self.handle, self.mode = session, handle, mode
        self.shown: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Safety number with @{self.handle}", classes="dialog-title")
            yield Static(Text("Loading…"), id="safety-status")
            yield Static("", id="safety-number")
            if self.mode == "e2ee":
                yield Static(Text(SAFETY_NUMBER_HELP, style="dim"))
            else:
                yield Static(
                    Text(
                        "This chat is not end-to-end encrypted (someone in it is under 18), so "
                        "the relay can read it whatever the number says. The number only "
                        "matters if the chat becomes encrypted later.",
                        style="yellow",
                    )
                )
            with Horizontal(classes="buttons"):
                yield Button("Mark verified", id="verify", variant="success", disabled=True)
                yield Button("Accept new key", id="accept-key", variant="warning")
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        self.query_one("#accept-key").display = False
        self._load()

    @work(exclusive=True)
    async def _load(self) -> None:
        try:
            result = await self.session.safety_number(self.handle)
        except ClientError as exc:
            self.query_one("#safety-status", Static).update(Text(exc.message, style="red"))
            return
        self.shown = result.number
        groups = result.number.split()
        rows = "\n".join(" ".join(groups[i : i + 4]) for i in range(0, 12, 4))
        number = Text(rows, style="bold")
        number.append(
            f"\n\nyour half:  {_grouped(result.own_fingerprint)}"
            f"\ntheir half: {_grouped(result.peer_fingerprint)}",
            style="dim",
        )
        self.query_one("#safety-number", Static).update(number)
        if result.key_changed:
            status = Text(
                "⚠ Their key changed since you last talked. Check the number before you trust "
                "this chat again.",
                style="bold red",
            )
        elif result.verified:
            status = Text("✓ Verified", style="bold green")
        else:
            status = Text("Not verified yet", style="yellow")
        self.query_one("#safety-status", Static).update(status)
        verify = self.query_one("#verify", Button)
        verify.disabled = False
        # Verifying only means something for an encrypted chat.
        verify.display = self.mode == "e2ee" or result.key_changed
        self.query_one("#accept-key").display = result.key_changed
        target = "#accept-key" if result.key_changed else "#verify" if verify.display else "#close"
        self.query_one(target, Button).focus()

    @on(Button.Pressed, "#verify")
    @work
    async def _verify(self) -> None:
        try:  # the number on screen, not whatever key arrived since
            await self.session.verify(self.handle, self.shown)
        except ClientError as exc:
            self.query_one("#safety-status", Static).update(Text(exc.message, style="bold red"))
            self._load()
            return
        self.dismiss("verified")

    @on(Button.Pressed, "#accept-key")
    @work
    async def _accept(self) -> None:
        await self.session.accept_key(self.handle)
        self.dismiss("accepted")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)
