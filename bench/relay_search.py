"""Directory search at 100,000 accounts, and what one connection's searches cost the others.

Not a test: it prints figures, measured in one run on one machine, for issue #10's targets
(search ≤ 5 ms median at 100,000 accounts; 10 pipelined searches from one connection raise
another connection's send p50 by less than 10 ms).

**Setup: the population is seeded, not registered.** Registering 100,000 accounts over HTTP
would take longer than everything measured, so a setup step writes them into a fresh data
directory through the relay's own store code — `SqliteStore.create_account` and
`SocialStore.set_announced_band`, the rows `POST /v1/accounts` writes, in one transaction,
each account with its own Ed25519 key, X25519 form and signed age declaration. The relay then
starts normally from a copy of that directory (`python -m launcher server --data-dir ...`, its
own process pinned to CPU 1) and loads the accounts as after any restart. The accounts that
take part — a searcher, a sender and its contact — register over HTTP with signed
declarations, log in with the challenge–response and speak raw WebSocket frames (the client
of bench/relay_throughput.py); every search and message goes over a real connection.

The population: names from lists of common first names and surnames of many languages,
weighted so that some are much more common than others (as real names cluster); handles
made from them as people make them (`mariakowalski`, `maria_k`, `kowalski_m`, `maria2009`),
display names such as "Maria Kowalski", "Maria K.", "maria", "Ana Silva-Costa", a few in
other scripts ("Анна Иванова"). 60% adults, 20% aged 16–17, 20% aged 13–15.

**Policy.** `default`, copied to a temporary file with `limits.searches_per_minute` raised to
1,000,000: the preset allows 30 a minute and this measurement makes thousands (the limit is
its own, tested protection; here it would only answer `search_limited`). The searcher is an
adult, so under `default` the minors it isn't connected with are filtered out: a prefix whose
matches are mostly minors walks further through the index (at most SEARCH_WALK_LIMIT).

(a) **Search latency.** Queries drawn from the population, sent one at a time over the
WebSocket (the next when the answer is in): prefixes of handles and display names of 1, 2, 3
and 4 characters and longer (a first name, "maria ko", a whole handle, which comes back
first), some with `@` or capitals, and misses. Median and p99 of the round trip at 100,000
accounts, and of the same kinds of queries at 1,000 accounts (another relay, same run): the
ratio shows whether the cost grows with the number of accounts. The first search after a
start, which builds the index, is timed apart. Also the search call's own time in-process
(`SocialService.search` on the seeded store, no network). Every answer is checked: at most
`max_search_results`, no minor, every result's handle or name starts with the query, the
exact handle first; anything else fails the run.

(b) **Interference.** The sender writes to its connected contact at a steady rate
(e2ee-shaped envelopes with franking commitments; the contact acks every `deliver`, the
sender counts its `delivered` receipts). Its send→accepted and send→deliver times are taken
in alternating phases: quiet, and while the searcher keeps 10 searches in flight (each
answer sends the next). The figure is the p50 under searches minus the p50 in quiet.

An `error` frame, a frame nobody expects, a closed connection or a wait longer than its
timeout stops the run with a message and exit status 1: it never hangs.

    python bench/relay_search.py [--accounts 100000] [--baseline 1000] [--rounds 3]
    python bench/relay_search.py --smoke      # seconds, small sizes, no timing claims
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import itertools
import random
import shutil
import statistics
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import nacl.signing  # noqa: E402
from relay_throughput import (  # noqa: E402
    AGE_OF,
    BenchFailure,
    Bodies,
    Peer,
    Result,
    birthdate_for,
    free_port,
    pin,
    server,
)

from protocol import policy as rules  # noqa: E402
from protocol.codec import encode, encode_frame  # noqa: E402
from protocol.frames import RELAY_HANDLE as RELAY  # noqa: E402
from protocol.frames import (  # noqa: E402
    Auth,
    ContactRequest,
    ContactRespond,
    Done,
    Search,
    SearchResult,
)
from protocol.identity import auth_message, declaration_message, dh_key_for  # noqa: E402
from protocol.registration import AgeDeclaration, RegisterRequest  # noqa: E402

BAND_SHARES = (("adult", 0.6), ("teen_16_17", 0.2), ("teen_13_15", 0.2))
PIPELINE = 10  # searches in flight from the one connection that searches


def _words(text: str) -> list[str]:
    return text.split()


# Common names of many languages, roughly most common first: the weights make the first
# ones far more common (real names cluster, so a short prefix like "ma" has many matches).
FIRST = _words(
    "Maria Mohammed José Anna Wei Ali John David Fatima Daniel Sofia Emma Olivia Noah Liam "
    "Lucas Mia Ahmed Juan Luis Ana Carlos Sarah Laura Michael James Elena Ivan Olga Chen "
    "Yuki Hiroshi Priya Amit Rahul Aisha Omar Hassan Leila Mehmet Ayşe Emre Zeynep Lena "
    "Jonas Felix Paul Marie Léa Chloé Hugo Louis Jules Matteo Giulia Francesco Alessandro "
    "Sara Martina Pablo Lucía Diego Valentina Mateo Camila Isabella Gabriel Rafael Beatriz "
    "Tomasz Katarzyna Piotr Agnieszka Jakub Zofia Oliver Charlotte Amelia George Harry Jack "
    "Grace Chloe Ella Ethan Ava Mason Logan Aiden Zoë Nia Kwame Amara Chidi Ngozi Thandiwe "
    "Sipho Tariq Yusuf Mariam Nour Karim Samir Dina Rania Arjun Ananya Kavya Rohan Sanjay "
    "Mei Li Jun Hana Minji Jisoo Seojun Haruto Sakura Aiko Kenji Nikolai Dmitri Svetlana "
    "Katya Ingrid Astrid Lars Erik Freya Sven Mikko Aino Eero Björn Saoirse Niamh Cian Oisín "
    "Xavier Quentin Yara Uma Vera Wanda Xenia Yvonne Zara Quinn Ulla"
)
SURNAMES = _words(
    "Smith García Wang Kumar Silva Müller Rossi Kowalski Nguyen Kim Ivanov Martin Johnson "
    "Rodríguez Li Patel Santos Schmidt Bianchi Nowak Tran Lee Petrov Bernard Williams "
    "González Zhang Singh Oliveira Schneider Romano Wiśniewski Pham Park Smirnov Dubois "
    "Brown Fernández Liu Sharma Pereira Fischer Colombo Wójcik Hoang Choi Popov Thomas Jones "
    "López Chen Gupta Costa Weber Ricci Kamiński Phan Jung Sokolov Robert Miller Martínez "
    "Yang Shah Ferreira Meyer Marino Lewandowski Vu Kang Lebedev Richard Davis Sánchez Huang "
    "Mehta Almeida Wagner Greco Zieliński Dang Cho Kozlov Petit Taylor Pérez Zhao Reddy "
    "Carvalho Becker Bruno Szymański Bui Yoon Novikov Durand Wilson Gómez Wu Iyer Gomes "
    "Schulz Gallo Woźniak Do Jang Morozov Leroy Anderson Díaz Zhou Nair Ribeiro Hoffmann "
    "Conti Dąbrowski Ngo Lim Volkov Moreau Okafor Mensah Adeyemi Diallo Mwangi Hassan Haddad "
    "Yilmaz Kaya Demir Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi "
    "Andersson Johansson Nielsen Hansen Virtanen Korhonen Murphy Kelly Byrne Walsh O'Brien"
)
# A few people write their name in another script (the handle stays ASCII).
OTHER_SCRIPTS = (
    ("Анна Иванова", "anna"),
    ("Дмитрий Смирнов", "dmitri"),
    ("Ελένη Παπαδοπούλου", "eleni"),
    ("Γιώργος", "giorgos"),
    ("陈伟", "chenwei"),
    ("李娜", "lina"),
    ("محمد علي", "mohammed"),
    ("فاطمة", "fatima"),
    ("佐藤 さくら", "sakura"),
    ("김민지", "minji"),
    ("प्रिया", "priya"),
    ("יעל כהן", "yael"),
)
WORDS = _words("sun moon star sky blue red cat fox wolf bear music art game code ball")
_FOLD = str.maketrans({"ł": "l", "ø": "o", "ß": "ss", "æ": "ae", "đ": "d", "ı": "i", "'": ""})


def ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c == "_"))


@dataclass(frozen=True)
class Account:
    handle: str
    display_name: str
    band: rules.Band


def make_population(n: int, today: date, seed: int = 11) -> list[Account]:
    """``n`` accounts with realistic, unique handles and display names (deterministic)."""
    rnd = random.Random(seed)
    first_w = [1 / (i + 8) for i in range(len(FIRST))]
    last_w = [1 / (i + 8) for i in range(len(SURNAMES))]
    bands: list[rules.Band] = []
    for band, share in BAND_SHARES:
        bands += [band] * round(n * share)
    bands = (bands + ["adult"] * n)[:n]
    rnd.shuffle(bands)
    taken: set[str] = set()
    people = []
    for band in bands:
        first = rnd.choices(FIRST, first_w)[0]
        last = rnd.choices(SURNAMES, last_w)[0]
        f, s = ascii_fold(first), ascii_fold(last)
        year = today.year - AGE_OF[band] - rnd.randrange(0, 3)
        style = rnd.random()
        if style < 0.04:
            name, f = rnd.choice(OTHER_SCRIPTS)
        elif style < 0.62:
            name = f"{first} {last}"
        elif style < 0.72:
            name = first
        elif style < 0.82:
            name = f"{first} {last[0]}."
        elif style < 0.88:
            name = f"{first} {last}".lower()
        elif style < 0.94:
            name = f"{first} {last}-{rnd.choices(SURNAMES, last_w)[0]}"
        else:
            name = f"{first} {rnd.choice('🌸⚽🎮🎧✨🐱')}"
        handle = rnd.choice(
            (
                f"{f}{s}",
                f"{f}_{s}",
                f"{f}_{s[:1]}",
                f"{s}_{f[:1]}",
                f"{f[:1]}{s}",
                f"{f}{year}",
                f"{f}{s[:1]}{year % 100:02d}",
                f"{f}_{rnd.choice(WORDS)}",
                f"the_{f}",
            )
        )[:28]
        while handle in taken or len(handle) < 3:
            handle = f"{handle[:26]}{rnd.randrange(100, 10000)}"[:32]
        taken.add(handle)
        people.append(Account(handle, name, band))
    return people


def make_queries(people: list[Account], count: int, seed: int) -> list[str]:
    """Queries as people type them: prefixes of 1–4 characters and longer of handles and
    names, exact handles, a few with `@` or capitals, and misses."""
    rnd = random.Random(seed)
    keys = sorted({p.handle for p in people} | {p.display_name.casefold() for p in people})

    def exists(prefix: str) -> bool:
        i = bisect.bisect_left(keys, prefix)
        return i < len(keys) and keys[i].startswith(prefix)

    out = []
    while len(out) < count:
        p = rnd.choice(people)
        kind = rnd.random()
        if kind < 0.12:  # a miss: letters no name here starts with
            q = "".join(rnd.choice("qxzjvkwy") for _ in range(rnd.randrange(3, 7)))
            if exists(q.casefold()):
                continue
        elif kind < 0.22:  # the whole handle, perhaps with @
            q = ("@" if rnd.random() < 0.3 else "") + p.handle
        else:
            source = p.handle if rnd.random() < 0.5 else p.display_name
            n = rnd.choice((1, 2, 2, 3, 3, 4, 4, 5, 6, 8, 12))
            q = source[:n].strip()
            if not q:
                continue
            if rnd.random() < 0.15:
                q = q.capitalize()
        out.append(q)
    return out


def normalise(query: str) -> str:
    """The relay's normalisation of a query (docs/PROTOCOL.md `search`)."""
    return query.strip().lower().lstrip("@").strip()


