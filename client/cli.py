"""The `agechat` command line (the contract in the README).

Every command prints a sentence for people, or with ``--json`` a JSON object (``inbox``: one
per line). A refusal exits 1 with ``{"error": {"code", "message"}}``; usage errors exit 2.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import msgspec

from client.account import create_account
from client.e2ee import SafetyNumber
from client.errors import ClientError
from client.events import Disconnected, MessageReceived, Synced
from client.explain import MODE_BADGE
from client.history import History, HistoryMessage
from client.profile import Profile, default_profile_dir
from client.relay import RelayClient
from client.timeutil import utc_now
from protocol.policy import band

P = ParamSpec("P")
T = TypeVar("T")

CONNECT_TIMEOUT = 10.0


@dataclass
class Options:
    profile_dir: Path
    json: bool


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def emit(options: Options, payload: dict[str, Any], human: str) -> None:
    if options.json:
        click.echo(json.dumps(payload, ensure_ascii=False))
    else:
        click.echo(human)


def fail(options: Options, error: ClientError) -> None:
    if options.json:
        click.echo(json.dumps({"error": {"code": error.code, "message": error.message}}))
    else:
        click.echo(f"error: {error.message} [{error.code}]", err=True)
    sys.exit(1)


def command(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async command body; turn a ClientError into the error contract."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        options: Options = click.get_current_context().find_object(Options)  # type: ignore[assignment]
        try:
            asyncio.run(fn(options, *args, **kwargs))
        except ClientError as exc:
            fail(options, exc)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def passphrase(confirm: bool = False) -> str:
    value = os.environ.get("AGECHAT_PASSPHRASE")
    if value:
        return value
    if not sys.stdin.isatty():
        raise ClientError("passphrase_required")
    return click.prompt(
        "Passphrase for this profile's keys", hide_input=True, confirmation_prompt=confirm
    )


@asynccontextmanager
async def connected_client(options: Options) -> AsyncIterator[RelayClient]:
    profile = Profile.load(options.profile_dir)
    identity = profile.unlock(passphrase())
    history = History(profile.history_path)
    await history.open()
    try:
        async with RelayClient(profile, identity, history, reconnect=False) as client:
            yield client
            # Messages left in the outbox by an earlier run go out on any connection.
            left = await client.drain_outbox()
            if left and not options.json:
                click.echo(f"{left} message(s) still waiting in the outbox.", err=True)
    finally:
        await history.close()


def parse_birthdate(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ClientError("invalid_birthdate", f"{text!r} is not a date (YYYY-MM-DD).") from None


def message_json(message: HistoryMessage) -> dict[str, Any]:
    return {
        "id": message.msg_id,
        "conversation": message.conversation,
        "from": message.sender,
        "to": message.recipient,
        "kind": message.kind,
        # What an event is, for scripts (e.g. `contact_accepted`); null for a message.
        "code": message.code,
        "request": message.request,
        "mode": message.mode,
        "text": message.body,
        "sent_at": iso(message.sent_at),
        # {name, size, type, sha256, path, state} of a file saved under the profile, or null.
        "attachment": None if message.attachment is None else message.attachment.to_json(),
    }


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Someone else's text, safe for a terminal: control characters (escape sequences that
    could fake lines or recolour the screen) are shown as escapes, newlines are indented."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text.replace("\n", "\n    ")


def message_line(message: HistoryMessage) -> str:
    when = (message.sent_at or message.created_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if message.kind != "message":
        return f"[{when}] {message.kind} {message.code}: {printable(message.body)}"
    request = " [message request]" if message.request else ""
    who = f"{message.sender} → {message.recipient} ({message.mode}){request}"
    line = f"[{when}] {who}: {printable(message.body)}"
    if (att := message.attachment) is not None:
        where = {
            "ready": printable(att.path),
            "unavailable": "no longer on the relay",
            "corrupt": "damaged in transit, not saved",
        }[att.state]
        line += f"\n    📎 {printable(att.name)} ({att.size} bytes, {printable(att.type)}): {where}"
    return line


@click.group(invoke_without_command=True)
@click.option(
    "--profile",
    "profile_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Profile directory (default: $AGECHAT_PROFILE or the user data dir).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.version_option(package_name="agechat")
@click.pass_context
def cli(ctx: click.Context, profile_dir: Path | None, as_json: bool) -> None:
    """agechat: age-aware messaging. Adults are end-to-end encrypted; chats with minors are
    visible to safety checks; the relay limits adult–minor contact."""
    ctx.obj = Options(profile_dir=profile_dir or default_profile_dir(), json=as_json)
    if ctx.invoked_subcommand is None:
        ctx.invoke(chat)


@cli.group()
def account() -> None:
    """Create and inspect the account in this profile."""


@account.command("create")
@click.option("--server", required=True, help="Relay URL, e.g. http://127.0.0.1:8765")
@click.option("--handle", required=True, help="3–32 characters: a-z, 0-9, _")
@click.option("--name", "display_name", required=True, help="Display name")
@click.option("--birthdate", required=True, help="YYYY-MM-DD")
@command
async def account_create(
    options: Options, server: str, handle: str, display_name: str, birthdate: str
) -> None:
    """Generate keys, register with the relay and save the profile."""
    try:
        born = date.fromisoformat(birthdate)
    except ValueError:
        raise ClientError(
            "invalid_birthdate", f"{birthdate!r} is not a date (YYYY-MM-DD)."
        ) from None
    if Profile.exists(options.profile_dir):
        raise ClientError("profile_exists", f"{options.profile_dir} already has an account.")
    secret = passphrase(confirm=True)
    profile = await create_account(
        options.profile_dir,
        server=server,
        handle=handle,
        display_name=display_name,
        birthdate=born,
        passphrase=secret,
    )
    current = band(born, utc_now().date())
    emit(
        options,
        {
            "handle": profile.handle,
            "display_name": display_name,
            "server": profile.server,
            "band": current,
            "profile": str(options.profile_dir),
        },
        f"Created @{profile.handle} on {profile.server} (age band: {current}).",
    )


@cli.command()
@command
async def whoami(options: Options) -> None:
    """Show the account in this profile (no passphrase needed)."""
    profile = Profile.load(options.profile_dir)
    data = profile.data
    current = band(data.birthdate, utc_now().date())
    emit(
        options,
        {
            "handle": data.handle,
            "display_name": data.display_name,
            "server": data.server,
            "band": current,
            "birthdate": data.birthdate.isoformat(),
            "profile": str(options.profile_dir),
        },
        f"@{data.handle} ({data.display_name}) on {data.server}, age band {current}",
    )


@cli.command()
@click.argument("handle")
@click.argument("text", required=False, default="")
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, exists=True, readable=True, path_type=Path),
    help="Attach this file (encrypted on this device in an end-to-end encrypted chat).",
)
@command
async def send(options: Options, handle: str, text: str, file: Path | None) -> None:
    """Send TEXT (and/or a --file) to HANDLE; exits 0 once the relay has stored it."""
    if not text and file is None:
        raise click.UsageError("Give TEXT, --file, or both.")
    async with connected_client(options) as client:
        # In the outbox (the file copied under the profile) before any network.
        if file is None:
            message = await client.send(handle, text)
        else:
            message = await client.send_file(handle, file, text)
        try:
            await client.wait_connected(CONNECT_TIMEOUT)
        except ClientError as exc:
            raise ClientError(
                exc.code, f"{exc.message} The message is kept in the outbox and sent next time."
            ) from None
        stored = await client.wait_accepted(message.msg_id)
    as_request = stored.request  # the relay's `accepted` says so
    request_words = " as a message request" if as_request else ""
    emit(
        options,
        {
            "id": stored.msg_id,
            "conversation": stored.conversation,
            "to": stored.recipient,
            "mode": stored.mode,
            "request": as_request,
            "status": "stored",
            "sent_at": iso(stored.sent_at),
            "attachment": None if stored.attachment is None else stored.attachment.to_json(),
        },
        f"Sent to {handle}{request_words} (stored by the relay, {stored.mode} mode).",
    )


@cli.command()
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="If nothing is waiting, wait up to SECONDS for the first message.",
)
@command
async def inbox(options: Options, wait_seconds: float) -> None:
    """Receive what is waiting, acknowledge it, and print everything not printed before."""
    async with connected_client(options) as client:
        await client.wait_connected(CONNECT_TIMEOUT)
        loop = asyncio.get_running_loop()
        synced = False
        deadline = loop.time() + CONNECT_TIMEOUT
        arrived = False
        while True:
            event = await client.next_event(max(0.0, deadline - loop.time()))
            if event is None:
                if not synced:
                    raise ClientError("timeout", "The relay did not finish sending the backlog.")
                break
            if isinstance(event, Disconnected):
                raise ClientError(event.code, event.message)
            if isinstance(event, MessageReceived):
                arrived = True
                if synced:
                    break  # the first message while waiting: print what we have
            elif isinstance(event, Synced):
                synced = True
                if arrived or wait_seconds == 0 or await client.history.unseen(limit=1):
                    break
                deadline = loop.time() + wait_seconds
        # Printing from the local store (not the event stream) means nothing received by any
        # earlier command is lost to the user: each message is printed exactly once.
        unseen = await client.history.unseen()
        for message in unseen:
            emit(options, message_json(message), message_line(message))
        await client.history.mark_seen([m.rowid for m in unseen])
    if not unseen and not options.json:
        click.echo("No new messages.", err=True)


# --- contacts, search, blocks, reports (issue #3) ---------------------------------------------


@account.command("set-birthdate")
@click.argument("birthdate")
@command
async def account_set_birthdate(options: Options, birthdate: str) -> None:
    """Re-declare your birth date. Moving to an older age band needs an age check."""
    born = parse_birthdate(birthdate)
    async with connected_client(options) as client:
        await client.set_birthdate(born)
    current = band(born, utc_now().date())
    emit(
        options,
        {"handle": client.handle, "birthdate": born.isoformat(), "band": current},
        f"Birth date updated; age band {current}.",
    )


@cli.group()
def contacts() -> None:
    """List contacts, and send, accept or decline contact requests."""


STATE_WORDS = {
    "connected": "connected",
    "incoming_request": "wants to connect with you",
    "outgoing_request": "request sent",
    "declined": "declined your request",
    "declined_by_you": "you declined",
    "awaiting_guardian": "waiting for a guardian's approval",
    "blocked": "blocked by you",
}
MODE_WORDS = MODE_BADGE


@contacts.command("list")
@command
async def contacts_list(options: Options) -> None:
    """Everyone you are connected with, asked, were asked by, or blocked."""
    async with connected_client(options) as client:
        entries = await client.contacts()
    payload = {"contacts": [msgspec.to_builtins(e) for e in entries]}
    lines = [
        f"@{e.handle} ({e.display_name}): {STATE_WORDS.get(e.state, e.state)}, "
        f"{MODE_WORDS.get(e.mode or '', 'mode not shown')}"
        + (" — restricted from contacting minors" if e.restricted else "")
        for e in entries
    ]
    emit(options, payload, "\n".join(lines) or "No contacts yet.")


async def _contact_action(options: Options, handle: str, action: str) -> None:
    async with connected_client(options) as client:
        if action == "request":
            outcome = await client.contact_request(handle)
        else:
            outcome = await client.respond(handle, accept=action == "accept")
    words = {
        "requested": "Request sent to",
        "connected": "Connected with",
        "declined": "Declined the request from",
    }
    human = f"{words.get(outcome, outcome)} @{handle}."
    if outcome == "awaiting_guardian":
        human = (
            f"Accepted @{handle}'s request. It waits for a guardian's approval; until then "
            "neither of you can write."
        )
    emit(options, {"handle": handle, "outcome": outcome}, human)


@contacts.command("request")
@click.argument("handle")
@command
async def contacts_request(options: Options, handle: str) -> None:
    """Ask HANDLE to connect."""
    await _contact_action(options, handle, "request")


@contacts.command("accept")
@click.argument("handle")
@command
async def contacts_accept(options: Options, handle: str) -> None:
    """Accept HANDLE's request."""
    await _contact_action(options, handle, "accept")


