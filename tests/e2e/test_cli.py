"""The `agechat` command in subprocesses against a real relay: the scripting contract."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.support import Relay, env_with

PASS = "cli test passphrase"


async def agechat(
    *args: str, passphrase: str | None = PASS, timeout: float = 60
) -> tuple[int, str, str]:
    env = env_with(AGECHAT_PASSPHRASE=passphrase) if passphrase else env_with()
    if passphrase is None:
        env.pop("AGECHAT_PASSPHRASE", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launcher",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def account_create(
    profile: Path, server: str, handle: str, name: str, birthdate: str
) -> tuple[int, str, str]:
    """`agechat --json account create` for ``profile``: (exit code, stdout, stderr)."""
    return await agechat(
        "--profile",
        str(profile),
        "--json",
        "account",
        "create",
        "--server",
        server,
        "--handle",
        handle,
        "--name",
        name,
        "--birthdate",
        birthdate,
    )


async def create(tmp_path: Path, relay: Relay, handle: str, birthdate: str) -> Path:
    profile = tmp_path / handle
    rc, out, err = await account_create(profile, relay.url, handle, handle.title(), birthdate)
    assert rc == 0, err
    assert json.loads(out)["handle"] == handle
    return profile


def error_code(out: str) -> str:
    return json.loads(out)["error"]["code"]


async def test_two_accounts_send_and_inbox(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    bob = await create(tmp_path, relay, "bob", "1991-09-09")

    rc, out, _ = await agechat(
        "--profile", str(alice), "--json", "send", "bob", "hello from the CLI"
    )
    assert rc == 0
    sent = json.loads(out)
    assert sent["status"] == "stored" and sent["to"] == "bob"
    assert sent["mode"] == "e2ee"  # two adults: end-to-end encrypted

    rc, out, _ = await agechat("--profile", str(bob), "--json", "inbox", "--wait", "5")
    assert rc == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1
    message = lines[0]
    assert set(message) == {
        "id",
        "conversation",
        "from",
        "to",
        "kind",
        "code",
        "request",
        "mode",
        "text",
        "sent_at",
        "attachment",
    }
    assert message["id"] == sent["id"] and message["attachment"] is None
    assert (message["from"], message["to"], message["text"]) == (
        "alice",
        "bob",
        "hello from the CLI",
    )
    assert (message["kind"], message["mode"]) == ("message", "e2ee")
    assert message["sent_at"].endswith("Z")

    # Acknowledged: a second inbox prints nothing.
    rc, out, _ = await agechat("--profile", str(bob), "--json", "inbox")
    assert (rc, out) == (0, "")

    rc, out, _ = await agechat("--profile", str(bob), "--json", "whoami")
    assert rc == 0
    assert json.loads(out)["band"] == "adult"


async def test_safety_numbers_from_the_command_line(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    bob = await create(tmp_path, relay, "bob", "1991-09-09")
    rc, _, err = await agechat("--profile", str(alice), "send", "bob", "hi")
    assert rc == 0, err
    rc, out, err = await agechat("--profile", str(bob), "--json", "inbox")
    assert rc == 0, err
    rc, out, err = await agechat("--profile", str(alice), "--json", "safety-number", "bob")
    assert rc == 0, err
    mine = json.loads(out)
    rc, out, err = await agechat("--profile", str(bob), "--json", "safety-number", "alice")
    assert rc == 0, err
    theirs = json.loads(out)
    assert mine["safety_number"] == theirs["safety_number"]
    assert len(mine["safety_number"].split()) == 12
    assert (mine["verified"], mine["key_changed"]) == (False, False)
    rc, out, err = await agechat("--profile", str(alice), "--json", "verify", "bob")
    assert rc == 0, err
    assert json.loads(out)["verified"] is True
    rc, out, _ = await agechat("--profile", str(alice), "--json", "safety-number", "bob")
    assert json.loads(out)["verified"] is True
    rc, out, _ = await agechat("--profile", str(alice), "--json", "safety-number", "nobody_here")
    assert (rc, error_code(out)) == (1, "unknown_recipient")


async def inbox_lines(profile: Path) -> list[dict]:
    rc, out, err = await agechat("--profile", str(profile), "--json", "inbox")
    assert rc == 0, err
    return [json.loads(line) for line in out.splitlines()]


async def send_json(profile: Path, to: str, text: str) -> dict:
    rc, out, err = await agechat("--profile", str(profile), "--json", "send", to, text)
    assert rc == 0, err
    return json.loads(out)


async def test_json_says_what_each_event_is_and_whether_a_message_was_a_request(relay, tmp_path):
    """Issue 9, defect 8: scripts read codes and flags, not English sentences."""
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    bob = await create(tmp_path, relay, "bob", "1991-09-09")
    sam = await create(tmp_path, relay, "sam", "2011-05-05")  # a teen

    # A stranger's first message goes as a message request, and both sides can tell.
    first = await send_json(alice, "bob", "hi, we met at the talk")
    assert (first["request"], first["mode"]) == (True, "e2ee")
    [line] = await inbox_lines(bob)
    assert (line["kind"], line["code"], line["request"]) == ("message", None, True)

    rc, _, err = await agechat("--profile", str(bob), "--json", "contacts", "accept", "alice")
    assert rc == 0, err
    [event] = await inbox_lines(alice)
    assert (event["kind"], event["code"], event["request"]) == ("system", "contact_accepted", False)
    assert event["from"] == "agechat"

    # Connected now: no longer a request.
    second = await send_json(alice, "bob", "good to be connected")
    assert second["request"] is False
    lines = await inbox_lines(bob)
    assert [(x["kind"], x["code"], x["request"], x["text"]) for x in lines] == [
        ("system", "contact_accepted", False, lines[0]["text"]),
        ("message", None, False, "good to be connected"),
    ]

    # A teen's request to an adult, accepted: the teen's safety notice carries its code too.
    teen_first = await send_json(sam, "alice", "hello from sam")
    assert (teen_first["request"], teen_first["mode"]) == (True, "visible")
    rc, _, err = await agechat("--profile", str(alice), "--json", "contacts", "accept", "sam")
    assert rc == 0, err
    codes = {(x["kind"], x["code"]) for x in await inbox_lines(sam)}
    assert ("system", "contact_accepted") in codes
    assert ("notice", "new_adult_contact") in codes


async def test_inbox_wait_returns_when_a_message_arrives(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    bob = await create(tmp_path, relay, "bob", "1990-01-01")
    waiting = asyncio.create_task(agechat("--profile", str(bob), "--json", "inbox", "--wait", "20"))
    await asyncio.sleep(1.5)
    rc, _, _ = await agechat("--profile", str(alice), "send", "bob", "are you there?")
    assert rc == 0
    rc, out, _ = await asyncio.wait_for(waiting, 20)
    assert rc == 0
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["are you there?"]


async def test_refusals_exit_1_with_a_code(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")

    rc, out, _ = await agechat("--profile", str(alice), "--json", "send", "nobody_here", "hi")
    assert (rc, error_code(out)) == (1, "unknown_recipient")

    rc, out, _ = await agechat("--profile", str(alice), "--json", "inbox", passphrase="wrong")
    assert (rc, error_code(out)) == (1, "bad_passphrase")

    rc, out, _ = await agechat("--profile", str(alice), "--json", "inbox", passphrase=None)
    assert (rc, error_code(out)) == (1, "passphrase_required")

    rc, out, _ = await agechat("--profile", str(tmp_path / "empty"), "--json", "whoami")
    assert (rc, error_code(out)) == (1, "no_profile")

    rc, out, _ = await account_create(
        tmp_path / "again", relay.url, "alice", "Alice Two", "1970-01-01"
    )
    assert (rc, error_code(out)) == (1, "handle_taken")
    assert not (tmp_path / "again" / "profile.json").exists()

    rc, out, _ = await account_create(tmp_path / "x", relay.url, "xavier", "X", "1970-13-45")
    assert (rc, error_code(out)) == (1, "invalid_birthdate")

    # Without --json the sentence goes to stderr with the code.
    rc, out, err = await agechat("--profile", str(alice), "send", "nobody_here", "hi")
    assert rc == 1 and "[unknown_recipient]" in err


@pytest.mark.parametrize("args", [["send", "bob"], ["inbox", "--wait", "soon"], ["frobnicate"]])
async def test_usage_errors_exit_2(tmp_path, args):
    rc, _, _ = await agechat("--profile", str(tmp_path), *args)
    assert rc == 2


async def test_send_while_relay_is_down_keeps_the_message(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    bob = await create(tmp_path, relay, "bob", "1990-01-01")
    port, data_dir = relay.port, relay.config.data_dir
    await relay.stop()
    rc, out, _ = await agechat("--profile", str(alice), "--json", "send", "bob", "kept for later")
    assert (rc, error_code(out)) == (1, "relay_unreachable")
    back = await Relay(data_dir, port=port).start()
    try:
        # Any later connection of alice's flushes the outbox.
        rc, _, _ = await agechat("--profile", str(alice), "--json", "inbox")
        assert rc == 0
        rc, out, _ = await agechat("--profile", str(bob), "--json", "inbox", "--wait", "5")
        assert [json.loads(line)["text"] for line in out.splitlines()] == ["kept for later"]
    finally:
        await back.stop()


async def test_private_key_is_not_stored_in_clear(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    from client.profile import Profile

    profile = Profile.load(alice)
    seed = bytes(profile.unlock(PASS).signing_key)
    for path in alice.iterdir():
        assert seed not in path.read_bytes(), path
    assert (alice / "profile.json").stat().st_mode & 0o077 == 0


async def test_inbox_prints_messages_other_commands_received(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    bob = await create(tmp_path, relay, "bob", "1990-01-01")
    rc, _, _ = await agechat("--profile", str(alice), "send", "bob", "first")
    assert rc == 0
    # Bob's next command is a send: it receives (and acknowledges) alice's message on the way.
    rc, _, _ = await agechat("--profile", str(bob), "contacts", "accept", "alice")
    assert rc == 0
    rc, out, _ = await agechat("--profile", str(bob), "--json", "inbox")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [m["text"] for m in lines if m["kind"] == "message"] == ["first"]
    rc, out, _ = await agechat("--profile", str(bob), "--json", "inbox")
    assert out == ""  # printed once


async def test_inbox_reports_a_lost_relay(relay, tmp_path):
    bob = await create(tmp_path, relay, "bob", "1990-01-01")
    waiting = asyncio.create_task(agechat("--profile", str(bob), "--json", "inbox", "--wait", "20"))
    await asyncio.sleep(1.5)
    await relay.stop()
    rc, out, _ = await asyncio.wait_for(waiting, 20)
    assert rc == 1
    assert error_code(out) in ("connection_closed", "relay_unreachable")


async def test_human_output_escapes_control_characters(relay, tmp_path):
    alice = await create(tmp_path, relay, "alice", "1988-04-01")
    bob = await create(tmp_path, relay, "bob", "1990-01-01")
    rc, _, _ = await agechat("--profile", str(alice), "send", "bob", "hi\x1b[2J\rfake line")
    assert rc == 0
    rc, out, _ = await agechat("--profile", str(bob), "inbox")
    assert "\x1b" not in out and "\r" not in out
    assert "\\x1b[2J\\x0dfake line" in out