# --- seeding a data directory through the relay's store code -------------------------------


def search_policy(directory: Path) -> Path:
    """The `default` preset with the per-minute search limit raised (see the docstring)."""
    text = (ROOT / "policies" / "default.toml").read_text()
    lines = text.splitlines()
    lines = [ln for ln in lines if not ln.strip().startswith("searches_per_minute")]
    at = lines.index("[limits]") + 1
    lines.insert(at, "searches_per_minute = 1000000  # bench/relay_search.py measures search")
    path = directory / "search-bench.toml"
    path.write_text("\n".join(lines) + "\n")
    rules.parse_policy(path.read_text())  # fail here, not in the relay, if it doesn't parse
    return path


class _NoWriteBehind:
    """Seeding writes accounts only: nothing goes through the relay's group commit."""

    def submit_write(self, sql: str, params: tuple[object, ...]) -> None:
        raise RuntimeError("seeding writes nothing behind")


async def seed(data_dir: Path, people: list[Account]) -> None:
    from server.config import RelayConfig
    from server.delivery.records import AccountRecord
    from server.delivery.store import SqliteStore
    from server.social.store import SocialStore

    now = datetime.now(UTC).replace(microsecond=0)
    database = RelayConfig(data_dir=data_dir).database_path
    store = SqliteStore(database, synchronous="OFF")  # a setup step: no fsync per row
    await store.open()
    try:  # closed on any failure: an open store's threads would keep the process alive
        social = SocialStore(store, _NoWriteBehind())
        await store.db.execute("BEGIN IMMEDIATE")
        for p in people:
            key = nacl.signing.SigningKey(hashlib.sha256(p.handle.encode()).digest())
            public = bytes(key.verify_key)
            born = birthdate_for(p.band, now.date())
            signed = declaration_message(p.handle, p.band, public, now)
            declaration = AgeDeclaration(
                handle=p.handle,
                band=p.band,
                identity_key=public,
                declared_at=now,
                signature=key.sign(signed).signature,
            )
            await store.create_account(
                AccountRecord(
                    handle=p.handle,
                    display_name=p.display_name,
                    identity_key=public,
                    dh_identity_key=dh_key_for(public),
                    birthdate=born,
                    declaration=encode(declaration),
                    created_at=now,
                )
            )
            await social.set_announced_band(p.handle, p.band)
        await store.db.execute("COMMIT")
    finally:
        await store.close()


