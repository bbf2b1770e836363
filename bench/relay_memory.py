"""Relay memory per idle connection: what one more logged-in, silent client costs the relay.

Not a test: it prints figures. Each round starts a fresh relay (the real one, `run_relay`
with the `default` policy, inside a small wrapper that can be told to collect garbage and
report its memory) on the accounts registered once beforehand over HTTP with signed age
declarations from many loopback addresses (so its heap holds them but none of registering's
garbage), and reads the relay's memory (VmRSS, and its private part from smaps_rollup) after
a `gc.collect()` three times:

1. accounts registered, no connection open (the base);
2. N WebSockets open, each past the upgrade and holding its challenge, not yet logged in;
3. the same N sockets after the challenge–response login (`ready`, then `synced`), idle,
   measured once the authentication deadline (10 s) has passed for every one of them, so
   nothing the login leaves behind for a while is counted as idle cost.

Memory per connection = (measurement − base) / N. As a floor, each round also measures a
bare aiohttp WebSocket server in the same way (uvloop, the relay's heartbeat and maximum
message size, one text frame sent on connect and nothing else): what the stack costs before
agechat adds anything. Medians over the rounds; KB here are the kernel's (1,024 bytes).

The clients are the throughput bench's lean raw-frame clients (bench/relay_throughput.py),
which answer pings and fail on any frame they do not expect or a closed socket; every wait
has a deadline, so a stall fails the run loudly instead of hanging.

`--trace` runs one round with tracemalloc on in the relay and prints where the memory per
authenticated connection is allocated: the top lines that allocate it, and the same grouped
by the nearest frame in the relay's own code (server/), per connection. Python's allocator
only: the transport's buffers in uvloop (C) show in RSS, not here.

    python bench/relay_memory.py [--connections 2000] [--rounds 3]
    python bench/relay_memory.py --smoke     # seconds, 20 connections, no figures worth quoting
    python bench/relay_memory.py --trace     # where the memory of a connection goes
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from relay_throughput import (  # noqa: E402
    BenchFailure,
    Peer,
    Run,
    Scenario,
    free_port,
    make_members,
    register_all,
)

from protocol.codec import encode_frame  # noqa: E402
from protocol.frames import Auth, Challenge  # noqa: E402
from protocol.identity import auth_message  # noqa: E402
from protocol.limits import AUTH_TIMEOUT_SECONDS, MAX_WEBSOCKET_MESSAGE_BYTES  # noqa: E402

#: Lines the wrapper writes in answer to a command start with this (the relay prints too).
REPLY = "@@ "
TRACE_FRAMES = 12
TARGET_KB = 20.0


# --- the server side: a wrapper process that runs a server and answers on stdin/stdout ---


def memory_kb() -> dict[str, int]:
    """This process's resident set and its private part (what no other process shares,
    so it doesn't move when another process maps the same libraries), in the kernel's kB."""
    fields = {}
    for name in ("/proc/self/status", "/proc/self/smaps_rollup"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines():
                key, _, value = line.partition(":")
                if value.strip().endswith("kB"):
                    fields[key] = int(value.split()[0])
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": fields["VmRSS"], "private": private or fields["VmRSS"]}


def where(stat: Any) -> tuple[str, str]:
    """An allocation's own line, and the nearest line of the relay's code above it."""
    frames = list(reversed(stat.traceback))  # tracemalloc lists the oldest first
    inner = f"{_short(frames[0].filename)}:{frames[0].lineno}"
    ours = next(
        (f"{_short(f.filename)}:{f.lineno}" for f in frames if _ours(f.filename)),
        "(not under server/)",
    )
    return inner, ours


def _ours(filename: str) -> bool:
    return filename.startswith(str(ROOT / "server") + os.sep)


def _short(filename: str) -> str:
    for marker in (f"{os.sep}site-packages{os.sep}", str(ROOT) + os.sep, f"{os.sep}lib{os.sep}"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def trace_report(base: Any, connections: int, top: int) -> list[str]:
    import tracemalloc

    diff = tracemalloc.take_snapshot().compare_to(base, "traceback")
    by_line: collections.Counter[str] = collections.Counter()
    by_ours: collections.Counter[str] = collections.Counter()
    for stat in diff:
        inner, ours = where(stat)
        by_line[inner] += stat.size_diff
        by_ours[ours] += stat.size_diff
    total = sum(s.size_diff for s in diff)
    out = [f"traced by Python's allocator: {total / connections / 1024:.1f} KB per connection"]
    for title, table in (("allocating line", by_line), ("nearest relay line", by_ours)):
        out.append(f"top {top} by {title} (bytes per connection):")
        for site, size in table.most_common(top):
            out.append(f"  {size / connections:8.0f}  {site}")
    return out


def control(top: int) -> None:
    """Answer the bench's commands, one a line, from a thread beside the server's loop."""
    base = None
    for line in sys.stdin:
        command, *rest = line.split()
        gc.collect()
        if command == "measure":
            reply = memory_kb()
        elif command == "mark":
            import tracemalloc

            base = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
            reply = memory_kb()
        elif command == "trace" and base is not None:
            reply = {"lines": trace_report(base, int(rest[0]), top)}
        else:
            reply = {"error": f"unknown command {line.strip()!r}"}
        print(REPLY + json.dumps(reply), flush=True)


def serve_bare(port: int) -> None:
    """A bare aiohttp WebSocket server set up as the relay sets up its sockets."""
    import secrets

    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_WEBSOCKET_MESSAGE_BYTES)
        await ws.prepare(request)
        hello = Challenge(nonce=secrets.token_bytes(32), relay_id="bare", server_time=_now())
        await ws.send_str(encode_frame(hello))
        async for _ in ws:
            pass
        return ws

    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    gc.set_threshold(100_000, 50, 100)  # as the relay does
    app = web.Application()
    app.router.add_get("/v1/ws", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve(kind: str, port: int, data_dir: str, trace: bool, top: int) -> None:
    if trace:
        import tracemalloc

        tracemalloc.start(TRACE_FRAMES)
    threading.Thread(target=control, args=(top,), daemon=True).start()
    if kind == "bare":
        serve_bare(port)
        return
    from server.config import RelayConfig
    from server.run import run_relay

    run_relay(RelayConfig(data_dir=Path(data_dir), port=port, policy="default"))


def _now() -> datetime:
    return datetime.now(UTC)


# --- the bench side ------------------------------------------------------------------------


class Server:
    """A wrapper process running one server; ``ask`` sends a command and awaits its reply."""

    def __init__(self, kind: str, args: Any, data_dir: Path) -> None:
        self.kind = kind
        self.args = args
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  # closed in __aexit__
        cmd = [sys.executable, __file__, "--serve", self.kind, str(self.port), str(self.data_dir)]
        if self.args.trace:
            cmd.append("--trace")
        self.proc = await asyncio.create_subprocess_exec(
            *cmd,
            "--top",
            str(self.args.top),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                break
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise BenchFailure(f"the {self.kind} server did not start: {self.log_tail()}")
            await asyncio.sleep(0.05)
        return self

    async def ask(self, command: str, timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = (await self.proc.stdout.readline()).decode()
                    if not line:
                        raise BenchFailure(f"the {self.kind} server exited: {self.log_tail()}")
                    if line.startswith(REPLY):
                        reply = json.loads(line[len(REPLY) :])
                        if "error" in reply:
                            raise BenchFailure(f"the {self.kind} server: {reply['error']}")
                        return reply
        except TimeoutError:
            raise BenchFailure(f"no answer to {command!r} in {timeout:.0f} s") from None

    def log_tail(self) -> str:
        self._log.seek(0)
        return "\n  ".join(self._log.read().decode(errors="replace").splitlines()[-25:])

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(2)  # SIGINT: the relay shuts down as it would for Ctrl-C
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if exc[0] is not None and self.log_tail():
            print(f"{self.kind} server log (last lines):\n  {self.log_tail()}", file=sys.stderr)
        self._log.close()


def new_run(members: list[Any], args: Any) -> Run:
    """The throughput bench's run with a scenario of no messages: it registers, connects,
    answers pings and fails on anything unexpected; nothing else."""
    scenario = Scenario("default", None, members, [], {}, {}, {})  # type: ignore[arg-type]
    return Run(scenario, None, True, SimpleNamespace(strict=True, stall=args.stall, window=0))


async def open_all(run: Run, port: int, log_in: bool = False) -> list[Peer]:
    """N WebSockets, each upgraded and holding its challenge; logged in too if ``log_in``."""
    loop = asyncio.get_running_loop()
    run.phase = "connect"

    async def open_one(m: Any) -> Peer:
        _, peer = await loop.create_connection(
            lambda: Peer(run, m, port), "127.0.0.1", port, local_addr=(m.address, 0)
        )
        run.peers.append(peer)
        await peer.challenge
        if log_in:
            await log_in_one(peer)
        return peer

    return await run.gather([open_one(m) for m in run.scenario.members], "opening sockets")


async def log_in_one(peer: Peer) -> None:
    challenge = peer.challenge.result()
    signed = auth_message(challenge.relay_id, challenge.nonce, peer.handle)
    signature = peer.member.key.sign(signed).signature
    peer.write(encode_frame(Auth(handle=peer.handle, signature=signature)))
    await peer.ready
    await peer.synced


async def hold(run: Run, seconds: float) -> None:
    """Idle for ``seconds``; a socket closed or a frame unexpected meanwhile fails the run."""
    await run.wait(asyncio.sleep(seconds), "idle")


def close_all(run: Run) -> None:
    run.closing = True
    for peer in run.peers:
        if peer.transport is not None:
            peer.transport.abort()


def per_connection(after: dict[str, int], before: dict[str, int], n: int, key: str) -> float:
    return (after[key] - before[key]) / n


async def register(members: list[Any], args: Any, data_dir: Path) -> None:
    """Register every account once, in a relay of its own: each round then starts its relay
    on a copy of that data, so its base holds the accounts but none of registering's garbage."""
    async with Server("relay", args, data_dir) as relay:
        run = new_run(members, args)
        run.phase = "register"
        try:
            await register_all(run, relay.port)
        finally:
            close_all(run)


