"""Real parts for tests: an in-process relay on loopback, a relay subprocess, real clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from client.account import create_account
from client.events import ClientEvent, MessageReceived
from client.history import History, HistoryMessage
from client.keystore import MINIMUM
from client.profile import Profile
from client.relay import RelayClient
from server.app import create_app
from server.config import RelayConfig

PASSPHRASE = "correct horse battery staple"
ADULT = date(1990, 3, 14)
TEEN = date(2012, 6, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """A relay running in this test's event loop."""

    def __init__(
        self,
        data_dir: Path,
        clock: Callable[[], datetime] | None = None,
        port: int | None = None,
        policy: str = "default",
        **config: object,
    ) -> None:
        self.port = port or free_port()
        kwargs: dict[str, object] = {"clock": clock, **config} if clock else dict(config)
        self.config = RelayConfig(data_dir=data_dir, port=self.port, policy=policy, **kwargs)
        self.app = create_app(self.config)
        self.runner = web.AppRunner(self.app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    async def start(self) -> Relay:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()


class RelayProcess:
    """`agechat server` in a subprocess, so it can be killed for real."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        scheme: str = "http",
        ssl: object = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra_args = extra_args
        self.scheme = scheme
        self.ssl = ssl  # the client's SSL context for the health check, when TLS is on
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def start(self) -> RelayProcess:
        log_fd = self._log()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "launcher",
                    "server",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    *self.extra_args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log_fd,
            )
        finally:
            os.close(log_fd)
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{self.url}/healthz", ssl=self.ssl or True) as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError("relay process exited")
                await asyncio.sleep(0.05)
        raise RuntimeError("relay did not start")

    def _log(self) -> int:
        """Append the relay's log beside its data dir (kept for debugging a failed test)."""
        path = self.data_dir.parent / f"relay-{self.port}.log"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def make_profile(base: Path, server: str, handle: str, birthdate: date = ADULT) -> Profile:
    return await create_account(
        base / handle,
        server=server,
        handle=handle,
        display_name=handle.title(),
        birthdate=birthdate,
        passphrase=PASSPHRASE,
        kdf=MINIMUM,
    )


@asynccontextmanager
async def open_clients(*profiles: Profile) -> AsyncIterator[list[RelayClient]]:
    """Several connected clients at once, each past its initial sync."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_client(p)) for p in profiles]
        for c in clients:
            await c.wait_connected()
            await asyncio.wait_for(c.synced.wait(), 5)
        yield clients


async def drain(client: RelayClient, timeout: float = 0.5) -> list[MessageReceived]:
    """Every MessageReceived that arrives within ``timeout`` seconds of quiet."""
    got = []
    while (event := await client.next_event(timeout)) is not None:
        if isinstance(event, MessageReceived):
            got.append(event)
    return got


async def connect(a: RelayClient, b: RelayClient, quiet: float = 0.5) -> None:
    """Make ``a`` and ``b`` contacts (a asks, b accepts) and swallow the system lines."""
    await a.contact_request(b.handle)
    await b.respond(a.handle, accept=True)
    await drain(a, quiet)
    await drain(b, quiet)


@asynccontextmanager
async def open_client(
    profile: Profile, *, reconnect: bool = True, utc_offset: timedelta | None = None
) -> AsyncIterator[RelayClient]:
    """``utc_offset``: the time zone the client says it is in (a minor's tells the relay)."""
    history = History(profile.history_path)
    await history.open()
    zone = {} if utc_offset is None else {"utc_offset": lambda: utc_offset}
    try:
        async with RelayClient(
            profile,
            profile.unlock(PASSPHRASE),
            history,
            reconnect=reconnect,
            max_backoff=0.2,
            **zone,
        ) as client:
            yield client
    finally:
        await history.close()


async def collect(client: RelayClient, count: int, timeout: float = 5.0) -> list[ClientEvent]:
    """Gather events until ``count`` MessageReceived have arrived (or the time is up)."""
    events: list[ClientEvent] = []
    received = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while received < count:
        event = await client.next_event(max(0.0, end - loop.time()))
        if event is None:
            break
        events.append(event)
        if isinstance(event, MessageReceived):
            received += 1
    return events


def received_bodies(events: list[ClientEvent]) -> list[str]:
    return [e.message.body for e in events if isinstance(e, MessageReceived)]


class Clock:
    """A settable clock for the relay: tests move time forward (birthdays, day limits)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.offset = timedelta(0)
        self.start = start

    def __call__(self) -> datetime:
        base = self.start or datetime.now(UTC)
        return base + self.offset if self.start else datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


def years_ago(years: int, days: int = 0) -> date:
    """A birth date ``years`` years before today, ``days`` later (so ``days`` short of it)."""
    today = date.today()
    try:
        anniversary = today.replace(year=today.year - years)
    except ValueError:  # 29 February in a common year
        anniversary = today.replace(year=today.year - years, day=28)
    return anniversary + timedelta(days=days)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


async def refused(awaitable: object) -> str:
    """The code of the ClientError ``awaitable`` raises (it must raise one)."""
    import pytest

    from client.errors import ClientError

    with pytest.raises(ClientError) as info:
        await awaitable  # type: ignore[misc]
    return info.value.code


async def send_and_wait(client: RelayClient, to: str, text: str) -> HistoryMessage:
    """Send and wait until the relay has stored it (its refusal raised otherwise)."""
    message = await client.send(to, text)
    return await client.wait_accepted(message.msg_id)


async def grant(relay: Relay, handle: str, role: str) -> None:
    """Give ``handle`` a moderation role as `agechat admin grant-role` does, and reload the
    relay's roles (what its watcher does within a second)."""
    from server.admin.roles import change_role
    from server.app_keys import SAFETY

    await change_role(relay.config.data_dir, handle, role, grant=True)
    await relay.app[SAFETY].load()