async def in_process(
    data_dir: Path, policy_path: Path, actor: str, queries: list[str]
) -> tuple[list[float], float]:
    """``SocialService.search`` over the seeded store in this process, no network: ms per
    query, and ms of the first search (which builds the index). The service gets its
    accounts as ``SocialService.load`` reads them; the rest of what ``load`` reads (contacts,
    blocks, restrictions) is empty in a seeded store, and reading it costs two queries per
    account, so it is left out."""
    from server.config import RelayConfig
    from server.delivery.group_commit import GroupCommitter
    from server.delivery.store import SqliteStore
    from server.policy.loader import load_policy
    from server.social.service import SocialService
    from server.social.store import AccountInfo

    store = SqliteStore(RelayConfig(data_dir=data_dir).database_path)
    await store.open()
    try:
        clock = lambda: datetime.now(UTC)  # noqa: E731
        committer = GroupCommitter(store, clock, lambda _: None)
        service = SocialService(store, load_policy(str(policy_path)), clock, committer)
        rows = await service.social.accounts()
        service.accounts = {h: AccountInfo(n, b) for h, n, b in rows}
        start = time.perf_counter_ns()
        service.search(actor, queries[0])
        first = (time.perf_counter_ns() - start) / 1e6
        times = []
        for q in queries:
            start = time.perf_counter_ns()
            service.search(actor, q)
            times.append((time.perf_counter_ns() - start) / 1e6)
        return times, first
    finally:
        await store.close()