async def relay_round(members: list[Any], args: Any, data_dir: Path) -> dict[str, float]:
    n = len(members)
    async with Server("relay", args, data_dir) as relay:
        run = new_run(members, args)
        try:
            base = await relay.ask("mark")
            if args.trace:  # slowed down by tracing: log in at once, before the deadline
                await open_all(run, relay.port, log_in=True)
                all_open = time.monotonic()
                unauthenticated = base
            else:
                peers = await open_all(run, relay.port)
                all_open = time.monotonic()
                await hold(run, args.settle)
                unauthenticated = await relay.ask("measure")
                if time.monotonic() - all_open > AUTH_TIMEOUT_SECONDS / 2:
                    raise BenchFailure(f"measuring {n} open sockets took too long")
                run.phase = "login"
                await run.gather([log_in_one(p) for p in peers], "logging in")
            # Past every socket's authentication deadline, plus the settle time.
            await hold(run, max(args.settle, all_open + args.deadline_wait - time.monotonic()))
            if len(run.peers) != n:
                raise BenchFailure(f"{len(run.peers)} of {n} clients connected")
            idle = await relay.ask("measure")
            if args.trace:
                for line in (await relay.ask(f"trace {n}", timeout=600))["lines"]:
                    print("  " + line)
        finally:
            close_all(run)
    return {
        "unauthenticated": per_connection(unauthenticated, base, n, "rss"),
        "authenticated": per_connection(idle, base, n, "rss"),
        "authenticated_private": per_connection(idle, base, n, "private"),
    }


