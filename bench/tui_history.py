"""TUI history: open a 10,000-message conversation and scroll it to the top, headless.

Not a test: it prints figures and ratios (issue #5: "time to open a conversation of 10,000
messages and to scroll to the top, headless. Target ≤ 300 ms to first paint").

Setup (not timed): an in-process relay on a free loopback port; two accounts made with
`create_account` (cheap KDF `MINIMUM`) that become contacts through the relay (which
leaves one or two system lines in each store). The viewer's local history is then filled
with N messages of that one conversation directly through the History API
(`add_incoming`, and `add_outgoing` + `mark_sent` so nothing sits in the outbox), with
increasing times, alternating senders and bodies of 5–200 characters (skewed short,
median about 50). All incoming messages are marked seen, as in a conversation read
before. The peer's own store holds the last 10 of them: the baseline conversation. The
relay is not used for the 10,000 (the TUI reads only the local store).

Each round starts a fresh `AgechatApp(session=...)` under `app.run_test(size=(120, 40))`
with a ChatSession that is already open, connected and synced (its Connected/Synced
events are still queued, as in the real app, so the screen's event worker runs too).
The app is unchanged; a subclass only records a timestamp on each rendered frame.

Definitions (times from just before `app.run_test()` is entered):
  first paint   the first frame the screen's compositor renders (App._display: where a
                terminal would be written to) in which the MessageLog holds the first
                page (min(lines, 100) items, all mounted) and its newest line is among
                the compositor's visible widgets (scrolled to the end). This is the figure
                compared with the 300 ms target.
  mounted       `MessageLog.show()` returned: first page mounted, not yet laid out.
  settled       mounted, then one `await pilot.pause()` (which sleeps at least 20 ms and
                waits for the CPU to go idle): an upper bound, for comparison.
  textual ready Textual's App._ready: end of the startup batch, inside which nothing is
                painted (it ends only after MainScreen.on_mount has opened the conversation).
  page          `log.scroll_home(animate=False)` (the Home key, less the animation), then
                the first frame with the older page mounted and the reading position
                restored by the log (scroll_y > 0). The app's own paging (watch_scroll_y →
                load_older) does the loading; the script calls `load_older()` itself only
                if a Home loads nothing, and reports that as a problem.
  to the top    pages until all lines are mounted, then one more Home and the first frame
                at y=0 showing the oldest line, with the log knowing there is nothing
                older. Page cost grows with the number already mounted, so each round
                stops after --scroll-budget seconds (0 = no limit) and the rest is
                extrapolated from a straight-line fit of page time against lines mounted
                (marked "est.").

    python bench/tui_history.py [--messages 10000] [--rounds 5] [--scroll-budget 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import textual  # noqa: E402
from aiohttp import web  # noqa: E402
from textual.css.query import NoMatches  # noqa: E402
from textual.screen import Screen  # noqa: E402

from client.account import create_account  # noqa: E402
from client.history import History  # noqa: E402
from client.keystore import MINIMUM  # noqa: E402
from client.profile import Profile  # noqa: E402
from client.relay import new_message_id  # noqa: E402
from client.session import ChatSession  # noqa: E402
from client.tui.app import AgechatApp  # noqa: E402
from client.tui.screens.main import MainScreen  # noqa: E402
from client.tui.widgets.message_item import MessageItem  # noqa: E402
from client.tui.widgets.message_log import PAGE, WINDOW, MessageLog  # noqa: E402
from protocol.frames import conversation_id  # noqa: E402
from server.app import create_app  # noqa: E402
from server.config import RelayConfig  # noqa: E402

TARGET_MS = 300.0
SIZE = (120, 40)
PASSPHRASE = "correct horse battery staple"
VIEWER, PEER = "ada_bench", "ben_bench"
BASELINE = 10
PAGE_TIMEOUT = 60.0
CHATTER = (
    "ok yes no sure see you then tomorrow tonight later lunch dinner coffee train bus late "
    "sorry thanks great sounds good what about the meeting project draft send me link "
    "call when are you free I think we should maybe wait for them it was really fun "
    "haha did you get my message can't make it running ten minutes behind"
)
WORDS = CHATTER.split()


# --- setup: relay, accounts, history ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InProcessRelay:
    """The relay in this event loop on a free loopback port (as tests/support.Relay)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.runner = web.AppRunner(create_app(RelayConfig(data_dir=data_dir, port=self.port)))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> InProcessRelay:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()


@dataclass(frozen=True)
class Line:
    sender: str
    msg_id: str
    body: str
    at: datetime


