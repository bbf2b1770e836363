"""The moderation console never lets other people's text drive the moderator's terminal:
control characters (ESC, C1 CSI, BEL, …) are shown as ``\\x1b``-style escapes and Rich
markup is shown as the brackets it is, in reported messages, report reasons, notes and
names alike.

Driven with Pilot against a real relay on loopback with the real client library, like
test_moderation_console; then render-level checks with protocol structs for what the relay
now refuses on the wire (a control character in a reason or note, in a display name), as
an old database or another relay could still hold it. Every persona and message is invented.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from rich.text import Text
from textual.widgets import Static

from client.errors import ClientError
from client.tui.moderation import ModerationConsole
from client.tui.moderation.render import (
    case_heading,
    decision_counts_text,
    decisions_text,
    evidence_text,
    finding_text,
    prior_text,
    queues_text,
    subject_text,
)
from client.tui.moderation.screens.case import CaseScreen
from client.tui.moderation.screens.dialogs import DecisionDialog, RevealDialog
from client.tui.moderation.widgets.tables import CaseTable
from protocol.moderation import (
    CaseSummary,
    CaseView,
    DecisionCount,
    DecisionView,
    EvidenceItem,
    EvidenceRef,
    FindingView,
    QueueSummary,
    SubjectView,
)
from tests.client.tui.test_moderation_console import (
    ADULT,
    SIZE,
    TEEN,
    grant,
    queue_rows,
    screen_text,
    send,
    settle,
    status,
)
from tests.support import drain, make_profile, open_clients, years_ago

MARKUP = "[bold red]x[/]"
#: A message that would clear the moderator's screen and recolour it if printed raw.
EVIL = f"wipe \x1b[2J now \x9b31m red {MARKUP} end"
EVIL_SHOWN = f"wipe \\x1b[2J now \\x9b31m red {MARKUP} end"
RAW_CONTROLS = ("\x1b", "\x9b", "\x07")


def shown(app) -> str:
    text = screen_text(app)
    assert not any(c in text for c in RAW_CONTROLS), repr(text)
    return text


def no_raw_controls_on_screen(app) -> None:
    """Nothing the console would draw (its screenshot, all cells) holds a raw control."""
    picture = app.export_screenshot()
    assert not any(c in picture for c in RAW_CONTROLS)


# --- against the real relay -------------------------------------------------------------------


async def test_reported_text_and_reason_are_shown_escaped_and_literal(relay, tmp_path):
    profiles = [
        await make_profile(tmp_path, relay.url, "tia", TEEN),
        await make_profile(tmp_path, relay.url, "vic", ADULT),
        await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38)),
    ]
    await grant(relay, "cs_mod", "child_safety_moderator")
    async with open_clients(*profiles) as (tia, vic, cs_mod):
        await tia.contact_request("vic")
        await vic.respond("tia", accept=True)
        await drain(tia), await drain(vic)
        await send(vic, "tia", EVIL)
        await drain(tia)

        # The relay refuses a reason with a control character (and opens nothing) …
        for bad in ("\x1b[2J", "\x9b31m", f"secrets {MARKUP}\x07"):
            with pytest.raises(ClientError) as info:
                await tia.report("vic", bad, last=1)
            assert info.value.code == "invalid_frame"
        assert await cs_mod.moderation.queue("child_safety") == []
        # … and takes one with markup-like brackets and any script, attached evidence and all.
        reason = f"he sent {MARKUP} שלום 😡"
        await tia.report("vic", reason, last=1)
        # A finding written before the relay refused control characters (an old database).
        with sqlite3.connect(relay.config.database_path) as db:
            db.execute(
                "UPDATE findings SET explanation = explanation || ?",
                (" Old note: \x1b[2J\x9b31m\x07 [bold]b[/bold]",),
            )

        app = ModerationConsole(cs_mod.moderation, moderator="cs_mod")
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, lambda: queue_rows(app))
            await pilot.press("enter")
            await settle(pilot, lambda: app.screen.query_one(CaseTable).row_count == 1)
            await pilot.press("enter")
            await settle(pilot, lambda: "reported by @tia" in shown(app))
            assert isinstance(app.screen, CaseScreen)

            # The reason is quoted as typed: brackets and all, never turned into style.
            text = shown(app)
            assert f"“{reason}”" in text
            assert "Old note: \\x1b[2J\\x9b31m\\x07 [bold]b[/bold]" in text
            findings = app.screen.query_one("#findings", Static).render()
            assert not any("red" in str(span.style) for span in getattr(findings, "spans", []))
            no_raw_controls_on_screen(app)

            # Revealed evidence: the escape sequence is shown as an escape, the markup as text.
            await pilot.press("r")
            await settle(pilot, lambda: isinstance(app.screen, RevealDialog))
            await pilot.click("#reveal-confirm")
            await settle(pilot, lambda: EVIL_SHOWN in shown(app))
            no_raw_controls_on_screen(app)

            # A note with markup in it: recorded and shown literally.
            await pilot.press("d")
            await settle(pilot, lambda: isinstance(app.screen, DecisionDialog))
            await pilot.click("#action-dismiss")
            app.screen.query_one("#note").focus()
            await pilot.press(*"[bold]fine[/]")
            await pilot.click("#decide-confirm")
            await settle(pilot, lambda: "Decision recorded" in status(app))
            assert "@cs_mod  dismiss  “[bold]fine[/]”" in shown(app)

            # A note stored before the rule (an old database), on the next refresh.
            with sqlite3.connect(relay.config.database_path) as db:
                db.execute("UPDATE decisions SET note = ?", ("ok\x1b]0;pwned\x07 [red]",))
            await pilot.press("f5")
            await settle(pilot, lambda: "“ok\\x1b]0;pwned\\x07 [red]”" in shown(app))
            no_raw_controls_on_screen(app)

        # A moderator's note with a control character is refused by the relay; a newline
        # is fine. (The case above is closed: a new report opens a new one.)
        await tia.report("vic", "still at it", last=0)
        [case] = await cs_mod.moderation.queue("child_safety")
        with pytest.raises(ClientError) as info:
            await cs_mod.moderation.decide(case.id, "dismiss", "bell\x07")
        assert info.value.code == "invalid_frame"
        assert await cs_mod.moderation.decide(case.id, "dismiss", "two\nlines") == "dismissed"


# --- what the relay no longer lets in, from protocol structs ----------------------------------

T0 = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)
NASTY = f"a\x1b[2Jb\x9bc\x07d\x00e\x7ff {MARKUP}"
NASTY_SHOWN = f"a\\x1b[2Jb\\x9bc\\x07d\\x00e\\x7ff {MARKUP}"


def literal(text: Text) -> str:
    """The text, after checking nothing in it is a raw control or a style from its words."""
    plain = text.plain
    assert not any(c in plain for c in (*RAW_CONTROLS, "\x00", "\x7f")), repr(plain)
    assert not any("red" in str(span.style) for span in text.spans)
    return plain


def test_every_rendered_field_escapes_controls_and_keeps_markup_literal():
    summary = CaseSummary(
        id=7,
        subject="vic",
        queue=f"q{NASTY}",
        status="open",
        assignee=f"m{NASTY}",
        opened_at=T0,
        score=0.5,
        findings=1,
        sources=[f"s{NASTY}"],
    )
    subject = SubjectView(
        handle="vic",
        display_name=f"Vic {NASTY}",
        band=f"b{NASTY}",
        account_age_days=1,
        contacts=1,
        minor_contacts=0,
        restricted=False,
        suspended=False,
    )
    finding = FindingView(
        id=1,
        source=f"src{NASTY}",
        score=0.9,
        explanation=f"Reported by @tia: “{NASTY}”.",
        reporter="tia",
        involves_minor=False,
        evidence=[1],
        created_at=T0,
    )
    ref = EvidenceRef(
        id=1,
        sender="vic",
        recipient="tia",
        mode="visible",
        sent_at=T0,
        franking="unverified",
        chars=len(NASTY),
    )
    item = EvidenceItem(
        id=1,
        sender="vic",
        recipient="tia",
        mode="visible",
        sent_at=T0,
        franking="unverified",
        text=f"{NASTY}\nsecond line",
    )
    decision = DecisionView(moderator="cs_mod", action="warn", note=f"note {NASTY}", decided_at=T0)
    view = CaseView(
        summary=summary,
        subject=subject,
        findings=[finding],
        evidence=[ref],
        decisions=[decision],
        prior_cases=[summary],
    )

    assert f"queue q{NASTY_SHOWN}" in literal(case_heading(summary))
    assert f"assigned to @m{NASTY_SHOWN}" in literal(case_heading(summary))
    assert f"Vic {NASTY_SHOWN} (@vic)" in literal(subject_text(subject))
    assert f"b{NASTY_SHOWN}" in literal(subject_text(subject))
    rendered = literal(finding_text(finding))
    assert f"“{NASTY_SHOWN}”" in rendered and f"src{NASTY_SHOWN}" in rendered
    # Newlines stay, indented as the CLI shows them; everything else is escaped.
    assert f"{NASTY_SHOWN}\n    second line" in literal(evidence_text(ref, item))
    assert f"“note {NASTY_SHOWN}”" in literal(decisions_text([decision]))
    assert f"s{NASTY_SHOWN}" in literal(prior_text(view))
    assert f"q{NASTY_SHOWN}: 3" in literal(
        queues_text([QueueSummary(name=f"q{NASTY}", priority=1, pending=3, unassigned=0)])
    )
    counts = [DecisionCount(moderator="cs_mod", action="warn", count=2)]
    assert "@cs_mod: warn 2" in literal(decision_counts_text(counts))