async def bare_round(members: list[Any], args: Any, data_dir: Path) -> float:
    async with Server("bare", args, data_dir) as bare:
        run = new_run(members, args)
        try:
            base = await bare.ask("measure")
            await open_all(run, bare.port)
            await hold(run, args.settle)
            opened = await bare.ask("measure")
        finally:
            close_all(run)
    return per_connection(opened, base, len(members), "rss")


async def rounds(args: Any) -> None:
    import nacl.signing

    members = make_members(args.connections, _now().date())
    for m in members:
        m.key = nacl.signing.SigningKey(os.urandom(32))
    results: dict[str, list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        registered = Path(tmp) / "registered"
        await register(members, args, registered)
        for round_no in range(1, args.rounds + 1):
            data_dir = Path(tmp) / f"round{round_no}"
            shutil.copytree(registered, data_dir)
            relay = await relay_round(members, args, data_dir)
            bare = 0.0 if args.trace else await bare_round(members, args, data_dir)
            for key, value in {**relay, "bare": bare}.items():
                results[key].append(value)
            print(
                f"  round {round_no}: bare {bare:5.1f} KB, relay before login "
                f"{relay['unauthenticated']:5.1f} KB, logged in and idle "
                f"{relay['authenticated']:5.1f} KB (private "
                f"{relay['authenticated_private']:5.1f} KB)",
                flush=True,
            )
    med = {key: statistics.median(values) for key, values in results.items()}
    print(f"\nmedians over {args.rounds} rounds of {args.connections} connections (RSS delta / N):")
    print(f"  bare aiohttp WebSocket server:    {med['bare']:5.1f} KB (uvloop, heartbeat 30 s)")
    print(f"  relay, open sockets before login: {med['unauthenticated']:5.1f} KB")
    print(
        f"  relay, logged in and idle:        {med['authenticated']:5.1f} KB"
        f" (private {med['authenticated_private']:.1f} KB)"
    )
    if args.trace:
        print("(traced: tracemalloc's own bookkeeping is in these figures; don't quote them)")
    print(f"target (issue #10): <= {TARGET_KB:.0f} KB per idle authenticated connection")
    print(f"memory per idle connection = {med['authenticated']:.1f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before measuring")
    parser.add_argument("--stall", type=float, default=60.0, help="seconds without progress")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes, no figures")
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the relay, one round")
    parser.add_argument("--top", type=int, default=25, help="--trace: sites to print")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * args.connections + 512
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))  # the relay inherits it
        if min(hard, want) < want:
            print(f"warning: RLIMIT_NOFILE hard limit {hard} < {want}", file=sys.stderr)
    if args.serve:
        kind, port, data_dir = args.serve
        serve(kind, int(port), data_dir, args.trace, args.top)
        return
    args.deadline_wait = AUTH_TIMEOUT_SECONDS + 1.0
    if args.smoke:
        args.connections, args.rounds, args.settle, args.stall = 20, 1, 0.2, 15.0
        args.deadline_wait = 0.0
        print("smoke run: tiny sizes, the figures below mean nothing")
    if args.trace:
        args.rounds = 1
    print(
        f"{args.rounds} rounds of {args.connections} connections; relay policy `default`; "
        f"measured {args.settle:.1f} s after the last login"
        + (" and past every authentication deadline" if args.deadline_wait else ""),
        flush=True,
    )
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(rounds(args))
    except BenchFailure as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
