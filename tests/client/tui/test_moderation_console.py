"""The moderation console driven with Pilot against a real relay on loopback (issue 11):
queue → case → reveal → decide, with real accounts, a real report and real roles.

The snapshot of the case view alone uses a backend built from fixed protocol structs, so
its names and times don't change between runs; it is UI-only. Every persona and message
is invented.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from textual.widgets import Static

from client.errors import ClientError
from client.relay import RelayClient
from client.tui.moderation import ModerationConsole
from client.tui.moderation.render import HIDDEN, duration
from client.tui.moderation.screens.case import CaseScreen
from client.tui.moderation.screens.cases import CasesScreen
from client.tui.moderation.screens.dialogs import (
    DecisionDialog,
    EscalationPreview,
    RevealDialog,
)
from client.tui.moderation.screens.queues import QueuesScreen
from client.tui.moderation.widgets.tables import CaseTable, QueueTable
from protocol.moderation import (
    CaseSummary,
    CaseView,
    DecisionCount,
    EvidenceItem,
    EvidenceRef,
    FindingView,
    ModOverviewResult,
    QueueSummary,
    SubjectView,
)
from tests.support import Relay, drain, grant, make_profile, open_clients, years_ago

SIZE = (120, 40)
ADULT, TEEN = years_ago(41), years_ago(15)
FIRST, SECOND = "you seem mature for your age", "don't tell your parents we talk"


# --- a real relay with one child-safety case --------------------------------------------------


@dataclass
class World:
    teen: RelayClient  # tia, 15
    adult: RelayClient  # vic, the reported adult
    cs_mod: RelayClient  # child_safety_moderator
    gen_mod: RelayClient  # moderator (general queue only)


async def send(client: RelayClient, to: str, text: str):
    message = await client.send(to, text)
    return await client.wait_accepted(message.msg_id)


@asynccontextmanager
async def reported_world(relay: Relay, tmp_path) -> AsyncIterator[World]:
    """Tia (15) and Vic (41) are contacts; Vic sends two messages; Tia reports him with
    both attached, which opens a case in the child_safety queue."""
    profiles = [
        await make_profile(tmp_path, relay.url, "tia", TEEN),
        await make_profile(tmp_path, relay.url, "vic", ADULT),
        await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38)),
        await make_profile(tmp_path, relay.url, "gen_mod", years_ago(35)),
    ]
    await grant(relay, "cs_mod", "child_safety_moderator")
    await grant(relay, "gen_mod", "moderator")
    async with open_clients(*profiles) as (t, v, c, m):
        await t.contact_request("vic")
        await v.respond("tia", accept=True)
        await drain(t), await drain(v)
        await send(v, "tia", FIRST)
        await send(v, "tia", SECOND)
        await drain(t)
        await t.report("vic", "he asks me to keep secrets", last=2)
        yield World(t, v, c, m)


# --- helpers ----------------------------------------------------------------------------------


async def settle(pilot, until, timeout: float = 10.0) -> None:
    """Let workers and the relay catch up until ``until()`` holds (or fail saying so)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        await pilot.pause(0.05)
        try:
            if until():
                return
        except Exception:  # the screen may still be switching
            pass
    raise AssertionError(f"timed out waiting; screen text:\n{screen_text(pilot.app)}")


def screen_text(app) -> str:
    """Everything the current screen's Static widgets say, as plain text."""
    return "\n".join(str(s.render()) for s in app.screen.query(Static))


def status(app) -> str:
    return str(app.screen.query_one("#status", Static).render())


def queue_rows(app) -> dict[str, list[str]]:
    table = app.screen.query_one(QueueTable)
    return {str(key.value): [str(c) for c in table.get_row(key)] for key in table.rows}


def audit_rows(relay: Relay) -> list[tuple[str, str, str]]:
    with sqlite3.connect(relay.config.database_path) as db:
        return db.execute("SELECT actor, action, subject FROM audit ORDER BY id").fetchall()


async def refused(awaitable) -> str:
    with pytest.raises(ClientError) as info:
        await awaitable
    return info.value.code


# --- against the real relay -------------------------------------------------------------------