@contacts.command("decline")
@click.argument("handle")
@command
async def contacts_decline(options: Options, handle: str) -> None:
    """Decline HANDLE's request."""
    await _contact_action(options, handle, "decline")


@cli.command()
@click.argument("query")
@command
async def search(options: Options, query: str) -> None:
    """Find people by handle or name prefix (the relay's policy decides who you can find)."""
    async with connected_client(options) as client:
        results = await client.search(query)
    emit(
        options,
        {"results": [msgspec.to_builtins(p) for p in results]},
        "\n".join(f"@{p.handle} ({p.display_name})" for p in results) or "Nobody found.",
    )


@cli.command()
@click.argument("handle")
@command
async def block(options: Options, handle: str) -> None:
    """Block HANDLE: nothing they send reaches you (they are not told)."""
    async with connected_client(options) as client:
        outcome = await client.block(handle)
    emit(options, {"handle": handle, "outcome": outcome}, f"Blocked @{handle}.")


@cli.command()
@click.argument("handle")
@command
async def unblock(options: Options, handle: str) -> None:
    """Unblock HANDLE."""
    async with connected_client(options) as client:
        outcome = await client.unblock(handle)
    emit(options, {"handle": handle, "outcome": outcome}, f"Unblocked @{handle}.")


def _safety_payload(result: SafetyNumber) -> dict[str, Any]:
    return {
        "handle": result.peer,
        "safety_number": result.number,
        "verified": result.verified,
        "key_changed": result.key_changed,
    }


