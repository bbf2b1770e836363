"""Relay throughput: the agechat relay (durable store) vs a bare WebSocket forwarder.

Not a test: it prints figures and the ratio of the two, measured in the same run on the
same machine. Each server runs in its own process pinned to one core; the load generator
runs here on the other core and speaks raw WebSocket frames over asyncio streams (an
aiohttp client costs about as much CPU per message as the server and would measure
itself). Both servers see the same frames: challenge/auth/ready/synced, then `send` →
`accepted` to the sender and `deliver` to the recipient, who answers with `ack`.

    python bench/relay_throughput.py [--clients 500] [--messages 50000] [--window 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.codec import encode, encode_frame  # noqa: E402
from protocol.frames import (  # noqa: E402
    Accepted,
    Ack,
    Auth,
    Challenge,
    Deliver,
    MessageRef,
    Ready,
    Send,
    Synced,
)
from protocol.identity import auth_message  # noqa: E402

# --- the baseline: a bare forwarder with the same frames and no storage or auth ----------


def serve_bare(port: int) -> None:
    import uvloop
    from aiohttp import WSMsgType, web

    decoder = msgspec.json.Decoder(Auth | Send | Ack)
    sockets: dict[str, web.WebSocketResponse] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        now = datetime.now(UTC)
        await ws.send_str(
            encode_frame(Challenge(nonce=b"\0" * 32, relay_id="bare", server_time=now))
        )
        handle = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = decoder.decode(msg.data)
            if isinstance(frame, Send) and handle:
                sent_at = datetime.now(UTC)
                conv = f"dm:{min(handle, frame.to)}:{max(handle, frame.to)}"
                peer = sockets.get(frame.to)
                if peer is not None:
                    await peer.send_str(
                        encode_frame(
                            Deliver(
                                id=frame.id,
                                sender=handle,
                                to=frame.to,
                                conversation=conv,
                                mode=frame.mode,
                                body=frame.body,
                                sent_at=sent_at,
                            )
                        )
                    )
                await ws.send_str(
                    encode_frame(Accepted(id=frame.id, conversation=conv, sent_at=sent_at))
                )
            elif isinstance(frame, Auth):
                handle = frame.handle
                sockets[handle] = ws
                await ws.send_str(encode_frame(Ready(handle=handle, server_time=now)))
                await ws.send_str(encode_frame(Synced()))
        if handle:
            sockets.pop(handle, None)
        return ws

    app = web.Application()
    app.router.add_get("/v1/ws", handler)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- a lean WebSocket client (RFC 6455) over asyncio streams -------------------------------


class LeanSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> LeanSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.decode(errors="replace"))
        return cls(reader, writer)

    def send(self, text: str, opcode: int = 1) -> None:
        # An all-zero mask is allowed by RFC 6455 and makes masking a no-op for the client.
        payload = text.encode()
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        self.writer.write(header + b"\0\0\0\0" + payload)

    async def receive(self) -> bytes | None:
        while True:
            b1, b2 = await self.reader.readexactly(2)
            n = b2 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(n)
            opcode = b1 & 0x0F
            if opcode == 1:
                return payload
            if opcode == 9:
                self.send(payload.decode(errors="replace"), opcode=10)
            elif opcode == 8:
                return None

    def close(self) -> None:
        self.writer.close()


# --- the load -----------------------------------------------------------------------------

relay_frames = msgspec.json.Decoder(Challenge | Ready | Synced | Accepted | Deliver)


@dataclass
class Account:
    handle: str
    key: object  # nacl.signing.SigningKey or None for the bare forwarder


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def percentile(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(p * len(data)))] if data else float("nan")


async def run_load(port: int, accounts: list[Account], messages: int, window: int) -> Result:
    sockets: list[LeanSocket] = []
    for account in accounts:
        sock = await LeanSocket.connect(port)
        challenge = relay_frames.decode(await sock.receive())
        signature = b"\0" * 64
        if account.key is not None:
            signed = auth_message(challenge.relay_id, challenge.nonce, account.handle)
            signature = account.key.sign(signed).signature
        sock.send(encode_frame(Auth(handle=account.handle, signature=signature)))
        while not isinstance(relay_frames.decode(await sock.receive()), Synced):
            pass
        sockets.append(sock)

    per_client = messages // len(accounts)
    total = per_client * len(accounts)
    handles = [a.handle for a in accounts]
    latencies: list[float] = []
    delivered = 0
    done = asyncio.Event()

    async def client(i: int) -> None:
        nonlocal delivered
        sock = sockets[i]
        me = handles[i]
        credits = asyncio.Semaphore(window)
        to_send = per_client

        async def sender() -> None:
            nonlocal to_send
            for n in range(per_client):
                await credits.acquire()
                peer = handles[random.randrange(len(handles))]
                if peer == me:
                    peer = handles[(i + 1) % len(handles)]
                body = str(time.perf_counter_ns())
                sock.send(
                    encode_frame(Send(id=f"{me}-{n:08d}", to=peer, mode="visible", body=body))
                )
                if n % 16 == 0:
                    await sock.writer.drain()

        task = asyncio.create_task(sender())
        while True:
            raw = await sock.receive()
            if raw is None:
                break
            frame = relay_frames.decode(raw)
            if isinstance(frame, Accepted):
                credits.release()
            elif isinstance(frame, Deliver):
                latencies.append((time.perf_counter_ns() - int(frame.body)) / 1e6)
                sock.send(encode_frame(Ack(refs=[MessageRef(sender=frame.sender, id=frame.id)])))
                delivered += 1
                if delivered >= total:
                    done.set()
        await task

    start = time.perf_counter()
    tasks = [asyncio.create_task(client(i)) for i in range(len(accounts))]
    try:
        await asyncio.wait_for(done.wait(), timeout=300)
    finally:
        seconds = time.perf_counter() - start
        for t in tasks:
            t.cancel()
        for s in sockets:
            s.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Result("", total, seconds, latencies)


# --- orchestration ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {cpu})


def start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: pin(1)
    )
    deadline = time.time() + 20
    import socket

    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def register_all(port: int, n: int) -> list[Account]:
    import urllib.request

    import nacl.signing

    from client.account import build_registration

    accounts = []
    for i in range(n):
        key = nacl.signing.SigningKey.generate()
        handle = f"bench_{i:05d}"
        req = build_registration(key, handle, f"Bench {i}", date(1990, 1, 1), datetime.now(UTC))
        http = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/accounts",
            data=encode(req),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(http) as response:
            assert response.status == 201
        accounts.append(Account(handle, key))
    return accounts


def measure(
    name: str, cmd: list[str], port: int, n: int, messages: int, window: int, register: bool
) -> Result:
    proc = start(cmd, port)
    try:
        accounts = (
            register_all(port, n)
            if register
            else [Account(f"bench_{i:05d}", None) for i in range(n)]
        )
        before = cpu_seconds(proc.pid)
        result = asyncio.run(run_load(port, accounts, messages, window))
        result.server_cpu_seconds = cpu_seconds(proc.pid) - before
        result.name = name
        return result
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=4, help="unacknowledged sends per client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synchronous", default="FULL", help="(informational) relay default")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    pin(0)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    print(
        f"{args.clients} clients, {args.messages} messages, window {args.window}, "
        f"{args.rounds} rounds; servers pinned to CPU 1, load on CPU 0",
        flush=True,
    )
    results: dict[str, list[Result]] = {"bare": [], "agechat": []}
    for round_no in range(args.rounds):
        port = free_port()
        bare = measure(
            "bare",
            [sys.executable, __file__, "--serve-bare", str(port)],
            port,
            args.clients,
            args.messages,
            args.window,
            register=False,
        )
        results["bare"].append(bare)
        with tempfile.TemporaryDirectory() as data_dir:
            port = free_port()
            relay = measure(
                "agechat",
                [
                    sys.executable,
                    "-m",
                    "launcher",
                    "server",
                    "--data-dir",
                    data_dir,
                    "--port",
                    str(port),
                ],
                port,
                args.clients,
                args.messages,
                args.window,
                register=True,
            )
        results["agechat"].append(relay)
        for r in (bare, relay):
            print(
                f"  round {round_no + 1} {r.name:8s} {r.rate:9.0f} msg/s  p50 "
                f"{r.percentile(0.5):7.1f} ms  p99 {r.percentile(0.99):7.1f} ms  server CPU "
                f"{r.server_cpu_seconds / r.messages * 1e6:6.1f} µs/msg",
                flush=True,
            )
    print("\nmedians over rounds:")
    medians = {}
    for name, rs in results.items():
        rate = statistics.median(r.rate for r in rs)
        p50 = statistics.median(r.percentile(0.5) for r in rs)
        p99 = statistics.median(r.percentile(0.99) for r in rs)
        cpu = statistics.median(r.server_cpu_seconds / r.messages * 1e6 for r in rs)
        medians[name] = rate
        print(
            f"  {name:8s} {rate:9.0f} msg/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
            f"server CPU {cpu:6.1f} µs/msg"
        )
    ratio = medians["agechat"] / medians["bare"]
    print(f"\nratio agechat/bare = {ratio:.2f} (target >= 0.50)")


if __name__ == "__main__":
    main()
