"""The relay as a process: graceful shutdown, and no message bodies in its log."""

from __future__ import annotations

import asyncio
import signal

from client.events import Disconnected
from tests.support import RelayProcess, collect, make_profile, open_client, received_bodies


async def test_sigterm_closes_clients_and_exits_cleanly(tmp_path):
    relay = await RelayProcess(tmp_path / "relay").start()
    try:
        alice = await make_profile(tmp_path, relay.url, "alice")
        async with open_client(alice, reconnect=False) as a:
            await a.wait_connected()
            relay.proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(relay.proc.wait, 15)
            assert returncode == 0
            event = None
            while not isinstance(event, Disconnected):
                event = await a.next_event(5)
                assert event is not None
    finally:
        relay.terminate()


async def test_relay_log_never_contains_message_bodies(tmp_path):
    relay = await RelayProcess(tmp_path / "relay").start()
    canary = "canary-7f3a9c1e-do-not-log"
    try:
        alice = await make_profile(tmp_path, relay.url, "alice")
        bob = await make_profile(tmp_path, relay.url, "bob")
        async with open_client(alice) as a:
            await a.wait_connected()
            await a.wait_accepted((await a.send("bob", canary)).msg_id)
        async with open_client(bob) as b:
            assert received_bodies(await collect(b, 1)) == [canary]
    finally:
        relay.terminate()
    log = (tmp_path / f"relay-{relay.port}.log").read_text()
    assert "auth ok" in log  # the log is there and has events in it
    assert canary not in log
