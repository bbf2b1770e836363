"""`agechat mod …` in subprocesses against a real relay: every command with --json, the
refusals, and content hidden until revealed (issue 11).

One relay for the module: the tests share one child-safety case (#1, about vic) and none of
them depends on another having run, or not, before it.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import pytest
import pytest_asyncio
from click.testing import CliRunner

from server.admin.roles import change_role
from server.app_keys import SAFETY
from tests.e2e.test_cli import agechat
from tests.support import PASSPHRASE, Relay, drain, make_profile, open_clients, years_ago

SECRET_WORDS = "keep this between us"
CASE = "1"

on_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory):
    """A child-safety case about vic (reported by tia, 15, with his message), a moderator
    with the child-safety role, one with the plain moderator role, and an account with no
    role."""
    base = tmp_path_factory.mktemp("mod")
    relay = await Relay(base / "relay").start()
    teen = await make_profile(base, relay.url, "tia", years_ago(15))
    adult = await make_profile(base, relay.url, "vic", years_ago(40))
    for handle in ("cs_mod", "gen_mod", "nobody_in_particular"):
        await make_profile(base, relay.url, handle, years_ago(35))
    async with open_clients(teen, adult) as (t, v):
        await t.contact_request("vic")
        await v.respond("tia", accept=True)
        message = await v.send("tia", SECRET_WORDS)
        await v.wait_accepted(message.msg_id)
        await drain(t)
        await t.report("vic", "asks me to keep secrets", last=1)
    await change_role(relay.config.data_dir, "cs_mod", "child_safety_moderator", grant=True)
    await change_role(relay.config.data_dir, "gen_mod", "moderator", grant=True)
    await relay.app[SAFETY].load()
    yield base
    await relay.stop()


async def mod(base, handle: str, *args: str) -> tuple[int, dict, str]:
    rc, out, err = await agechat(
        "--profile", str(base / handle), "--json", "mod", *args, passphrase=PASSPHRASE
    )
    return rc, json.loads(out) if out.strip() else {}, err


def is_iso(value: str) -> bool:
    return value.endswith("Z") and datetime.fromisoformat(value).tzinfo is not None


@on_module_loop
async def test_every_mod_command_with_json(world):
    base = world
    rc, out, err = await mod(base, "cs_mod", "queue")
    assert rc == 0, err
    assert set(out) == {"queues"}
    assert {q["name"]: q["pending"] for q in out["queues"]} == {"child_safety": 1, "general": 0}
    assert set(out["queues"][0]) == {"name", "priority", "pending", "unassigned"}

    rc, out, _ = await mod(base, "cs_mod", "queue", "child_safety")
    assert rc == 0 and set(out) == {"queue", "cases"} and out["queue"] == "child_safety"
    (case,) = out["cases"]
    assert (case["subject"], case["status"], case["sources"]) == ("vic", "open", ["user_report"])
    assert is_iso(case["opened_at"])
    case_id = case["id"]
    assert str(case_id) == CASE

    rc, out, _ = await mod(base, "cs_mod", "next", "child_safety")
    assert rc == 0 and set(out) == {"case"}
    assert out["case"]["summary"]["id"] == case_id
    assert out["case"]["summary"]["assignee"] == "cs_mod"

    rc, out, _ = await mod(base, "cs_mod", "case", CASE)
    assert rc == 0 and set(out) == {"case"}
    view = out["case"]
    assert set(view) == {
        "summary",
        "subject",
        "findings",
        "evidence",
        "decisions",
        "prior_cases",
        "guardians",
    }
    # vic has no guardian links: the context is there, empty.
    assert view["guardians"] == {
        "guardians": [],
        "wards": [],
        "pending_approvals": [],
        "activity": [],
    }
    assert view["subject"]["handle"] == "vic" and view["subject"]["band"] == "adult"
    assert view["subject"]["minor_contacts"] == 1
    (finding,) = view["findings"]
    assert finding["source"] == "user_report" and finding["reporter"] == "tia"
    (evidence,) = view["evidence"]
    assert (evidence["sender"], evidence["recipient"]) == ("vic", "tia")
    assert evidence["chars"] == len(SECRET_WORDS) and is_iso(evidence["sent_at"])
    assert "text" not in evidence
    assert SECRET_WORDS not in json.dumps(out)  # hidden until revealed

    rc, out, _ = await mod(base, "cs_mod", "reveal", CASE)
    assert rc == 0 and set(out) == {"case_id", "items"} and out["case_id"] == case_id
    assert [(i["sender"], i["recipient"], i["text"]) for i in out["items"]] == [
        ("vic", "tia", SECRET_WORDS)
    ]

    rc, out, _ = await mod(base, "cs_mod", "preview", CASE, "--note", "grooming signs")
    assert rc == 0 and set(out) == {"case_id", "document"} and out["case_id"] == case_id
    assert out["document"].startswith("<?xml") and SECRET_WORDS in out["document"]

    rc, out, _ = await mod(
        base, "cs_mod", "decide", CASE, "--action", "restrict", "--note", "grooming signs"
    )
    assert rc == 0 and out == {"case_id": case_id, "action": "restrict", "outcome": "restricted"}

    rc, out, _ = await mod(base, "cs_mod", "case", CASE)
    assert out["case"]["summary"]["status"] == "closed" and out["case"]["subject"]["restricted"]
    (decision,) = out["case"]["decisions"]
    assert (decision["moderator"], decision["action"], decision["note"]) == (
        "cs_mod",
        "restrict",
        "grooming signs",
    )
    assert is_iso(decision["decided_at"])

    rc, out, _ = await mod(base, "cs_mod", "overview")
    assert rc == 0 and set(out) == {"queues", "decisions", "median_seconds_to_decision"}
    assert out["decisions"] == [{"moderator": "cs_mod", "action": "restrict", "count": 1}]
    assert out["median_seconds_to_decision"] is not None

    # A closed case takes no further decision but reinstate.
    rc, out, _ = await mod(base, "cs_mod", "decide", CASE, "--action", "dismiss")
    assert rc == 1 and out["error"]["code"] == "case_closed"


@on_module_loop
async def test_refusals_have_their_codes(world):
    base = world
    for args in (("queue",), ("case", CASE), ("reveal", CASE)):
        rc, out, _ = await mod(base, "nobody_in_particular", *args)
        assert rc == 1 and out["error"]["code"] == "forbidden", args
        assert out["error"]["message"]
    # A plain moderator sees only the general queue, and not the child-safety case.
    rc, out, _ = await mod(base, "gen_mod", "queue")
    assert rc == 0 and [q["name"] for q in out["queues"]] == ["general"]
    for args in (("case", CASE), ("reveal", CASE), ("queue", "child_safety")):
        rc, out, _ = await mod(base, "gen_mod", *args)
        assert rc == 1 and out["error"]["code"] == "forbidden", args

    rc, out, _ = await mod(base, "cs_mod", "case", "9999")
    assert rc == 1 and out["error"]["code"] == "unknown_case"
    rc, out, _ = await mod(base, "cs_mod", "queue", "no_such_queue")
    assert rc == 1 and out["error"]["code"] == "unknown_queue"
    rc, out, _ = await mod(base, "cs_mod", "next", "general")
    assert rc == 1 and out["error"]["code"] == "queue_empty"
    # Not an action: a usage error (exit 2) before anything is sent.
    rc, _, _ = await mod(base, "cs_mod", "decide", CASE, "--action", "ban")
    assert rc == 2


@on_module_loop
async def test_the_human_case_view_hides_content_until_revealed(world):
    args = ("--profile", str(world / "cs_mod"), "mod")
    rc, out, _ = await agechat(*args, "case", CASE, passphrase=PASSPHRASE)
    assert rc == 0
    assert f"Case #{CASE} · queue child_safety" in out
    assert "Subject: Vic (@vic), adult" in out and "1 under 18" in out
    assert "user_report (score" in out and "reported by @tia" in out
    assert "@vic → @tia" in out and f"{len(SECRET_WORDS)} characters" in out
    assert "content hidden" in out and f"`agechat mod reveal {CASE}`" in out
    assert SECRET_WORDS not in out
    rc, out, _ = await agechat(*args, "reveal", CASE, passphrase=PASSPHRASE)
    assert rc == 0 and SECRET_WORDS in out


@on_module_loop
async def test_the_console_without_a_terminal_says_so(world):
    rc, out, _ = await agechat(
        "--profile", str(world / "cs_mod"), "--json", "moderate", passphrase=PASSPHRASE
    )
    assert rc == 1 and json.loads(out)["error"]["code"] == "no_terminal"


def test_the_console_missing_is_an_error_not_a_traceback(tmp_path, monkeypatch):
    from launcher.cli import cli

    monkeypatch.setitem(sys.modules, "client.tui.moderation.console", None)  # import fails
    result = CliRunner().invoke(cli, ["--profile", str(tmp_path), "--json", "moderate"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["error"]["code"] == "console_unavailable"