async def test_queue_case_reveal_and_restrict(relay, tmp_path):
    async with reported_world(relay, tmp_path) as world:
        app = ModerationConsole(world.cs_mod.moderation, moderator="cs_mod")
        async with app.run_test(size=SIZE) as pilot:
            # Queues: both, child_safety first, with one pending unassigned case.
            await settle(pilot, lambda: queue_rows(app))
            assert queue_rows(app) == {
                "child_safety": ["child_safety", "1", "1", "1"],
                "general": ["general", "2", "0", "0"],
            }
            await settle(pilot, lambda: "child_safety: 1" in screen_text(app))
            assert "No decisions yet." in screen_text(app)

            # Enter on the highlighted queue lists its cases.
            await pilot.press("enter")
            await settle(pilot, lambda: app.screen.query_one(CaseTable).row_count == 1)
            assert isinstance(app.screen, CasesScreen)
            assert "Queue child_safety: 1 open, 1 unassigned" in screen_text(app)

            # Enter on the case opens it: the subject in context, the finding, and the
            # evidence's metadata with its content hidden.
            await pilot.press("enter")
            await settle(pilot, lambda: "Vic (@vic)" in screen_text(app))
            screen = app.screen
            assert isinstance(screen, CaseScreen)
            text = screen_text(app)
            assert "adult (18 or over)" in text
            assert "Contacts: 1, of whom 1 under 18" in text
            assert "Restricted from minors: no" in text
            assert "reported by @tia" in text and "involves a minor" in text
            assert "“he asks me to keep secrets”" in text
            assert text.count("@vic → @tia") == 2
            assert f"{len(FIRST)} characters" in text
            assert text.count(HIDDEN) == 2
            assert FIRST not in text and SECOND not in text
            assert not any(a == "reveal" for _, a, _ in audit_rows(relay))
            # The screen's keys are in the command palette too, by name.
            commands = {c.title: c.help for c in app.get_system_commands(screen)}
            assert commands["Reveal"] == "Show the evidence's text (recorded) (R)"
            assert {"Back", "Decide", "Next case", "Refresh"} <= set(commands)
            assert "Hide" not in commands  # nothing to hide yet

            # R asks first (the safe choice is focused); Keep hidden reveals nothing.
            await pilot.press("r")
            await settle(pilot, lambda: isinstance(app.screen, RevealDialog))
            await pilot.press("enter")  # "Keep hidden"
            await settle(pilot, lambda: app.screen is screen)
            assert FIRST not in screen_text(app)
            # Then reveal for real: the text appears and the relay recorded the reveal.
            await pilot.press("r")
            await settle(pilot, lambda: isinstance(app.screen, RevealDialog))
            await pilot.click("#reveal-confirm")
            await settle(pilot, lambda: FIRST in screen_text(app))
            assert SECOND in screen_text(app) and HIDDEN not in screen_text(app)
            assert ("cs_mod", "reveal", "case:1") in audit_rows(relay)
            # H hides it again without asking the relay.
            await pilot.press("h")
            await settle(pilot, lambda: FIRST not in screen_text(app))
            assert screen_text(app).count(HIDDEN) == 2

            # D: restrict with a note; the button says what it will do.
            await pilot.press("d")
            await settle(pilot, lambda: isinstance(app.screen, DecisionDialog))
            dialog = app.screen
            await pilot.click("#action-restrict")
            await settle(
                pilot, lambda: "Restrict @vic" in str(dialog.query_one("#decide-confirm").label)
            )
            dialog.query_one("#note").focus()
            await pilot.press(*"grooming signs")
            await pilot.click("#decide-confirm")
            await settle(pilot, lambda: "Decision recorded" in status(app))
            assert "@vic restricted; case #1 is closed." in status(app)
            text = screen_text(app)
            assert "closed" in str(screen.query_one("#case-heading", Static).render())
            assert "Restricted from minors: yes" in text
            assert "@cs_mod  restrict  “grooming signs”" in text

            # The relay applied it: Vic's next message to Tia fails, and Tia is told.
            assert await refused(send(world.adult, "tia", "hello?")) == "sender_restricted"
            assert "contact_restricted" in [e.message.code for e in await drain(world.teen)]
            assert ("cs_mod", "decide:restrict", "vic") in audit_rows(relay)

            # Esc back: the queue is empty, then the queues and the overview count it.
            await pilot.press("escape")
            await settle(pilot, lambda: "No open cases in this queue." in status(app))
            assert app.screen.query_one(CaseTable).row_count == 0
            await pilot.press("escape")
            await settle(pilot, lambda: "@cs_mod: restrict 1" in screen_text(app))
            assert isinstance(app.screen, QueuesScreen)
            assert queue_rows(app)["child_safety"] == ["child_safety", "1", "0", "0"]
            assert "Median time to a first decision" in screen_text(app)


