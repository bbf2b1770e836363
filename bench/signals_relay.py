"""The corpus through a real relay (issue 14): `python bench/signals_eval.py --runner relay`.

Each conversation gets its own relay (in process, a fresh SQLite file, a settable clock) and
real clients: the two parties register with birth dates in their bands, the one who reached
out sends a contact request and the other accepts it `contact_days` before the first
message, and every line is sent through the client library at its time. The relay scores
what it stored; a risk notice counts when it reached the minor's client, a finding when it
is in the relay's findings. The adult's history with other minors is made for real too:
`a_recent_minor_contacts` throwaway minors get a contact request from the adult and the
first `a_pushback` of them decline it. `!blocked` / `!reported` lines are the minor's
block and report; lines the relay refuses (after a block) are not counted as seen.

The relay runs a copy of the chosen policy with only what a replay needs changed: an adult
may ask a minor for contact (the corpus has adults who reached out first), registration
from age 10 (the corpus has under-13s), no automatic restriction and no daily limits (the
adult's made-up history must not stop the conversation, nor its many registrations from
one address). The signals settings are the
chosen ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec

from client.errors import ClientError
from client.events import MessageReceived
from client.profile import Profile
from client.relay import RelayClient
from protocol.policy import Band, ConversationMode, Policy, Signals, is_minor
from server.app_keys import SIGNALS
from server.safety.signals import decode_risk
from server.safety.signals.evaluation import (
    CONTACT_EVENTS,
    Conversation,
    PartySpec,
    Trace,
    message_times,
)
from tests.support import Clock, Relay, make_profile, open_client, years_ago

#: Contact ages beyond this are all "someone the minor has known for a long time" to the
#: default rules (familiar: 90 days): a replay doesn't move the clock further, so bands stay.
LONGEST_CONTACT_DAYS = 120
#: Ages in each band that stay in it for the ~6 months a replay moves the clock.
AGE: dict[Band, int] = {"under_13": 12, "teen_13_15": 14, "teen_16_17": 16, "adult": 40}
NOTICE_WAIT = 5.0


def replay_policy(base: Policy, settings: Signals, mode: ConversationMode) -> Policy:
    """``base`` with only what a replay needs changed (module docstring); a conversation the
    corpus says was `e2ee` is encrypted whoever is in it (as under the `open` preset)."""
    replace = msgspec.structs.replace
    encryption = replace(base.encryption, e2ee="always") if mode == "e2ee" else base.encryption
    contact = replace(
        base.contact,
        adult_to_minor=replace(base.contact.adult_to_minor, search="always", initiate="request"),
    )
    limits = replace(
        base.limits,
        contact_requests_per_day=10_000,
        contact_requests_to_minors_per_day=10_000,
        lookups_per_day=10_000,
        registrations_per_address_per_hour=100_000,  # every persona comes from loopback
        searches_per_minute=100_000,
        bundle_fetches_per_minute=100_000,
    )
    return replace(
        base,
        name=f"{base.name}-replay",
        ages=replace(base.ages, minimum_age=10),
        encryption=encryption,
        contact=contact,
        limits=limits,
        restriction=replace(base.restriction, enabled=False),
        signals=settings,
    )


def to_toml(policy: Policy) -> str:
    """A policy as TOML (the relay reads policies from files; the standard library only
    reads TOML)."""
    lines: list[str] = []

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    def table(d: dict[str, object], path: str) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        if path and scalars:
            lines.append(f"\n[{path}]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(v, f"{path}.{json.dumps(k)}" if path else json.dumps(k))

    table(msgspec.to_builtins(policy), "")
    return "\n".join(lines) + "\n"


def handle_of(party: PartySpec) -> str:
    """Corpus handles may have dots; relay handles are ``[a-z0-9_]{3,32}``."""
    h = party.handle.lower().replace(".", "_").replace("-", "_")[:32]
    return h if len(h) >= 3 else f"{h}___"[:3]


def birthdate(band: Band) -> date:
    return years_ago(AGE[band], days=-30)


class RelayRunner:
    """Runs each conversation through its own relay (module docstring); ``run`` is
    synchronous like the engine runner's."""

    def __init__(self, base: Policy, settings: Signals, workdir: Path | None = None) -> None:
        self.base = base
        self.settings = settings
        self.workdir = workdir

    def run(self, conversation: Conversation) -> Trace:
        return asyncio.run(self.run_async(conversation))

    async def run_async(self, conversation: Conversation) -> Trace:
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="signals-") as tmp:
            base = Path(tmp)
            policy = replay_policy(self.base, self.settings, conversation.spec.mode)
            (base / "policy.toml").write_text(to_toml(policy), encoding="utf-8")
            clock = Clock(datetime.now(UTC).replace(microsecond=0))
            relay = await Relay(
                base / "relay", clock=clock, policy=str(base / "policy.toml")
            ).start()
            try:
                return await _Replay(conversation, relay, clock, base).run()
            finally:
                await relay.stop()