# --- the relay: a subprocess on CPU 1, from a copy of the seeded directory -----------------


@contextlib.contextmanager
def relay(data_dir: Path, policy_path: Path):
    """The agechat relay on ``data_dir`` (relay_throughput's server(): CPU 1, its log shown
    on failure, 30 s to start); yields (port, seconds it took to listen)."""
    port = free_port()
    cmd = [sys.executable, "-m", "launcher", "server", "--data-dir", str(data_dir)]
    cmd += ["--port", str(port), "--policy", str(policy_path)]
    started = time.perf_counter()
    with server(cmd, port):
        yield port, time.perf_counter() - started


# --- the clients: relay_throughput's raw WebSocket Peer, with search and a steady sender ---


class Session:
    """What a Peer needs of its run, the checks on every answer, and the failure that stops
    everything."""

    def __init__(self, people: list[Account], policy: rules.Policy, searcher: str) -> None:
        self.progress = 0
        self.phase = "connect"
        self.closing = False
        self.strict = True
        self.failure: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.people = {p.handle: p for p in people}
        self.policy = policy
        self.searcher = searcher
        self.peers: list[Client] = []
        #: send id → (perf_counter_ns at send, phase label)
        self.sent: dict[str, tuple[int, str]] = {}
        self.accepted_ms: dict[str, list[float]] = {}
        self.deliver_ms: dict[str, list[float]] = {}
        self.receipts = 0
        self.found = 0  # answers with at least one account

    def fail(self, why: str) -> None:
        if not self.failure.done():
            self.failure.set_exception(BenchFailure(why))

    async def wait(self, awaitable: Any, seconds: float, what: str) -> Any:
        """``awaitable``, or the failure that happened meanwhile, or a loud timeout."""
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait(
                {task, self.failure}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if self.failure in done:
                self.failure.result()  # raises BenchFailure
            if task not in done:
                raise BenchFailure(f"timed out after {seconds:.0f} s {what} ({self.phase})")
            return task.result()
        finally:
            task.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def until(self, predicate: Callable[[], bool], seconds: float, what: str) -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.005)

        await self.wait(poll(), seconds, what)

    def findable(self, handle: str) -> bool:
        p = self.people.get(handle)
        if p is None or handle == self.searcher:
            return False
        return rules.may_find(self.policy, rules.Facts(actor="adult", target=p.band)).allowed

    def check(self, query: str, results: list[Any]) -> None:
        """What the relay promises about a search answer (docs/PROTOCOL.md `search`)."""
        q = normalise(query).casefold()
        problem = None
        if len(results) > self.policy.limits.max_search_results:
            problem = f"{len(results)} results"
        for r in results:
            p = self.people.get(r.handle)
            if p is None or p.display_name != r.display_name:
                problem = f"{r} is nobody the bench made"
            elif not (r.handle.startswith(q) or p.display_name.casefold().startswith(q)):
                problem = f"{r} doesn't start with {q!r}"
            elif not self.findable(r.handle):
                problem = f"{r} ({p.band}) shouldn't be found by an adult stranger"
        if self.findable(q) and (not results or results[0].handle != q):
            problem = f"the exact handle {q!r} isn't first"
        if problem is not None:
            self.fail(f"search {query!r}: {problem}: {results}")
        self.found += bool(results)