def body_of(rng: random.Random, length: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(WORDS))
    text = " ".join(words)[:length].strip()
    return text if len(text) >= 5 else text.ljust(5, ".")


def conversation_lines(count: int, seed: int = 5) -> list[Line]:
    rng = random.Random(seed)
    at = datetime.now(UTC) - timedelta(minutes=11 * count + 60)
    lines = []
    for i in range(count):
        at += timedelta(seconds=rng.randint(5, 1200))
        length = 5 + int(195 * rng.random() ** 2)  # 5..200, mostly short
        sender = PEER if i % 2 == 0 else VIEWER
        lines.append(Line(sender, new_message_id(), body_of(rng, length), at))
    return lines


def history_of(directory: Path) -> History:
    return History(Profile.load(directory).history_path)


async def fill(directory: Path, me: str, peer: str, lines: list[Line]) -> None:
    """Write ``lines`` into ``me``'s local history, as if sent and received over time."""
    history = history_of(directory)
    await history.open()
    try:
        # Setup only: one fsync per message (synchronous=FULL) would take minutes here.
        await history.db.execute("PRAGMA synchronous=OFF")
        conversation = conversation_id(me, peer)
        incoming = []
        for line in lines:
            if line.sender == me:
                await history.add_outgoing(
                    sender=me,
                    msg_id=line.msg_id,
                    recipient=peer,
                    conversation=conversation,
                    mode="e2ee",
                    body=line.body,
                    created_at=line.at,
                )
                await history.mark_sent(line.msg_id, me, line.at + timedelta(seconds=0.2))
            else:
                stored = await history.add_incoming(
                    sender=peer,
                    msg_id=line.msg_id,
                    recipient=me,
                    conversation=conversation,
                    kind="message",
                    mode="e2ee",
                    body=line.body,
                    sent_at=line.at,
                    received_at=line.at + timedelta(seconds=0.3),
                )
                assert stored is not None
                incoming.append(stored.rowid)
        await history.mark_seen(incoming)  # read before: no unread badge, no unseen scan
        await history.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await history.close()


async def lines_in_store(directory: Path, me: str, peer: str) -> tuple[int, int]:
    """(messages, other lines) of the conversation in ``me``'s store."""
    history = history_of(directory)
    await history.open()
    try:
        async with history.db.execute(
            "SELECT SUM(kind = 'message'), SUM(kind != 'message') FROM messages "
            "WHERE conversation = ?",
            (conversation_id(me, peer),),
        ) as cur:
            row = await cur.fetchone()
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
    finally:
        await history.close()


async def ready_session(directory: Path) -> ChatSession:
    session = await ChatSession.open(directory, PASSPHRASE)
    await session.client.wait_connected()
    await asyncio.wait_for(session.client.synced.wait(), 10)
    return session


async def setup(base: Path, relay: InProcessRelay, messages: int) -> dict[str, Path]:
    dirs = {}
    for handle in (VIEWER, PEER):
        dirs[handle] = base / handle
        await create_account(
            dirs[handle],
            server=relay.url,
            handle=handle,
            display_name=handle.split("_")[0].title(),
            birthdate=date(1990, 3, 14),
            passphrase=PASSPHRASE,
            kdf=MINIMUM,
        )
    viewer, peer = await ready_session(dirs[VIEWER]), await ready_session(dirs[PEER])
    try:
        await viewer.request(PEER)
        await peer.respond(VIEWER, True)
    finally:
        await viewer.close()
        await peer.close()
    for handle in (VIEWER, PEER):  # take delivery of what the relay queued for them
        await (await ready_session(dirs[handle])).close()
    lines = conversation_lines(messages)
    await fill(dirs[VIEWER], VIEWER, PEER, lines)
    await fill(dirs[PEER], PEER, VIEWER, lines[-BASELINE:])
    return dirs


async def store_timings(directory: Path, peer: str, repeats: int) -> dict[str, float]:
    """Median ms of the store calls MainScreen makes when it opens the conversation."""
    session = await ready_session(directory)
    times: dict[str, list[float]] = {}
    try:
        for _ in range(repeats):
            for name, call in (
                ("refresh_contacts (relay)", session.refresh_contacts),
                ("conversations()", session.conversations),
                ("unseen()", session.history.unseen),
                ("first page query", lambda: session.messages(peer, limit=PAGE)),
                ("mark_read (commit)", lambda: session.mark_read(peer)),
            ):
                t = time.perf_counter()
                await call()
                times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
    finally:
        await session.close()
    return {name: statistics.median(values) for name, values in times.items()}


# --- instrumentation ---------------------------------------------------------------------


