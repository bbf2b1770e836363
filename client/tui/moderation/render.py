"""Plain words for what a moderator sees: pure functions from the protocol's structs to
rich ``Text``, so the widgets stay thin and the wording is in one place.

Times are shown as absolute UTC minutes ("2026-05-04 16:00 UTC"), never "3 minutes ago":
a moderator compares them with each other and with the audit log, and the screen doesn't
change while it's being read. Everything the relay sends is someone else's text (display
names, report reasons inside explanations, notes, revealed messages, and even handles and
queue names): it goes through ``client.cli.printable`` (control characters shown as ``\x1b``
escapes, never sent to the terminal) and into ``Text`` as a plain string, never as markup.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

from client.cli import printable
from client.explain import BAND_WORDS
from protocol.moderation import (
    Action,
    CaseSummary,
    CaseView,
    DecisionCount,
    DecisionView,
    EvidenceItem,
    EvidenceRef,
    FindingView,
    ModOverviewResult,
    QueueSummary,
    SubjectView,
)

HIDDEN = "hidden — press R to reveal; each reveal is recorded"

#: What each action does, shown in the decision dialog (docs/MODERATION.md "Actions").
ACTION_EFFECTS: dict[Action, str] = {
    "dismiss": "Close the case with no action against the account.",
    "warn": "Close the case and send the account a warning notice (your note stays internal).",
    "restrict": "Close the case; the account can no longer message, request or find any "
    "minor, including minors already in its contacts, who are told.",
    "suspend": "Close the case; the account can't log in (an open connection is closed). "
    "Messages to it are kept and delivered after reinstatement.",
    "reinstate": "Lift a suspension and a moderator's restriction; the account is told. "
    "The case stays as it is.",
    "escalate": "Close the case and draft a CyberTipline report from it into the relay's "
    "outbox (never sent by the prototype). You see the report before it is written.",
}

SOURCE_WORDS = {
    "user_report": "user report",
    "restriction": "automatic restriction",
    "refusals_to_minors": "refused attempts to contact minors",
}

FRANKING_WORDS = {
    "verified": "franking verified",
    "unverified": "unverified (the reporter's copy)",
}


def plain(text: str, style: str = "") -> Text:
    """Someone else's text as literal ``Text``: control characters escaped, no markup."""
    return Text(printable(text), style=style)


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    """A median wait in the largest two units that matter: "45 s", "12 min", "3 h 5 min"."""
    if seconds is None:
        return "no decisions yet"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 3600:
        return f"{minutes} min"
    if s < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def band(name: str) -> str:
    words = BAND_WORDS.get(name)
    return f"{name} ({words})" if words else printable(name)


def source(name: str) -> str:
    return SOURCE_WORDS.get(name) or printable(name.replace("_", " "))


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# --- cases ----------------------------------------------------------------------------------


def case_heading(summary: CaseSummary) -> Text:
    status_style = "bold green" if summary.status == "open" else "bold"
    return Text.assemble(
        (f"Case #{summary.id}", "bold"),
        f"  ·  queue {printable(summary.queue)}  ·  ",
        (printable(summary.status), status_style),
        "  ·  ",
        f"assigned to @{printable(summary.assignee)}" if summary.assignee else "unassigned",
        f"  ·  opened {when(summary.opened_at)}  ·  score {summary.score:.2f}",
    )


def subject_text(subject: SubjectView) -> Text:
    minors = subject.minor_contacts
    text = Text.assemble(
        (printable(subject.display_name), "bold"),
        f" (@{printable(subject.handle)})\n",
        f"Age group: {band(subject.band)}   ·   account {subject.account_age_days} days old\n",
        f"Contacts: {subject.contacts}, of whom {minors} under 18",
    )
    if minors:
        text.stylize("bold yellow", len(text) - len(f"{minors} under 18"))
    text.append("\nRestricted from minors: ")
    text.append(yes_no(subject.restricted), "bold red" if subject.restricted else "")
    text.append("   ·   Suspended: ")
    text.append(yes_no(subject.suspended), "bold red" if subject.suspended else "")
    return text


def prior_text(view: CaseView) -> Text:
    if not view.prior_cases:
        return Text("No prior cases.", style="dim")
    text = Text()
    for i, prior in enumerate(view.prior_cases):
        if i:
            text.append("\n")
        text.append(
            f"#{prior.id}  {printable(prior.queue)}  {printable(prior.status)}  "
            f"opened {when(prior.opened_at)}  "
            f"score {prior.score:.2f}  {', '.join(source(s) for s in prior.sources)}"
        )
    return text


def decisions_text(decisions: list[DecisionView]) -> Text:
    if not decisions:
        return Text("No decisions yet.", style="dim")
    text = Text()
    for i, d in enumerate(decisions):
        if i:
            text.append("\n")
        text.append(f"{when(d.decided_at)}  @{printable(d.moderator)}  ")
        text.append(printable(d.action), "bold")
        if d.note:
            text.append(f"  “{printable(d.note)}”")
    return text


def finding_text(finding: FindingView) -> Text:
    text = Text.assemble(
        (source(finding.source), "bold"),
        f"  ·  score {finding.score:.2f}  ·  {when(finding.created_at)}",
    )
    if finding.reporter:
        text.append(f"  ·  reported by @{printable(finding.reporter)}")
    if finding.involves_minor:
        text.append("  ·  ")
        text.append("involves a minor", "bold yellow")
    if finding.evidence:
        ids = ", ".join(f"#{e}" for e in finding.evidence)
        text.append(f"  ·  evidence {ids}")
    text.append("\n")
    text.append(printable(finding.explanation))
    return text


def evidence_heading(ref: EvidenceRef | EvidenceItem, chars: int) -> Text:
    franking_style = "green" if ref.franking == "verified" else "yellow"
    return Text.assemble(
        (f"#{ref.id}", "bold"),
        f"  @{printable(ref.sender)} → @{printable(ref.recipient)}  ·  {when(ref.sent_at)}  ·  "
        f"{printable(ref.mode)}  ·  ",
        (FRANKING_WORDS[ref.franking], franking_style),
        f"  ·  {chars} characters",
    )


def evidence_text(ref: EvidenceRef, revealed: EvidenceItem | None) -> Text:
    text = evidence_heading(ref, ref.chars)
    text.append("\n")
    if revealed is None:
        text.append(HIDDEN, "dim italic")
    else:
        text.append(printable(revealed.text))
    return text


# --- queues and the overview ----------------------------------------------------------------


def queues_text(queues: list[QueueSummary]) -> Text:
    if not queues:
        return Text("No queues.", style="dim")
    return Text("   ".join(f"{printable(q.name)}: {q.pending}" for q in queues))


def decision_counts_text(decisions: list[DecisionCount]) -> Text:
    if not decisions:
        return Text("No decisions yet.", style="dim")
    by_moderator: dict[str, list[str]] = {}
    for d in decisions:
        by_moderator.setdefault(d.moderator, []).append(f"{printable(d.action)} {d.count}")
    text = Text()
    for i, (moderator, counts) in enumerate(by_moderator.items()):
        if i:
            text.append("\n")
        text.append(f"@{printable(moderator)}: ", "bold")
        text.append(", ".join(counts))
    return text


def overview_text(overview: ModOverviewResult) -> Text:
    return Text.assemble(
        ("Pending by queue\n", "bold underline"),
        queues_text(overview.queues),
        ("\n\nDecisions by moderator and action\n", "bold underline"),
        decision_counts_text(overview.decisions),
        ("\n\nMedian time to a first decision\n", "bold underline"),
        duration(overview.median_seconds_to_decision),
    )
