"""The `agechat` command line (DESIGN.md "Command line contract").

Every command prints a sentence for people, or with ``--json`` a JSON object (``inbox``: one
per line). A refusal exits 1 with ``{"error": {"code", "message"}}``; usage errors exit 2.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from client.account import create_account
from client.errors import ClientError
from client.events import MessageReceived, Synced
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


def message_json(message: HistoryMessage) -> dict[str, Any]:
    return {
        "id": message.msg_id,
        "conversation": message.conversation,
        "from": message.sender,
        "to": message.recipient,
        "kind": message.kind,
        "mode": message.mode,
        "text": message.body,
        "sent_at": iso(message.sent_at),
    }


def message_line(message: HistoryMessage) -> str:
    when = (message.sent_at or message.created_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"[{when}] {message.sender} → {message.recipient} ({message.mode}): {message.body}"


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
        click.echo(ctx.get_help())


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
@click.argument("text")
@command
async def send(options: Options, handle: str, text: str) -> None:
    """Send TEXT to HANDLE; exits 0 once the relay has stored it."""
    async with connected_client(options) as client:
        message = await client.send(handle, text)  # in the outbox before any network
        try:
            await client.wait_connected(CONNECT_TIMEOUT)
        except ClientError as exc:
            raise ClientError(
                exc.code, f"{exc.message} The message is kept in the outbox and sent next time."
            ) from None
        stored = await client.wait_accepted(message.msg_id)
    emit(
        options,
        {
            "id": stored.msg_id,
            "conversation": stored.conversation,
            "to": stored.recipient,
            "mode": stored.mode,
            "status": "stored",
            "sent_at": iso(stored.sent_at),
        },
        f"Sent to {handle} (stored by the relay, {stored.mode} mode).",
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
    """Receive what is waiting, acknowledge it, and print it."""
    received = 0
    async with connected_client(options) as client:
        await client.wait_connected(CONNECT_TIMEOUT)
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        synced = False
        while True:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            event = await client.next_event(timeout if synced else CONNECT_TIMEOUT)
            if event is None:
                break
            if isinstance(event, MessageReceived):
                received += 1
                emit(options, message_json(event.message), message_line(event.message))
                if synced:  # something arrived while waiting: we are done
                    break
            elif isinstance(event, Synced):
                synced = True
                if received or wait_seconds == 0:
                    break
                deadline = loop.time() + wait_seconds
    if received == 0 and not options.json:
        click.echo("No new messages.", err=True)