class Probe:
    """Timestamps and per-frame hooks for one app run."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.watchers: list[Callable[[Screen], None]] = []
        self._waiters: list[tuple[Callable[[Screen], bool], asyncio.Future[float]]] = []

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter())

    def frame(self, screen: Screen) -> None:
        now = time.perf_counter()
        for watcher in self.watchers:
            watcher(screen)
        for waiter in list(self._waiters):
            condition, future = waiter
            if future.done():
                self._waiters.remove(waiter)
            elif condition(screen):
                future.set_result(now)
                self._waiters.remove(waiter)

    def frame_where(self, condition: Callable[[Screen], bool]) -> asyncio.Future[float]:
        """A future for the time of the first frame rendered with ``condition`` true."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        return future


def instrument(screen: MainScreen, probe: Probe) -> None:
    """Time open_conversation and MessageLog.show on this screen instance."""
    original_open = screen.open_conversation

    async def open_conversation(conversation):
        probe.calls["open_conversation"] += 1
        probe.mark("open_start")
        log = screen.query_one(MessageLog)
        if "show" not in vars(log):
            original_show = log.show

            async def show(load):
                probe.calls["MessageLog.show"] += 1
                await original_show(load)
                probe.mark("mounted")

            log.show = show  # type: ignore[method-assign]
        await original_open(conversation)
        probe.mark("open_done")

    screen.open_conversation = open_conversation  # type: ignore[method-assign]


class TimedApp(AgechatApp):
    """AgechatApp plus timestamps (startup end, each rendered frame); behaviour unchanged."""

    def __init__(self, session: ChatSession, probe: Probe) -> None:
        super().__init__(session=session)
        self.probe = probe

    async def _ready(self) -> None:
        self.probe.mark("ready")
        await super()._ready()

    def _display(self, screen, renderable) -> None:
        super()._display(screen, renderable)
        if renderable is not None and not self._batch_count:
            self.probe.frame(screen)

    def push_screen(self, screen, *args, **kwargs):  # type: ignore[override]
        if isinstance(screen, MainScreen):
            instrument(screen, self.probe)
        return super().push_screen(screen, *args, **kwargs)


def log_of(screen: Screen) -> MessageLog | None:
    if not isinstance(screen, MainScreen):
        return None
    try:
        return screen.query_one(MessageLog)
    except NoMatches:
        return None


def shows(screen: Screen, widget: object) -> bool:
    return widget in screen._compositor.visible_widgets


def rss_mib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def wait_for(future: asyncio.Future[float], timeout: float) -> float | None:
    await asyncio.wait({future}, timeout=timeout)  # (asyncio.wait_for would cancel it)
    return future.result() if future.done() else None


# --- one round ---------------------------------------------------------------------------

NAN = float("nan")


@dataclass
class Run:
    total: int
    marks_ms: dict[str, float] = field(default_factory=dict)
    settled_ms: float = NAN
    pages: list[tuple[int, float]] = field(default_factory=list)  # (lines mounted before, ms)
    scroll_ms: float = NAN  # measured, all the way to the top
    estimate_ms: float = NAN  # measured part + extrapolated rest, when the budget ran out
    reached: int = 0
    jump_frames: int = 0
    widgets: int = 0
    rss_delta_mib: float = NAN
    problems: list[str] = field(default_factory=list)

    @property
    def first_paint_ms(self) -> float:
        return self.marks_ms.get("painted", NAN)

    @property
    def to_top_ms(self) -> float:
        return self.scroll_ms if self.scroll_ms == self.scroll_ms else self.estimate_ms


async def one_round(directory: Path, total: int, scroll_budget: float | None) -> Run:
    """A fresh app on a fresh session: time the first paint, then (optionally) scroll."""
    run = Run(total)
    session = await ready_session(directory)
    probe = Probe()
    app = TimedApp(session, probe)
    first = min(total, PAGE)
    gc.collect()  # not the previous round's 10,000 widgets' garbage in this round's time

    def first_page_painted(screen: Screen) -> bool:
        log = log_of(screen)
        if log is None or len(log.children) < first:
            return False
        newest = log.children[-1]
        return newest.is_mounted and shows(screen, newest)

    painted = probe.frame_where(first_page_painted)
    rss_before = rss_mib()
    start = time.perf_counter()
    try:
        async with app.run_test(size=SIZE) as pilot:
            at = await wait_for(painted, 30)
            if at is None:
                run.problems.append("the first page was never painted")
                return run
            probe.marks["painted"] = at
            for _ in range(5000):  # (show() returned before the paint; this is a guard)
                if "mounted" in probe.marks:
                    break
                await asyncio.sleep(0.001)
            await pilot.pause()
            run.settled_ms = (time.perf_counter() - start) * 1000
            run.marks_ms = {k: (v - start) * 1000 for k, v in probe.marks.items()}
            log = app.screen.query_one(MessageLog)
            if len(log.children) != first or log.count != first:
                run.problems.append(
                    f"first page: {len(log.children)} widgets, {log.count} items, not {first}"
                )
            for name in ("open_conversation", "MessageLog.show"):
                if probe.calls[name] != 1:
                    run.problems.append(f"{name} ran {probe.calls[name]} times on open")
            if scroll_budget is not None:
                await scroll_to_top(log, probe, run, scroll_budget)
                run.widgets = sum(1 for _ in app.screen.walk_children())
                run.rss_delta_mib = rss_mib() - rss_before
    except Exception as exc:  # an app crash is a finding, not a reason to lose the run
        run.problems.append(f"the app failed: {exc!r}")
    finally:
        await session.close()
    return run


