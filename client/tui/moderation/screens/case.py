"""One case: the subject in context, findings, evidence (hidden until revealed), decisions.

Only this screen reveals content, and it forgets it when it closes: coming back to the
case later means revealing again (and being recorded again).
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from client.cli import printable
from client.errors import ClientError
from client.guardian_words import guardian_lines
from client.tui.moderation.backend import ModerationBackend
from client.tui.moderation.render import (
    case_heading,
    decisions_text,
    finding_text,
    prior_text,
    subject_text,
)
from client.tui.moderation.screens.dialogs import (
    Decision,
    DecisionDialog,
    EscalationPreview,
    RevealDialog,
)
from client.tui.moderation.widgets.evidence import EvidenceList
from client.tui.moderation.widgets.status import StatusLine
from protocol.moderation import CaseView


class CaseScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="Esc", tooltip="Back to the list"),
        Binding(
            "r,R",
            "reveal",
            "Reveal",
            key_display="R",
            tooltip="Show the evidence's text (recorded)",
        ),
        Binding("h,H", "hide", "Hide", key_display="H", tooltip="Hide the evidence's text again"),
        Binding(
            "d,D",
            "decide",
            "Decide",
            key_display="D",
            tooltip="Dismiss, warn, restrict, suspend, reinstate, escalate",
        ),
        Binding(
            "n,N",
            "next_case",
            "Next case",
            key_display="N",
            tooltip="Take the next case of this queue",
        ),
        Binding("f5", "refresh", "Refresh", key_display="F5", tooltip="Ask the relay again"),
    ]

    def __init__(
        self, backend: ModerationBackend, case_id: int, view: CaseView | None = None
    ) -> None:
        super().__init__()
        self.backend = backend
        self.case_id = case_id
        self.view: CaseView | None = view

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Case #{self.case_id}", id="case-heading")
        yield StatusLine(id="status")
        with VerticalScroll(id="case-body"):
            yield Label("Subject", classes="section-title")
            yield Static("", id="subject")
            yield Label("Findings", classes="section-title")
            yield Static("", id="findings")
            yield Label("Evidence", classes="section-title")
            yield EvidenceList(id="evidence")
            yield Label("Decisions", classes="section-title")
            yield Static("", id="decisions")
            yield Label("Prior cases", classes="section-title")
            yield Static("", id="prior")
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = f"case #{self.case_id}"
        if self.view is not None:
            await self._show(self.view)
        else:
            self.query_one("#case-body").display = False  # until there is a case to show
            self._load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        found = self.query(EvidenceList)
        if action == "reveal":
            hidden = not found or not found.first().all_revealed
            return self.view is not None and bool(self.view.evidence) and hidden
        if action == "hide":
            return bool(found) and found.first().any_revealed
        if action == "decide":
            return self.view is not None
        return True

    # --- loading and showing ----------------------------------------------------------------

    def action_refresh(self) -> None:
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        try:
            view = await self.backend.case(self.case_id)
        except ClientError as exc:
            self.query_one(StatusLine).error(exc)
            return
        await self._show(view)

    async def _show(self, view: CaseView) -> None:
        self.view = view
        self.query_one("#case-body").display = True
        self.query_one("#case-heading", Static).update(case_heading(view.summary))
        subject = subject_text(view.subject)
        if guardians := guardian_lines(view.guardians, printable):
            subject.append("\n" + "\n".join(guardians))
        self.query_one("#subject", Static).update(subject)
        findings = [finding_text(f) for f in view.findings]
        self.query_one("#findings", Static).update(
            Text("\n\n").join(findings) if findings else Text("No findings.", style="dim")
        )
        await self.query_one(EvidenceList).show(view.evidence)
        self.query_one("#decisions", Static).update(decisions_text(view.decisions))
        self.query_one("#prior", Static).update(prior_text(view))
        self.refresh_bindings()

    # --- reveal -----------------------------------------------------------------------------

    def action_reveal(self) -> None:
        if self.view is None or not self.view.evidence:
            return
        self.app.push_screen(
            RevealDialog(self.case_id, len(self.view.evidence)), self._reveal_confirmed
        )

    def _reveal_confirmed(self, confirmed: bool | None) -> None:
        if confirmed:
            self._reveal()

    @work(exclusive=True, group="reveal")
    async def _reveal(self) -> None:
        try:
            items = await self.backend.reveal(self.case_id)
        except ClientError as exc:
            self.query_one(StatusLine).error(exc)
            return
        await self.query_one(EvidenceList).reveal(items)
        self.query_one(StatusLine).info(
            "Evidence revealed (recorded in the audit log). Press H to hide it again."
        )
        self.refresh_bindings()

    async def action_hide(self) -> None:
        await self.query_one(EvidenceList).hide()
        self.query_one(StatusLine).clear()
        self.refresh_bindings()

    # --- decide -----------------------------------------------------------------------------

    def action_decide(self) -> None:
        if self.view is not None:
            self.app.push_screen(DecisionDialog(self.view), self._decided)

    def _decided(self, decision: Decision | None) -> None:
        if decision is None:
            return
        if decision.action == "escalate":
            self._preview(decision)  # the report is shown before it is written
        else:
            self._decide(decision)

    @work(exclusive=True, group="decide")
    async def _preview(self, decision: Decision) -> None:
        try:
            document = await self.backend.preview_escalation(self.case_id, decision.note)
        except ClientError as exc:
            self.query_one(StatusLine).error(exc)
            return

        def confirmed(write: bool | None) -> None:
            if write:
                self._decide(decision)
            else:
                self.query_one(StatusLine).info("Not escalated: nothing was written.")

        self.app.push_screen(EscalationPreview(self.case_id, document), confirmed)

    @work(exclusive=True, group="decide")
    async def _decide(self, decision: Decision) -> None:
        status = self.query_one(StatusLine)
        try:
            outcome = await self.backend.decide(self.case_id, decision.action, decision.note)
        except ClientError as exc:
            status.error(exc)
            return
        subject = self.view.subject.handle if self.view else "the subject"
        try:
            view = await self.backend.case(self.case_id)
        except ClientError as exc:
            status.error(exc)
            return
        await self._show(view)
        status.info(
            f"Decision recorded: @{subject} {outcome}; case #{self.case_id} is "
            f"{view.summary.status}."
        )
        self.notify(printable(f"@{subject} {outcome}"), title=f"Case #{self.case_id}", markup=False)

    # --- moving on --------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss(None)

    def action_next_case(self) -> None:
        if self.view is not None:
            self._next_case(self.view.summary.queue)

    @work(exclusive=True, group="next")
    async def _next_case(self, queue: str) -> None:
        try:
            view = await self.backend.next_case(queue)
        except ClientError as exc:
            self.query_one(StatusLine).error(exc)
            return
        if view.summary.id == self.case_id:
            await self._show(view)
            self.query_one(StatusLine).info(
                "This is still your case in this queue: decide it to take the next one."
            )
            return
        self.app.switch_screen(CaseScreen(self.backend, view.summary.id, view))