class Client(Peer):
    """One account's connection. Searches: one at a time (``search``) or ``PIPELINE`` in
    flight (``pipeline``). Messages: ``send`` to ``self.to``; the contact acks each one."""

    def __init__(self, session: Session, member: Any, port: int) -> None:
        super().__init__(session, member, port)  # type: ignore[arg-type]
        self.session = session
        self.handlers[SearchResult] = self._on_search_result
        self.searches: dict[str, tuple[str, int]] = {}  # rid → (query, sent ns)
        self.search_ms: list[float] = []
        self.next_answer: asyncio.Future[float] | None = None
        self.pipeline: Iterator[str] | None = None  # queries to pipeline, while set
        self.answered = 0
        self.n = 0
        self.to = ""
        self.mode = "e2ee"
        self.bodies: Bodies | None = None
        self.started_to = False
        self.outstanding_sends: set[str] = set()
        self.receipts_due: set[str] = set()

    # searching

    def search(self, query: str) -> None:
        self.n += 1
        rid = f"search-{self.n:08d}"
        self.searches[rid] = (query, time.perf_counter_ns())
        self.write(encode_frame(Search(rid=rid, query=query)))

    async def search_once(self, query: str, seconds: float) -> float:
        self.next_answer = asyncio.get_running_loop().create_future()
        self.search(query)
        return await self.session.wait(self.next_answer, seconds, f"searching {query!r}")

    def _on_search_result(self, frame: SearchResult, payload: bytes) -> None:
        query, sent = self.searches.pop(frame.rid, (None, 0))
        if query is None:
            return self.fail(f"an answer to no search: {payload[:600]!r}")
        ms = (time.perf_counter_ns() - sent) / 1e6
        self.session.check(query, frame.results)
        self.answered += 1
        if self.next_answer is not None and not self.next_answer.done():
            self.next_answer.set_result(ms)
        if self.pipeline is not None:
            self.search(next(self.pipeline))

    # messaging

    def send(self, label: str) -> None:
        assert self.bodies is not None
        self.n += 1
        mid = f"{self.handle}-{self.n:07d}"
        pick = self.n % len(self.bodies.visible)
        if self.mode == "e2ee":
            body = (self.bodies.e2ee if self.started_to else self.bodies.initial)[pick]
            self.started_to = True
            commitment = self.bodies.commitments[pick % len(self.bodies.commitments)]
            text = (
                f'{{"type":"send","id":"{mid}","to":"{self.to}","mode":"e2ee",'
                f'"body":"{body}","commitment":"{commitment}"}}'
            )
        else:
            text = (
                f'{{"type":"send","id":"{mid}","to":"{self.to}","mode":"visible",'
                f'"body":{self.bodies.visible[pick]}}}'
            )
        self.outstanding_sends.add(mid)
        self.receipts_due.add(mid)
        self.session.sent[mid] = (time.perf_counter_ns(), label)
        self.write(text)

    def _on_accepted(self, frame: Any, payload: bytes) -> None:
        if frame.id not in self.outstanding_sends or frame.request:
            return self.fail(f"unexpected frame: {payload[:600]!r}")
        self.outstanding_sends.discard(frame.id)
        sent, label = self.session.sent[frame.id]
        ms = (time.perf_counter_ns() - sent) / 1e6
        self.session.accepted_ms.setdefault(label, []).append(ms)

    def _on_deliver(self, frame: Any, payload: bytes) -> None:
        session = self.session
        if frame.kind != "message":
            if session.phase != "contacts" or frame.sender != RELAY:
                return self.fail(f"an event the bench didn't expect: {payload[:600]!r}")
        else:
            sent = session.sent.get(frame.id)
            if sent is None or frame.request or frame.mode != self.mode_from(frame.sender):
                return self.fail(f"a message the bench didn't send: {payload[:600]!r}")
            ms = (time.perf_counter_ns() - sent[0]) / 1e6
            session.deliver_ms.setdefault(sent[1], []).append(ms)
        self.write(f'{{"type":"ack","refs":[{{"from":"{frame.sender}","id":"{frame.id}"}}]}}')

    def mode_from(self, sender: str) -> str:
        return next(p.mode for p in self.session.peers if p.handle == sender)

    def _on_delivered(self, frame: Any, payload: bytes) -> None:
        if frame.id not in self.receipts_due:
            return self.fail(f"a receipt for no message: {payload[:600]!r}")
        self.receipts_due.discard(frame.id)
        self.session.receipts += 1