async def scroll_to_top(log: MessageLog, probe: Probe, run: Run, budget: float) -> None:
    """Page back to the first line, timing each page to its next drawn frame.

    The log keeps a sliding window of mounted lines, so this asks it for older pages
    directly (what reaching the top does) and checks the window stays bounded.
    """
    start = time.perf_counter()
    loaded = len(log.children)
    most_mounted = loaded
    while not (budget and time.perf_counter() - start > budget):
        page_start = time.perf_counter()
        more = await log.load_older()
        drawn = probe.frame_where(lambda screen: True)
        at = await wait_for(drawn, 2.0) or time.perf_counter()
        if not more:
            break
        run.pages.append((loaded, (at - page_start) * 1000))
        loaded += PAGE
        most_mounted = max(most_mounted, len(log.children))
    run.reached = run.total if log.reached_oldest else min(loaded, run.total)
    if run.reached < run.total:
        run.estimate_ms = (time.perf_counter() - start) * 1000 + extrapolate(run)
        return
    run.scroll_ms = (time.perf_counter() - start) * 1000
    if most_mounted > WINDOW:
        run.problems.append(f"{most_mounted} lines mounted at once (window {WINDOW})")
    first = log.children[0]
    if not (isinstance(first, MessageItem) and first.message.rowid == 1):
        run.problems.append("the oldest line is not the first one shown at the top")


def fit(pages: list[tuple[int, float]]) -> tuple[float, float]:
    """Page ms = a + b * lines already mounted (least squares); (a, b)."""
    if len(pages) < 3:
        return (statistics.mean(ms for _, ms in pages) if pages else NAN, 0.0)
    slope, intercept = statistics.linear_regression([n for n, _ in pages], [ms for _, ms in pages])
    return intercept, slope


def extrapolate(run: Run) -> float:
    """Estimated ms for the pages not loaded, from this round's fit."""
    a, b = fit(run.pages)
    return sum(a + b * n for n in range(run.reached, run.total, PAGE))


# --- main --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else NAN


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"CPython {platform.python_version()}, textual {textual.__version__}"
    )


def report_open(label: str, runs: list[Run]) -> None:
    def m(mark: str) -> float:
        return median([r.marks_ms.get(mark, NAN) for r in runs])

    print(
        f"  open {label}: first paint {m('painted'):6.1f} ms   (open_conversation "
        f"{m('open_start'):5.1f} → page mounted {m('mounted'):5.1f} → returned "
        f"{m('open_done'):5.1f}; textual ready {m('ready'):5.1f}; mounted + pilot.pause() "
        f"{median([r.settled_ms for r in runs]):5.1f})"
    )