async def test_escalating_shows_the_report_first_and_writes_it_only_on_a_second_yes(
    relay, tmp_path
):
    cybertip = relay.config.data_dir / "outbox" / "cybertip"
    async with reported_world(relay, tmp_path) as world:
        app = ModerationConsole(world.cs_mod.moderation, moderator="cs_mod")
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: queue_rows(app))
            await pilot.press("enter")
            await settle(pilot, lambda: app.screen.query_one(CaseTable).row_count == 1)
            await pilot.press("enter")
            await settle(pilot, lambda: "Vic (@vic)" in screen_text(app))
            case_screen = app.screen

            async def choose_escalate() -> EscalationPreview:
                await pilot.press("d")
                await settle(pilot, lambda: isinstance(app.screen, DecisionDialog))
                await pilot.click("#action-escalate")
                await settle(
                    pilot,
                    lambda: "Escalate @vic" in str(app.screen.query_one("#decide-confirm").label),
                )
                app.screen.query_one("#note").focus()
                await pilot.press(*"enticement")
                await pilot.click("#decide-confirm")
                await settle(pilot, lambda: isinstance(app.screen, EscalationPreview))
                return app.screen

            # The report, as it would be written, with the evidence's text; recorded.
            preview = await choose_escalate()
            document = str(preview.query_one("#escalation-text", Static).render())
            assert "<chatImIncident>" in document and FIRST in document
            assert ("cs_mod", "preview_escalation", "case:1") in audit_rows(relay)
            # "Back" is focused: Enter writes nothing and decides nothing.
            await pilot.press("enter")
            await settle(pilot, lambda: app.screen is case_screen)
            assert "Not escalated: nothing was written." in status(app)
            assert not cybertip.exists() or not any(cybertip.iterdir())
            assert not any(a == "decide:escalate" for _, a, _ in audit_rows(relay))

            # The second yes writes it and closes the case.
            await choose_escalate()
            await pilot.click("#escalate-confirm")
            await settle(pilot, lambda: "Decision recorded" in status(app))
            assert "@vic escalated; case #1 is closed." in status(app)
            assert [p.name for p in cybertip.iterdir()] == ["1.xml"]
            assert FIRST in (cybertip / "1.xml").read_text()


async def test_next_case_takes_it_then_says_the_queue_is_empty(relay, tmp_path):
    async with reported_world(relay, tmp_path) as world:
        app = ModerationConsole(world.cs_mod.moderation, moderator="cs_mod")
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: queue_rows(app))
            await pilot.press("n")  # on the highlighted queue, child_safety
            await settle(pilot, lambda: "Vic (@vic)" in screen_text(app))
            heading = str(app.screen.query_one("#case-heading", Static).render())
            assert "Case #1" in heading and "assigned to @cs_mod" in heading
            # Decide by keyboard alone: D, Enter picks the first action (dismiss), Tab to
            # the note, Enter confirms.
            await pilot.press("d")
            await settle(pilot, lambda: isinstance(app.screen, DecisionDialog))
            await pilot.press("enter", "tab", *"no evidence", "enter")
            await settle(pilot, lambda: "Decision recorded" in status(app))
            assert "@vic dismissed" in status(app)
            # N again: nothing waits.
            await pilot.press("n")
            await settle(pilot, lambda: "[queue_empty]" in status(app))


async def test_a_moderator_without_the_child_safety_role_sees_only_general(relay, tmp_path):
    async with reported_world(relay, tmp_path) as world:
        app = ModerationConsole(world.gen_mod.moderation, moderator="gen_mod")
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: queue_rows(app))
            assert queue_rows(app) == {"general": ["general", "2", "0", "0"]}
            await settle(pilot, lambda: "general: 0" in screen_text(app))
            assert "child_safety" not in screen_text(app)
            # Opening the child-safety case by number is refused, and nothing of it shows.
            app.push_screen(CaseScreen(world.gen_mod.moderation, 1))
            await settle(pilot, lambda: "[forbidden]" in status(app))
            assert "vic" not in screen_text(app)

        # An account with no role at all: the refusal is on the queues screen.
        app = ModerationConsole(world.teen.moderation, moderator="tia")
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: "[forbidden]" in status(app))
            assert not queue_rows(app)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "no decisions yet"),
        (42.4, "42 s"),
        (754, "12 min"),
        (11_100, "3 h 5 min"),
        (97_200, "1 d 3 h"),
    ],
)
def test_median_time_in_words(seconds, words):
    assert duration(seconds) == words