@cli.command("safety-number")
@click.argument("handle")
@command
async def safety_number(options: Options, handle: str) -> None:
    """Print the safety number you share with HANDLE (compare it with theirs)."""
    async with connected_client(options) as client:
        result = await client.safety_number(handle)
    state = "verified" if result.verified else "not verified"
    warning = "\nTheir key CHANGED since you last saw it." if result.key_changed else ""
    emit(
        options,
        _safety_payload(result),
        f"Safety number with @{handle} ({state}):\n{result.number}{warning}\n"
        "If it matches the one on their screen, run `agechat verify " + handle + "`.",
    )


@cli.command()
@click.argument("handle")
@click.option(
    "--number",
    default=None,
    help="The safety number you compared (spaces allowed): refused if the key changed since.",
)
@command
async def verify(options: Options, handle: str, number: str | None) -> None:
    """Mark HANDLE's safety number as verified (after comparing it with theirs)."""
    async with connected_client(options) as client:
        result = await client.verify(handle, number)
    emit(options, _safety_payload(result), f"Verified @{handle}: {result.number}")


@cli.command("accept-key")
@click.argument("handle")
@command
async def accept_key(options: Options, handle: str) -> None:
    """Accept HANDLE's new key without verifying it (clears the warning; not verified)."""
    async with connected_client(options) as client:
        result = await client.accept_key(handle)
    emit(options, _safety_payload(result), f"Accepted @{handle}'s new key (not verified).")