async def bench(messages: int, rounds: int, scroll_budget: float) -> None:
    began = time.perf_counter()
    print(f"machine: {machine()}")
    print(
        f"headless {SIZE[0]}x{SIZE[1]}, page {PAGE}, {rounds} rounds, "
        f"scroll budget {f'{scroll_budget:.0f} s' if scroll_budget else 'none'} per round",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="agechat-tuibench-"))
    relay = await InProcessRelay(base / "relay").start()
    try:
        t = time.perf_counter()
        dirs = await setup(base, relay, messages)
        big_msgs, big_other = await lines_in_store(dirs[VIEWER], VIEWER, PEER)
        small_msgs, small_other = await lines_in_store(dirs[PEER], PEER, VIEWER)
        big, small = big_msgs + big_other, small_msgs + small_other
        print(
            f"setup {time.perf_counter() - t:.1f} s: relay on :{relay.port}, 2 accounts, "
            f"viewer's store {big_msgs:,} messages + {big_other} system lines (History API), "
            f"peer's {small_msgs} + {small_other}",
            flush=True,
        )
        store = await store_timings(dirs[VIEWER], PEER, rounds)
        print(
            f"store calls on open ({big:,} lines, median ms): "
            + ", ".join(f"{name} {ms:.1f}" for name, ms in store.items())
        )
        print(flush=True)
        warm = await one_round(dirs[PEER], small, None)
        print(
            f"  warm-up ({small} lines, first app in this process): first paint "
            f"{warm.first_paint_ms:6.1f} ms (not counted)",
            flush=True,
        )
        big_runs: list[Run] = []
        small_runs: list[Run] = []
        for n in range(rounds):
            b = await one_round(dirs[VIEWER], big, scroll_budget)
            s = await one_round(dirs[PEER], small, None)
            big_runs.append(b)
            small_runs.append(s)
            top = (
                f"to top {b.scroll_ms / 1000:6.1f} s"
                if b.scroll_ms == b.scroll_ms
                else f"{b.reached:,} lines in {sum(ms for _, ms in b.pages) / 1000:4.1f} s"
                f" → est. to top {b.estimate_ms / 1000:5.0f} s"
            )
            first_page = b.pages[0][1] if b.pages else NAN
            last_page = b.pages[-1][1] if b.pages else NAN
            print(
                f"  round {n + 1}: first paint {big:,} lines {b.first_paint_ms:6.1f} ms, "
                f"{small} lines {s.first_paint_ms:6.1f} ms | {top}; {len(b.pages)} pages, "
                f"{first_page:4.0f} → {last_page:5.0f} ms",
                flush=True,
            )
            for problem in b.problems + s.problems:
                print(f"    ! {problem}", flush=True)

        paint_big = median([r.first_paint_ms for r in big_runs])
        paint_small = median([r.first_paint_ms for r in small_runs])
        print(f"\nmedians over {rounds} rounds:")
        report_open(f"{big:>6,} lines", big_runs)
        report_open(f"{small:>6,} lines", small_runs)
        all_pages = [p for r in big_runs for p in r.pages]
        a, b = fit(all_pages)
        complete = [r.scroll_ms for r in big_runs if r.scroll_ms == r.scroll_ms]
        if complete:
            print(
                f"  scroll {big:,} lines to the top: {median(complete) / 1000:.1f} s measured "
                f"({len(complete)} of {rounds} rounds reached it)"
            )
        else:
            estimate = median([r.to_top_ms for r in big_runs]) / 1000
            reached = median([r.reached for r in big_runs])
            print(
                f"  scroll {big:,} lines to the top: est. {estimate:.0f} s (median reached "
                f"{reached:,.0f} lines within the budget)"
            )
        if all_pages:
            print(
                f"  per page ({PAGE} lines): median {median([ms for _, ms in all_pages]):.0f} ms;"
                f" fit {a:.0f} ms + {b * 1000:.0f} ms per 1,000 lines already mounted "
                f"(at {big:,}: {a + b * big:.0f} ms) — "
                + ("grows with the lines loaded" if b * big > a else "flat: constant per page")
            )
            jumps = sum(r.jump_frames for r in big_runs)
            print(
                f"  frames drawn at the top of a just-loaded page before the position was "
                f"restored: {jumps} in {len(all_pages)} pages"
            )
            at = median([r.reached for r in big_runs])
            widgets = median([r.widgets for r in big_runs])
            # Later rounds reuse memory the earlier ones freed: only round 1's growth counts.
            first = big_runs[0]
            print(
                f"  with {at:,.0f} lines mounted: {widgets:,.0f} widgets on the screen; round 1 "
                f"grew RSS by {first.rss_delta_mib:.0f} MiB with {first.reached:,} lines mounted "
                f"(≈{first.rss_delta_mib / first.reached * 1000:.0f} MiB per 1,000); peak RSS "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
            )
        print(
            f"\nfirst paint {big:,} lines / target {TARGET_MS:.0f} ms = "
            f"{paint_big / TARGET_MS:.2f} ({'met' if paint_big <= TARGET_MS else 'NOT met'})"
        )
        print(f"first paint {big:,} lines / {small} lines = {paint_big / paint_small:.2f}")
        print(f"first paint {small} lines / target = {paint_small / TARGET_MS:.2f}")
    finally:
        await relay.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--scroll-budget",
        type=float,
        default=25.0,
        help="seconds of scrolling per round before extrapolating (0: scroll to the top)",
    )
    args = parser.parse_args()
    asyncio.run(bench(args.messages, args.rounds, args.scroll_budget))


if __name__ == "__main__":
    main()