@dataclass
class Taking:
    """One of the accounts that take part: registered over HTTP, logged in over WebSocket."""

    index: int
    handle: str
    band: rules.Band
    birthdate: date
    key: Any = field(default=None)


async def register(port: int, who: list[Taking], session: Session) -> None:
    import aiohttp

    now = datetime.now(UTC).replace(microsecond=0)
    async with aiohttp.ClientSession() as http:
        for m in who:
            key = bytes(m.key.verify_key)
            signed = declaration_message(m.handle, m.band, key, now)
            body = RegisterRequest(
                handle=m.handle,
                display_name=m.handle.replace("_", " ").title(),
                identity_key=key,
                dh_identity_key=dh_key_for(key),
                birthdate=m.birthdate,
                declaration=AgeDeclaration(
                    handle=m.handle,
                    band=m.band,
                    identity_key=key,
                    declared_at=now,
                    signature=m.key.sign(signed).signature,
                ),
            )
            url = f"http://127.0.0.1:{port}/v1/accounts"
            post = http.post(url, data=encode(body), timeout=aiohttp.ClientTimeout(total=30))
            async with post as response:
                if response.status != 201:
                    text = await response.text()
                    raise BenchFailure(f"registering {m.handle}: HTTP {response.status} {text}")
            session.people[m.handle] = Account(m.handle, body.display_name, m.band)


async def connect(port: int, m: Taking, session: Session) -> Client:
    loop = asyncio.get_running_loop()

    async def login() -> Client:
        _, peer = await loop.create_connection(lambda: Client(session, m, port), "127.0.0.1", port)
        session.peers.append(peer)
        challenge = await peer.challenge
        signed = auth_message(challenge.relay_id, challenge.nonce, m.handle)
        peer.write(encode_frame(Auth(handle=m.handle, signature=m.key.sign(signed).signature)))
        await peer.ready
        await peer.synced
        return peer

    return await session.wait(login(), 30, f"logging in {m.handle}")


async def make_contacts(sender: Client, receiver: Client, session: Session) -> None:
    session.phase = "contacts"
    ask = sender.request(ContactRequest(rid="contact-request-1", to=receiver.handle))
    done: Done = await session.wait(ask, 30, "asking for contact")
    if done.outcome != "requested":
        raise BenchFailure(f"contact_request: {done}")
    accept = ContactRespond(rid="contact-respond-1", handle=sender.handle, accept=True)
    done = await session.wait(receiver.request(accept), 30, "accepting")
    if done.outcome != "connected":
        raise BenchFailure(f"contact_respond: {done}")
    await asyncio.sleep(0.3)  # the events those bring (acked by the clients)
    mode = rules.conversation_mode(session.policy, [sender.member.band, receiver.member.band])
    sender.mode = receiver.mode = mode
    sender.to, receiver.to = receiver.handle, sender.handle
    session.phase = "measure"


# --- the measurements ----------------------------------------------------------------------


@dataclass
class SearchRound:
    accounts: int
    start_s: float
    first_ms: float
    ms: list[float]
    found: int