class _Replay:
    def __init__(self, conversation: Conversation, relay: Relay, clock: Clock, base: Path) -> None:
        self.c = conversation
        self.spec = conversation.spec
        self.relay = relay
        self.clock = clock
        self.base = base

    def at(self, when: datetime) -> None:
        assert self.clock.start is not None
        self.clock.offset = when - self.clock.start

    def timeline(self) -> tuple[datetime, list[datetime]]:
        """When the contact starts and when each line is sent, on the relay's clock: the
        corpus's times moved by whole days (so the minor's local time of day is the
        corpus's) to just after the clock's start (registration is at the real time)."""
        assert self.clock.start is not None
        times = message_times(self.spec)
        contact = times[0] - timedelta(days=min(self.spec.contact_days, LONGEST_CONTACT_DAYS))
        shift = timedelta(days=(self.clock.start - contact).days + 1)
        return contact + shift, [t + shift for t in times]

    async def run(self) -> Trace:
        spec = self.spec
        handles = {"a": handle_of(spec.a), "b": handle_of(spec.b)}
        bands = {"a": spec.a.band, "b": spec.b.band}
        profiles = {
            side: await make_profile(
                self.base, self.relay.url, handles[side], birthdate(bands[side])
            )
            for side in ("a", "b")
        }
        adult = next((s for s in ("a", "b") if bands[s] == "adult"), None)
        minor = next((s for s in ("a", "b") if is_minor(bands[s])), None)
        contact_at, times = self.timeline()
        zone = timedelta(hours=spec.tz)
        fillers, pushback = [], 0
        if adult is not None:
            fillers, pushback = await self._fillers(adult, handles[adult])
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                side: await stack.enter_async_context(self._client(profiles[side], zone))
                for side in ("a", "b")
            }
            self.at(contact_at)
            if adult is not None:
                await self._history(clients[adult], fillers, pushback)
            await self._connect(clients, handles)
            return await self._messages(clients, handles, minor, times)

    @contextlib.asynccontextmanager
    async def _client(  # type: ignore[no-untyped-def]
        self, profile, zone: timedelta = timedelta(0)
    ) -> AsyncIterator[RelayClient]:
        async with open_client(profile, utc_offset=zone) as client:
            await client.wait_connected()
            await asyncio.wait_for(client.synced.wait(), 10)
            yield client

    async def _fillers(self, side: str, handle: str) -> tuple[list[Profile], int]:
        """Minors for the adult's recent outreach (registered now: a registration's signed
        declaration must be fresh), and how many of them push back."""
        spec = self.spec
        recent = spec.a_recent_minor_contacts if side == "a" else spec.b_recent_minor_contacts
        pushback = spec.a_pushback if side == "a" else spec.b_pushback
        reached_out_here = spec.initiator == side and self._minor_present()
        others = max(pushback, recent - int(reached_out_here))
        teen = birthdate("teen_13_15")
        return [
            await make_profile(self.base, self.relay.url, f"x{n}_{handle}"[:32], teen)
            for n in range(others)
        ], pushback

    async def _history(self, adult: RelayClient, fillers: list[Profile], pushback: int) -> None:
        """The adult's recent outreach to other minors, and pushback from some of them."""
        for n, filler in enumerate(fillers):
            await adult.contact_request(filler.handle)
            if n < pushback:
                async with self._client(filler) as f:
                    await f.respond(adult.handle, accept=False)

    def _minor_present(self) -> bool:
        return is_minor(self.spec.a.band) or is_minor(self.spec.b.band)

    async def _connect(self, clients: dict[str, RelayClient], handles: dict[str, str]) -> None:
        first = self.spec.initiator
        other = "b" if first == "a" else "a"
        await clients[first].contact_request(handles[other])
        await clients[other].respond(handles[first], accept=True)

    async def _messages(
        self,
        clients: dict[str, RelayClient],
        handles: dict[str, str],
        minor: str | None,
        times: list[datetime],
    ) -> Trace:
        spec = self.spec
        seen = 0
        first_notice = first_finding = None
        noticed: list[str] = []
        findings = 0
        for (who, _stamp, text), at in zip(spec.messages, times, strict=True):
            self.at(at)
            other = "b" if who == "a" else "a"
            sender = clients[who]
            if await self._line(sender, handles[other], text):
                seen += 1  # contact events and refused lines aren't messages the relay saw
            await self.relay.app[SIGNALS].drain()
            state = self._state(handles)
            if minor is not None and len(state.noticed) > len(noticed):
                new = state.noticed[len(noticed) :]
                await self._notice_arrives(clients[minor], new)
                noticed = list(state.noticed)
                first_notice = first_notice or seen
            if self._signals_findings() > findings:
                findings = self._signals_findings()
                first_finding = first_finding or seen
        state = self._state(handles)
        return Trace(
            conversation=self.c.id,
            messages=seen,
            first_notice=first_notice,
            first_finding=first_finding,
            notices=len(noticed),
            max_score=state.score,
            notice_rules=tuple(noticed),
            fired=tuple(dict.fromkeys(f.rule for f in state.firings)),
        )

    async def _line(self, sender: RelayClient, to: str, text: str) -> bool:
        """Send one corpus line; True if it was a message the relay stored."""
        try:
            if text == "!blocked":
                await sender.block(to)
            elif text == "!reported":
                await sender.report(to, "replayed corpus report")
            elif text.startswith("!") and text in CONTACT_EVENTS:
                raise NotImplementedError(f"{self.c.id}: {text} is not replayed yet")
            else:
                message = await sender.send(to, text)
                await sender.wait_accepted(message.msg_id)
                return True
        except ClientError:
            pass  # refused (after a block): nothing for the relay to score
        return False

    async def _notice_arrives(self, client: RelayClient, rules: list[str]) -> None:
        """The relay says it gave a notice: it must reach the minor's client."""
        wanted = {f"risk_{r}" for r in rules}
        loop = asyncio.get_running_loop()
        end = loop.time() + NOTICE_WAIT
        while wanted and (event := await client.next_event(max(0.0, end - loop.time()))):
            if isinstance(event, MessageReceived) and event.message.kind == "notice":
                wanted.discard(event.message.code or "")
        if wanted:
            raise RuntimeError(f"{self.c.id}: notice {sorted(wanted)} never reached the minor")

    def _state(self, handles: dict[str, str]):  # type: ignore[no-untyped-def]
        low, high = sorted(handles.values())
        with contextlib.closing(sqlite3.connect(self.relay.config.database_path)) as db:
            row = db.execute(
                "SELECT state FROM conversation_risk WHERE conversation = ?", (f"dm:{low}:{high}",)
            ).fetchone()
        return decode_risk(None if row is None else bytes(row[0]))

    def _signals_findings(self) -> int:
        with contextlib.closing(sqlite3.connect(self.relay.config.database_path)) as db:
            (n,) = db.execute("SELECT COUNT(*) FROM findings WHERE source = 'signals'").fetchone()
        return int(n)
