"""`agechat mod …` in subprocesses against a real relay: every command with --json, the
refusals, and content hidden until revealed (issue 11)."""

from __future__ import annotations

import json

import pytest_asyncio

from server.admin.roles import change_role
from server.app_keys import SAFETY
from tests.e2e.test_cli import agechat
from tests.support import PASSPHRASE, Relay, drain, make_profile, open_clients, years_ago

SECRET_WORDS = "keep this between us"


@pytest_asyncio.fixture
async def world(tmp_path):
    """A child-safety case about vic (reported by tia, 15, with his message), a moderator
    with the child-safety role, and an account with no role."""
    relay = await Relay(tmp_path / "relay").start()
    teen = await make_profile(tmp_path, relay.url, "tia", years_ago(15))
    adult = await make_profile(tmp_path, relay.url, "vic", years_ago(40))
    await make_profile(tmp_path, relay.url, "cs_mod", years_ago(38))
    await make_profile(tmp_path, relay.url, "nobody_in_particular", years_ago(30))
    async with open_clients(teen, adult) as (t, v):
        await t.contact_request("vic")
        await v.respond("tia", accept=True)
        message = await v.send("tia", SECRET_WORDS)
        await v.wait_accepted(message.msg_id)
        await drain(t)
        await t.report("vic", "asks me to keep secrets", last=1)
    await change_role(relay.config.data_dir, "cs_mod", "child_safety_moderator", grant=True)
    await relay.app[SAFETY].load()
    yield tmp_path, relay
    await relay.stop()


async def mod(base, handle: str, *args: str) -> tuple[int, dict, str]:
    rc, out, err = await agechat(
        "--profile", str(base / handle), "--json", "mod", *args, passphrase=PASSPHRASE
    )
    return rc, json.loads(out) if out.strip() else {}, err


async def test_every_mod_command_with_json(world):
    base, _relay = world
    rc, out, _ = await mod(base, "cs_mod", "queue")
    assert rc == 0
    assert {q["name"]: q["pending"] for q in out["queues"]} == {"child_safety": 1, "general": 0}

    rc, out, _ = await mod(base, "cs_mod", "queue", "child_safety")
    assert rc == 0 and out["queue"] == "child_safety"
    (case,) = out["cases"]
    assert (case["subject"], case["status"], case["sources"]) == ("vic", "open", ["user_report"])
    case_id = case["id"]

    rc, out, _ = await mod(base, "cs_mod", "next", "child_safety")
    assert rc == 0 and out["case"]["summary"]["assignee"] == "cs_mod"

    rc, out, _ = await mod(base, "cs_mod", "case", str(case_id))
    assert rc == 0
    view = out["case"]
    assert view["subject"]["handle"] == "vic" and view["subject"]["minor_contacts"] == 1
    assert [e["sender"] for e in view["evidence"]] == ["vic"]
    assert SECRET_WORDS not in json.dumps(out)  # hidden until revealed

    rc, out, _ = await mod(base, "cs_mod", "reveal", str(case_id))
    assert rc == 0 and [i["text"] for i in out["items"]] == [SECRET_WORDS]

    rc, out, _ = await mod(
        base, "cs_mod", "decide", str(case_id), "--action", "restrict", "--note", "grooming signs"
    )
    assert rc == 0 and out == {"case_id": case_id, "action": "restrict", "outcome": "restricted"}

    rc, out, _ = await mod(base, "cs_mod", "overview")
    assert rc == 0
    assert out["decisions"] == [{"moderator": "cs_mod", "action": "restrict", "count": 1}]
    assert out["median_seconds_to_decision"] is not None

    # A dismissal on a case that is already closed is still recorded.
    rc, out, _ = await mod(base, "cs_mod", "decide", str(case_id), "--action", "dismiss")
    assert rc == 0 and out["outcome"] == "dismissed"


async def test_refusals_have_their_codes(world):
    base, _relay = world
    rc, out, _ = await mod(base, "nobody_in_particular", "queue")
    assert rc == 1 and out["error"]["code"] == "forbidden"
    rc, out, _ = await mod(base, "cs_mod", "case", "9999")
    assert rc == 1 and out["error"]["code"] == "unknown_case"
    rc, out, _ = await mod(base, "cs_mod", "queue", "no_such_queue")
    assert rc == 1 and out["error"]["code"] == "unknown_queue"
    rc, out, _ = await mod(base, "cs_mod", "next", "general")
    assert rc == 1 and out["error"]["code"] == "queue_empty"


async def test_the_human_case_view_hides_content_until_revealed(world):
    base, _relay = world
    args = ("--profile", str(base / "cs_mod"), "mod")
    rc, out, _ = await agechat(*args, "case", "1", passphrase=PASSPHRASE)
    assert rc == 0
    assert "Subject: Vic (@vic), adult" in out and "1 under 18" in out
    assert "content hidden" in out and SECRET_WORDS not in out
    rc, out, _ = await agechat(*args, "reveal", "1", passphrase=PASSPHRASE)
    assert rc == 0 and SECRET_WORDS in out


async def test_the_console_without_a_terminal_says_so(world):
    base, _relay = world
    rc, out, _ = await agechat(
        "--profile", str(base / "cs_mod"), "--json", "moderate", passphrase=PASSPHRASE
    )
    assert rc == 1 and json.loads(out)["error"]["code"] == "no_terminal"
