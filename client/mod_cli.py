"""`agechat mod …` and `agechat moderate`: the moderator's commands (docs/MODERATION.md).

Every one is a signed moderation request through the client library (PROTOCOL.md §6.5).
With ``--json`` they print the protocol's own structs as JSON (times ISO 8601, UTC);
without, plain text in which evidence content appears only after `mod reveal`.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import msgspec

from client.cli import Options, command, connected_client, emit, iso, printable
from client.errors import ClientError
from client.guardian_words import guardian_lines
from protocol.moderation import ACTIONS, CaseSummary, CaseView, EvidenceItem, QueueSummary


def _json(value: object) -> Any:
    return msgspec.to_builtins(value, enc_hook=str)


def _when(value: object) -> str:
    return (iso(value) or "") if value is not None else ""  # type: ignore[arg-type]


def _queues_text(queues: list[QueueSummary]) -> str:
    if not queues:
        return "No queues you can see."
    lines = [f"{'queue':14} {'priority':>8} {'pending':>8} {'unassigned':>10}"]
    lines += [f"{q.name:14} {q.priority:>8} {q.pending:>8} {q.unassigned:>10}" for q in queues]
    return "\n".join(lines)


def _case_line(c: CaseSummary) -> str:
    who = f"@{c.assignee}" if c.assignee else "unassigned"
    return (
        f"#{c.id}  @{c.subject}  score {c.score:.2f}  {c.findings} finding(s)  "
        f"{', '.join(c.sources)}  {c.status}, {who}  opened {_when(c.opened_at)}"
    )


def _case_text(case: CaseView) -> str:
    s, sub = case.summary, case.subject
    lines = [
        f"Case #{s.id} · queue {s.queue} · {s.status} · "
        + (f"assigned to @{s.assignee}" if s.assignee else "unassigned"),
        f"Subject: {printable(sub.display_name)} (@{sub.handle}), {sub.band}, account "
        f"{sub.account_age_days} days old; {sub.contacts} contact(s), {sub.minor_contacts} "
        f"under 18; restricted: {'yes' if sub.restricted else 'no'}; suspended: "
        f"{'yes' if sub.suspended else 'no'}",
        "",
        "Findings:",
    ]
    for f in case.findings:
        by = f", reported by @{f.reporter}" if f.reporter else ""
        lines.append(f"  {f.source} (score {f.score:.2f}{by}): {printable(f.explanation)}")
    lines += ["", f"Evidence (content hidden — `agechat mod reveal {s.id}` to show it; audited):"]
    lines += [
        f"  #{e.id} @{e.sender} → @{e.recipient} {_when(e.sent_at)} {e.mode}, franking "
        f"{e.franking}, {e.chars} characters"
        for e in case.evidence
    ] or ["  none"]
    lines += ["", "Decisions:"]
    lines += [
        f"  {_when(d.decided_at)} @{d.moderator}: {d.action}"
        + (f" — {printable(d.note)}" if d.note else "")
        for d in case.decisions
    ] or ["  none"]
    lines += ["", "Prior cases:"]
    lines += [f"  {_case_line(p)}" for p in case.prior_cases] or ["  none"]
    if guardians := guardian_lines(case.guardians, printable):
        lines += ["", "Guardian links (issue 16):", *guardians]
    return "\n".join(lines)


def _evidence_text(items: list[EvidenceItem]) -> str:
    if not items:
        return "No evidence in this case."
    return "\n".join(
        f"#{i.id} @{i.sender} → @{i.recipient} {_when(i.sent_at)} ({i.mode}, franking "
        f"{i.franking}):\n    {printable(i.text)}"
        for i in items
    )


@click.group("mod")
def mod() -> None:
    """Moderators: review queues and cases, reveal evidence, decide (needs a role)."""


@mod.command("queue")
@click.argument("name", required=False)
@command
async def mod_queue(options: Options, name: str | None) -> None:
    """Without NAME: the queues you can see, with pending counts. With NAME: its open cases,
    highest score first."""
    async with connected_client(options) as client:
        if name is None:
            queues = await client.moderation.queues()
            emit(options, {"queues": _json(queues)}, _queues_text(queues))
            return
        cases = await client.moderation.queue(name)
    text = "\n".join(_case_line(c) for c in cases) or f"No open cases in {name}."
    emit(options, {"queue": name, "cases": _json(cases)}, text)


@mod.command("next")
@click.argument("name")
@command
async def mod_next(options: Options, name: str) -> None:
    """Take the next case of queue NAME (or the one you already hold there)."""
    async with connected_client(options) as client:
        case = await client.moderation.next_case(name)
    emit(options, {"case": _json(case)}, _case_text(case))


@mod.command("case")
@click.argument("case_id", metavar="ID", type=int)
@command
async def mod_case(options: Options, case_id: int) -> None:
    """Case ID in full, its evidence's content hidden."""
    async with connected_client(options) as client:
        case = await client.moderation.case(case_id)
    emit(options, {"case": _json(case)}, _case_text(case))


