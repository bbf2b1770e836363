"""The policy through the `agechat` command line: refusals exit 1 with their code, the
legitimate paths work, and operators correct ages with an audited command."""

from __future__ import annotations

import json

from tests.e2e.test_cli import account_create, agechat, create, error_code
from tests.support import years_ago


async def run_json(profile, *args):
    rc, out, err = await agechat("--profile", str(profile), "--json", *args)
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()], err


async def test_policy_through_the_cli(relay, tmp_path):
    dad = await create(tmp_path, relay, "dad", years_ago(44).isoformat())
    maya = await create(tmp_path, relay, "maya", years_ago(14).isoformat())
    stranger = await create(tmp_path, relay, "stranger", years_ago(35).isoformat())

    # The stranger can't find, request or message her.
    rc, out, _ = await agechat("--profile", str(stranger), "--json", "send", "maya", "hi")
    assert (rc, error_code(out)) == (1, "contact_not_allowed")
    rc, out, _ = await agechat("--profile", str(stranger), "--json", "contacts", "request", "maya")
    assert (rc, error_code(out)) == (1, "contact_not_allowed")
    rc, [found], _ = await run_json(stranger, "search", "maya")
    assert found == {"results": []}
    rc, out, err = await agechat("--profile", str(stranger), "send", "maya", "hi")
    assert rc == 1 and "[contact_not_allowed]" in err and "under 18" in err

    # She asks her dad; he sees the request, accepts, and both write.
    rc, [done], _ = await run_json(maya, "contacts", "request", "dad")
    assert (rc, done["outcome"]) == (0, "requested")
    rc, [listing], _ = await run_json(dad, "contacts", "list")
    assert [(c["handle"], c["state"]) for c in listing["contacts"]] == [
        ("maya", "incoming_request")
    ]
    rc, [done], _ = await run_json(dad, "contacts", "accept", "maya")
    assert done["outcome"] == "connected"
    rc, _, _ = await run_json(dad, "send", "maya", "pick you up at 5")
    assert rc == 0
    rc, lines, _ = await run_json(maya, "inbox", "--wait", "5")
    assert [m["text"] for m in lines if m["kind"] == "message"] == ["pick you up at 5"]
    assert "notice" in [m["kind"] for m in lines]
    assert all(m["from"] == "agechat" for m in lines if m["kind"] != "message")

    # She can't make herself an adult; she can block and report.
    rc, out, _ = await agechat(
        "--profile", str(maya), "--json", "account", "set-birthdate", "1990-01-01"
    )
    assert (rc, error_code(out)) == (1, "age_change_requires_assurance")
    rc, [done], _ = await run_json(maya, "block", "stranger")
    assert done["outcome"] == "blocked"
    rc, [done], _ = await run_json(maya, "report", "dad", "--reason", "test report", "--last", "2")
    assert (done["outcome"], done["messages"]) == ("reported", 1)

    # An operator corrects her age after an age check; the change is audited.
    rc, out, err = await agechat(
        "admin",
        "set-birthdate",
        "--data-dir",
        str(relay.config.data_dir),
        "--reason",
        "ID seen",
        "maya",
        years_ago(18, days=-10).isoformat(),
    )
    assert rc == 0, err
    assert json.loads(out)["band_to"] == "adult"


async def test_under_13_cannot_register_through_the_cli(relay, tmp_path):
    rc, out, _ = await account_create(
        tmp_path / "kid", relay.url, "kiddo", "Kid", years_ago(12).isoformat()
    )
    assert (rc, error_code(out)) == (1, "under_minimum_age")


async def test_server_refuses_a_policy_with_a_typo(tmp_path):
    from server.policy.loader import PRESETS_DIR

    bad = tmp_path / "mine.toml"
    bad.write_text((PRESETS_DIR / "default.toml").read_text().replace("[limits]", "[limitz]"))
    rc, _, err = await agechat(
        "server",
        "--data-dir",
        str(tmp_path / "relay"),
        "--port",
        "0",
        "--policy",
        str(bad),
        passphrase=None,
    )
    assert rc != 0
    assert "limitz" in err