# --- the snapshot: fixed structs, no relay ----------------------------------------------------

T0 = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)
CASE = CaseSummary(
    id=7,
    subject="vic",
    queue="child_safety",
    status="open",
    assignee="cs_mod",
    opened_at=T0,
    score=0.9,
    findings=2,
    sources=["refusals_to_minors", "user_report"],
)
EVIDENCE = [
    EvidenceItem(
        id=11,
        sender="vic",
        recipient="tia",
        mode="visible",
        sent_at=T0 - timedelta(minutes=9),
        franking="unverified",
        text=FIRST,
    ),
    EvidenceItem(
        id=12,
        sender="vic",
        recipient="tia",
        mode="visible",
        sent_at=T0 - timedelta(minutes=8),
        franking="unverified",
        text=SECOND,
    ),
]
VIEW = CaseView(
    summary=CASE,
    subject=SubjectView(
        handle="vic",
        display_name="Vic",
        band="adult",
        account_age_days=412,
        contacts=3,
        minor_contacts=1,
        restricted=False,
        suspended=False,
    ),
    findings=[
        FindingView(
            id=21,
            source="user_report",
            score=0.9,
            explanation="Reported by @tia (under 18): “he asks me to keep secrets”. "
            "2 message(s) attached.",
            reporter="tia",
            involves_minor=True,
            evidence=[11, 12],
            created_at=T0,
        ),
        FindingView(
            id=22,
            source="refusals_to_minors",
            score=0.4,
            explanation="3 attempts to contact minors were refused by the policy within 30 days.",
            reporter=None,
            involves_minor=True,
            evidence=[],
            created_at=T0 + timedelta(hours=2),
        ),
    ],
    evidence=[
        EvidenceRef(
            id=e.id,
            sender=e.sender,
            recipient=e.recipient,
            mode=e.mode,
            sent_at=e.sent_at,
            franking=e.franking,
            chars=len(e.text),
        )
        for e in EVIDENCE
    ],
    decisions=[],
    prior_cases=[
        CaseSummary(
            id=3,
            subject="vic",
            queue="general",
            status="closed",
            assignee="gen_mod",
            opened_at=T0 - timedelta(days=40),
            score=0.5,
            findings=1,
            sources=["user_report"],
        )
    ],
)


class FixedBackend:
    """The same answers every time, for a stable picture; it refuses a reveal so that a
    snapshot could never show content by accident."""

    async def queues(self) -> list[QueueSummary]:
        return [
            QueueSummary(name="child_safety", priority=1, pending=1, unassigned=0),
            QueueSummary(name="general", priority=2, pending=0, unassigned=0),
        ]

    async def queue(self, name: str) -> list[CaseSummary]:
        return [CASE] if name == "child_safety" else []

    async def next_case(self, queue: str) -> CaseView:
        return VIEW

    async def case(self, case_id: int) -> CaseView:
        return VIEW

    async def reveal(self, case_id: int) -> list[EvidenceItem]:
        raise ClientError("forbidden")

    async def decide(self, case_id: int, action: str, note: str) -> str:
        raise ClientError("forbidden")

    async def overview(self) -> ModOverviewResult:
        return ModOverviewResult(
            rid="fixed",
            queues=await self.queues(),
            decisions=[DecisionCount(moderator="gen_mod", action="dismiss", count=4)],
            median_seconds_to_decision=3900.0,
        )


def test_case_view_with_content_hidden(snap_compare):
    app = ModerationConsole(FixedBackend(), moderator="cs_mod")

    async def open_next_case(pilot) -> None:
        for _ in range(100):
            await pilot.pause(0.02)
            if app.screen.query(QueueTable) and app.screen.query_one(QueueTable).row_count:
                break
        await pilot.press("n")
        for _ in range(100):
            await pilot.pause(0.02)
            if isinstance(app.screen, CaseScreen) and app.screen.view is not None:
                break
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=open_next_case)