@mod.command("reveal")
@click.argument("case_id", metavar="ID", type=int)
@command
async def mod_reveal(options: Options, case_id: int) -> None:
    """Show case ID's evidence content. Each reveal is written to the audit log."""
    async with connected_client(options) as client:
        items = await client.moderation.reveal(case_id)
    emit(options, {"case_id": case_id, "items": _json(items)}, _evidence_text(items))


@mod.command("decide")
@click.argument("case_id", metavar="ID", type=int)
@click.option("--action", type=click.Choice(ACTIONS), required=True)
@click.option(
    "--note",
    default="",
    help="Why: internal, kept with the decision and in the audit log; never shown to the account.",
)
@command
async def mod_decide(options: Options, case_id: int, action: str, note: str) -> None:
    """Act on case ID's subject: dismiss, warn, restrict (from all contact with minors),
    suspend, reinstate, or escalate (drafts a CyberTipline report on the relay host, never
    sent). Signed and audited."""
    async with connected_client(options) as client:
        outcome = await client.moderation.decide(case_id, action, note)  # type: ignore[arg-type]
    emit(
        options,
        {"case_id": case_id, "action": action, "outcome": outcome},
        f"Case #{case_id}: {outcome}.",
    )


@mod.command("preview")
@click.argument("case_id", metavar="ID", type=int)
@click.option("--note", default="", help="The note escalate would carry (internal).")
@command
async def mod_preview(options: Options, case_id: int, note: str) -> None:
    """Show the CyberTipline draft `decide --action escalate` would write for case ID now,
    without writing it. It holds the evidence's content: audited like a reveal."""
    async with connected_client(options) as client:
        document = await client.moderation.preview_escalation(case_id, note)
    lines = (printable(line) for line in document.splitlines())  # the layout stays as is
    emit(options, {"case_id": case_id, "document": document}, "\n".join(lines))


@mod.command("overview")
@command
async def mod_overview(options: Options) -> None:
    """Pending by queue, decisions by moderator and action, median time to a decision."""
    async with connected_client(options) as client:
        result = await client.moderation.overview()
    median = result.median_seconds_to_decision
    lines = [_queues_text(result.queues), "", "Decisions:"]
    lines += [f"  @{d.moderator} {d.action}: {d.count}" for d in result.decisions] or ["  none"]
    lines.append(
        "Median time to a first decision: "
        + (f"{median:.0f} s" if median is not None else "no decisions yet")
    )
    emit(
        options,
        {
            "queues": _json(result.queues),
            "decisions": _json(result.decisions),
            "median_seconds_to_decision": median,
        },
        "\n".join(lines),
    )


@click.command("moderate")
@command
async def moderate(options: Options) -> None:
    """The moderator console (a Textual app) as this profile's account."""
    try:
        from client.tui.moderation.console import ModerationConsole
    except ImportError as exc:
        raise ClientError(
            "console_unavailable", f"The moderator console could not be loaded ({exc})."
        ) from None
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise ClientError(
            "no_terminal", "The console needs a terminal; `agechat mod` scripts the same steps."
        )
    async with connected_client(options) as client:
        await ModerationConsole(client.moderation, moderator=client.handle).run_async()