@dataclass
class SendRound:
    quiet_accepted: list[float]
    loaded_accepted: list[float]
    quiet_deliver: list[float]
    loaded_deliver: list[float]
    searches: int
    search_seconds: float

    def p50(self, which: str) -> float:
        return statistics.median(getattr(self, which))


def takers(today: date, interference: bool) -> list[Taking]:
    names = ["bench_searcher"] + (["bench_sender", "bench_receiver"] if interference else [])
    out = []
    for i, handle in enumerate(names):
        key = nacl.signing.SigningKey(hashlib.sha256(handle.encode()).digest())
        out.append(Taking(i, handle, "adult", birthdate_for("adult", today), key))
    return out


async def one_round(
    args: Any,
    template: Path,
    people: list[Account],
    policy_path: Path,
    queries: list[str],
    interference: bool,
) -> tuple[SearchRound, SendRound | None]:
    today = datetime.now(UTC).date()
    policy = rules.parse_policy(policy_path.read_text())
    with tempfile.TemporaryDirectory(prefix="relay-search-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(template, data)
        with relay(data, policy_path) as (port, start_s):
            session = Session(people, policy, "bench_searcher")
            try:
                who = takers(today, interference)
                await session.wait(register(port, who, session), 60, "registering")
                peers = [await connect(port, m, session) for m in who]
                searcher = peers[0]
                session.phase = "first search"
                first_ms = await searcher.search_once(queries[0], args.timeout)
                session.phase = "searches"
                for q in queries:
                    searcher.search_ms.append(await searcher.search_once(q, args.timeout))
                searched = SearchRound(
                    len(people), start_s, first_ms, searcher.search_ms, session.found
                )
                sends = None
                if interference:
                    sends = await interfere(args, session, searcher, peers[1], peers[2], queries)
                return searched, sends
            finally:
                session.closing = True
                for peer in session.peers:
                    if peer.transport is not None:
                        peer.transport.abort()


async def interfere(
    args: Any,
    session: Session,
    searcher: Client,
    sender: Client,
    receiver: Client,
    queries: list[str],
) -> SendRound:
    sender.bodies = Bodies()
    await make_contacts(sender, receiver, session)
    loop = asyncio.get_running_loop()
    searched = 0
    search_seconds = 0.0

    async def steady(label: str) -> None:
        interval = 1 / args.rate
        at = loop.time()
        end = at + args.phase
        while at < end:
            sender.send(label)
            at += interval
            await asyncio.sleep(max(0.0, at - loop.time()))

    def settled() -> bool:
        return not sender.outstanding_sends and not sender.receipts_due

    # A short warm-up of both, not counted; then quiet and loaded phases, alternating.
    labels = ["warm-up"] + ["quiet", "loaded"] * args.switches
    for label in labels:
        before = searcher.answered
        started = loop.time()
        if label != "quiet":
            searcher.pipeline = itertools.cycle(queries)
            for _ in range(PIPELINE):
                searcher.search(next(searcher.pipeline))
        await session.wait(steady(label), args.phase + args.timeout, f"sending ({label})")
        searcher.pipeline = None
        await session.until(lambda: not searcher.searches, args.timeout, "draining searches")
        if label == "loaded":
            searched += searcher.answered - before
            search_seconds += loop.time() - started
        await session.until(settled, args.timeout, "waiting for answers and receipts")
    return SendRound(
        session.accepted_ms["quiet"],
        session.accepted_ms["loaded"],
        session.deliver_ms["quiet"],
        session.deliver_ms["loaded"],
        searched,
        search_seconds,
    )


def pct(data: list[float], p: float) -> float:
    return Result.percentile(data, p)


def run(args: Any) -> None:
    today = datetime.now(UTC).date()
    sizes = [args.baseline, args.accounts]
    with tempfile.TemporaryDirectory(prefix="relay-search-setup-") as tmp:
        policy_path = search_policy(Path(tmp))
        populations, templates, queries = {}, {}, {}
        for n in sizes:
            t = time.perf_counter()
            people = make_population(n, today)
            populations[n] = people
            templates[n] = Path(tmp) / f"data-{n}"
            asyncio.run(seed(templates[n], people))
            queries[n] = make_queries(people, args.searches, seed=n)
            adults = sum(p.band == "adult" for p in people)
            print(
                f"seeded {n} accounts ({adults} adults, {n - adults} aged 13–17) through the "
                f"relay's store code in {time.perf_counter() - t:.1f} s",
                flush=True,
            )
        print(
            f"{args.searches} searches per size per round, one at a time, e.g. "
            f"{', '.join(repr(q) for q in queries[args.accounts][:12])}; policy `default` with "
            f"searches_per_minute raised to 1,000,000; searcher: an adult",
            flush=True,
        )
        inproc = {}
        for n in sizes:
            actor = next(p.handle for p in populations[n] if p.band == "adult")
            inproc[n] = asyncio.run(in_process(templates[n], policy_path, actor, queries[n]))
            times, first = inproc[n]
            print(
                f"in-process SocialService.search at {n:6d} accounts: p50 "
                f"{statistics.median(times):.3f} ms p99 {pct(times, 0.99):.3f} ms max "
                f"{max(times):.3f} ms (first search, building the index: {first:.0f} ms)",
                flush=True,
            )
        rounds: list[dict[int, SearchRound]] = []
        sends: list[SendRound] = []
        for r in range(1, args.rounds + 1):
            got: dict[int, SearchRound] = {}
            for n in sizes:
                searched, sent = asyncio.run(
                    one_round(
                        args,
                        templates[n],
                        populations[n],
                        policy_path,
                        queries[n],
                        interference=n == args.accounts,
                    )
                )
                got[n] = searched
                print(
                    f"round {r} {n:6d} accounts: relay listening after {searched.start_s:5.1f} s, "
                    f"first search {searched.first_ms:6.1f} ms, then search p50 "
                    f"{statistics.median(searched.ms):.2f} ms p99 {pct(searched.ms, 0.99):.2f} "
                    f"ms max {max(searched.ms):.2f} ms ({searched.found}/{len(searched.ms)} "
                    f"found someone)",
                    flush=True,
                )
                if sent is not None:
                    sends.append(sent)
                    print(
                        f"round {r} sends at {args.rate:.0f}/s: quiet accepted p50 "
                        f"{sent.p50('quiet_accepted'):.2f} p99 {pct(sent.quiet_accepted, 0.99):.2f}"
                        f" ms, deliver p50 {sent.p50('quiet_deliver'):.2f} ms; under {PIPELINE} "
                        f"pipelined searches ({sent.searches / sent.search_seconds:.0f} "
                        f"searches/s) accepted p50 {sent.p50('loaded_accepted'):.2f} p99 "
                        f"{pct(sent.loaded_accepted, 0.99):.2f} ms, deliver p50 "
                        f"{sent.p50('loaded_deliver'):.2f} ms ({len(sent.quiet_accepted)} + "
                        f"{len(sent.loaded_accepted)} sends)",
                        flush=True,
                    )
            rounds.append(got)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    base = med([statistics.median(g[args.baseline].ms) for g in rounds])
    big = med([statistics.median(g[args.accounts].ms) for g in rounds])
    big99 = med([pct(g[args.accounts].ms, 0.99) for g in rounds])
    accepted = med([s.p50("loaded_accepted") - s.p50("quiet_accepted") for s in sends])
    delivered = med([s.p50("loaded_deliver") - s.p50("quiet_deliver") for s in sends])
    print(f"\nmedians of {args.rounds} rounds:")
    print(f"search p50 at {args.baseline} accounts = {base:.2f} ms")
    print(f"search p99 at {args.accounts} accounts = {big99:.2f} ms")
    print(f"ratio search p50 {args.accounts}/{args.baseline} accounts = {big / base:.2f}")
    print(f"send→deliver p50 increase under {PIPELINE} pipelined searches = {delivered:.2f} ms")
    print(f"search p50 at {args.accounts} accounts = {big:.2f} ms")
    print(f"send p50 increase under {PIPELINE} pipelined searches = {accepted:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000, help="accounts, same run")
    parser.add_argument("--searches", type=int, default=1_500, help="per size per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="sends per second")
    parser.add_argument("--phase", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--switches", type=int, default=2, help="quiet/loaded pairs per round")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for any answer")
    parser.add_argument("--smoke", action="store_true", help="seconds, small sizes, no timings")
    args = parser.parse_args()
    if args.smoke:
        args.accounts, args.baseline, args.searches, args.rounds = 2_000, 200, 150, 1
        args.rate, args.phase, args.switches, args.timeout = 50.0, 0.6, 1, 15.0
    if args.baseline >= args.accounts:
        parser.error("--baseline must be smaller than --accounts")
    pin(0)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        run(args)
    except BenchFailure as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