@cli.command()
@click.argument("handle")
@click.option("--reason", required=True, help="Why, in a few words (e.g. harassment, spam).")
@click.option(
    "--last",
    "last",
    type=click.IntRange(0, 50),
    default=5,
    show_default=True,
    help="Attach the last N messages of your conversation with them.",
)
@click.option(
    "--group",
    "group_ref",
    default=None,
    metavar="GROUP",
    help="Attach the last N messages they sent in this group instead (its id or name).",
)
@command
async def report(
    options: Options, handle: str, reason: str, last: int, group_ref: str | None
) -> None:
    """Report HANDLE to the relay's safety team, with the last N messages as you have them."""
    async with connected_client(options) as client:
        group = None if group_ref is None else (await client.groups.find(group_ref)).id
        attached = await client.report(handle, reason, last, group=group)
    emit(
        options,
        {"handle": handle, "outcome": "reported", "messages": len(attached)},
        f"Reported @{handle} with {len(attached)} message(s) attached.",
    )


@cli.command()
@click.option("--server", default=None, help="Relay URL to suggest at onboarding.")
@click.pass_obj
def chat(options: Options, server: str | None) -> None:
    """Open the chat app (also what bare `agechat` does)."""
    from client.session import ProfileSessions
    from client.tui.app import DEFAULT_SERVER, AgechatApp

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        fail(
            options,
            ClientError(
                "no_terminal",
                "The chat app needs a terminal; see --help "
                "for the commands that script the same actions.",
            ),
        )
    app = AgechatApp(
        ProfileSessions(options.profile_dir),
        passphrase=os.environ.get("AGECHAT_PASSPHRASE") or None,
        default_server=server or DEFAULT_SERVER,
    )
    app.run()
