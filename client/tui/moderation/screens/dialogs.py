"""The console's dialogs: confirm a reveal (reviewer wellness), decide a case, and check
the CyberTipline report before an escalation writes it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from client.tui.moderation.render import ACTION_EFFECTS, plain
from protocol.moderation import ACTIONS, Action, CaseView


@dataclass(frozen=True)
class Decision:
    action: Action
    note: str


class RevealDialog(ModalScreen[bool]):
    """Ask before showing content: it may be distressing, and the reveal is recorded."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="Keep the content hidden")]

    def __init__(self, case_id: int, items: int) -> None:
        super().__init__()
        self.case_id = case_id
        self.items = items

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Reveal the evidence of case #{self.case_id}?", classes="dialog-title")
            yield Static(
                Text(
                    f"This shows the text of {self.items} message"
                    f"{'' if self.items == 1 else 's'}, which may be distressing. Take a "
                    "break whenever you need one.\n\nThe relay records each reveal in its "
                    "audit log: your handle, this case, the messages and the time, signed "
                    "with your key."
                )
            )
            with Horizontal(classes="buttons"):
                yield Button("Reveal", id="reveal-confirm", variant="warning")
                yield Button("Keep hidden", id="reveal-cancel")

    def on_mount(self) -> None:
        self.query_one("#reveal-cancel", Button).focus()  # the safe choice is the default

    @on(Button.Pressed, "#reveal-confirm")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#reveal-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class DecisionDialog(ModalScreen[Decision | None]):
    """Pick an action, write a note, confirm. The button names what it will do."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="Close without deciding")]

    def __init__(self, view: CaseView) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        subject = self.view.subject
        with Vertical(classes="dialog", id="decision"):
            yield Label(
                plain(f"Decide case #{self.view.summary.id}: @{subject.handle}"),
                classes="dialog-title",
            )
            with RadioSet(id="actions"):
                for action in ACTIONS:
                    yield RadioButton(action, id=f"action-{action}")
            yield Static("Choose an action (↑ ↓ then Enter).", id="action-effect")
            yield Label("Note (internal: kept with the decision and in the audit log)")
            yield Input(placeholder="why, in a few words", id="note", max_length=1000)
            with Horizontal(classes="buttons"):
                yield Button("Decide", id="decide-confirm", variant="error", disabled=True)
                yield Button("Cancel", id="decide-cancel")

    def on_mount(self) -> None:
        self.query_one(RadioSet).focus()

    @property
    def action(self) -> Action | None:
        pressed = self.query_one(RadioSet).pressed_index
        return ACTIONS[pressed] if pressed >= 0 else None

    @on(RadioSet.Changed)
    def _changed(self) -> None:
        action = self.action
        if action is None:
            return
        self.query_one("#action-effect", Static).update(Text(ACTION_EFFECTS[action]))
        button = self.query_one("#decide-confirm", Button)
        button.label = plain(f"{action.capitalize()} @{self.view.subject.handle}")
        button.disabled = False

    @on(Input.Submitted, "#note")
    @on(Button.Pressed, "#decide-confirm")
    def _confirm(self) -> None:
        if (action := self.action) is not None:
            self.dismiss(Decision(action, self.query_one("#note", Input).value.strip()))

    @on(Button.Pressed, "#decide-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class EscalationPreview(ModalScreen[bool]):
    """The report exactly as escalating would write it; writing it needs a second yes."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="Back without escalating")]

    def __init__(self, case_id: int, document: str) -> None:
        super().__init__()
        self.case_id = case_id
        self.document = document

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="escalation"):
            yield Label(f"CyberTipline report for case #{self.case_id}", classes="dialog-title")
            yield Static(
                Text(
                    "This is the document escalating writes to the relay's outbox (never "
                    "sent by the prototype). It contains the evidence's text; this preview "
                    "was recorded in the audit log."
                )
            )
            with VerticalScroll(id="escalation-document"):
                yield Static(plain(self.document), id="escalation-text")
            with Horizontal(classes="buttons"):
                yield Button("Write the report", id="escalate-confirm", variant="error")
                yield Button("Back", id="escalate-cancel")

    def on_mount(self) -> None:
        self.query_one("#escalate-cancel", Button).focus()  # nothing is written by default

    @on(Button.Pressed, "#escalate-confirm")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#escalate-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
