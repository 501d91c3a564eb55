"""The fleet board in a real browser: time to first full render, and commit-to-DOM latency.

Run from the repository root: `.venv/bin/python benchmarks/dashboard.py [--quick]`.
For each fleet size, a fresh database with demo data (on an embedded server in a temporary
directory, or on the server of FLEET_DATABASE_URL / --database-url) is served by
`fleet serve` in its own process, and Debian's Chromium, driven by Playwright, opens /board
signed in as an agent.

- **First render**: from navigation start to the vehicle table showing its first page of rows,
  the counts table filled and the top bar live, timed in the page (`performance.now()`
  polled every animation frame). Each run opens the board in a new browser context (nothing
  cached: a tablet opening the board for the first time) and then in a second tab of that
  context (scripts cached, a new server session all the same).
- **Commit-to-DOM**: many board sessions stay open; a MutationObserver in each page notes
  `Date.now()` whenever a row of the vehicle table shows a new status, and the DevTools
  protocol notes when each WebSocket frame reaches the tab. This process commits status
  changes of vehicles on the table's first page with db.status.change_status, one
  transaction each, on a fixed schedule, and notes the time right after COMMIT returns:
  latency = DOM (or frame) time - commit time, on the clocks of this one machine.

The figures replace the dashboard section of docs/benchmarks.md (not with --quick). With
--profile, py-spy samples the server and Chrome's profiler one tab while they are measured.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from realtime import (  # noqa: E402
    BenchDatabase,
    FleetServer,
    bench_database,
    die_on_sigterm,
    load_average,
    load_fleet,
    machine_busy_seconds,
    pct,
    tree_cpu_seconds,
    write_section,
)
from search import bar, machine  # noqa: E402
from sqlalchemy import text  # noqa: E402

from dashboard.live import counts_rows  # noqa: E402
from dashboard.vehicles import BADGES, MAX_VEHICLES, row  # noqa: E402
from db import auth, fleet, status  # noqa: E402
from db.database import make_engine  # noqa: E402
from db.errors import FleetError  # noqa: E402
from fleet.settings import get_settings  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- dashboard:begin -->", "<!-- dashboard:end -->"
# The targets: first render at 10k vehicles, commit-to-DOM p99 with 20 sessions.
TARGET_RENDER_S, TARGET_RENDER_VEHICLES = 3.0, 10_000
TARGET_P99_MS, TARGET_SESSIONS = 500.0, 20
# Rows on the vehicle table's first page (dashboard/vehicles.py, `page_size`): the board is
# rendered when that many rows are in the DOM.
FIRST_PAGE = 50
# Which status each first-page vehicle flips to, from the one it shows.
NEXT_STATUS = {"available": "cleaning", "cleaning": "available", "rented": "cleaning"}
# Seconds of quiet before the changes: what a tab spends on its own chores meanwhile.
IDLE_S = 10.0


# --- what runs in the page ----------------------------------------------------------------------

# Panel renders every component in its own shadow root: find elements through all of them.
_DEEP = """
const deep = (root, sel, out = []) => {
  out.push(...root.querySelectorAll(sel));
  for (const e of root.querySelectorAll('*')) if (e.shadowRoot) deep(e.shadowRoot, sel, out);
  return out;
};
const host = (cls) => deep(document, '.' + cls).find((e) => e.shadowRoot);
"""

# Polled every animation frame: the time since navigation start once the board is complete.
READY_JS = (
    "(rows) => {"
    + _DEEP
    + """
  const vehicles = host('vehicles'), counts = host('counts');
  if (!vehicles || !counts) return false;
  if (vehicles.shadowRoot.querySelectorAll('tr[data-key]').length < rows) return false;
  if (counts.shadowRoot.querySelectorAll('tr[data-key]').length < 1) return false;
  if (deep(document, '[data-state=live]').length < 1) return false;
  const nav = performance.getEntriesByType('navigation')[0];
  return {ready: performance.now(), ttfb: nav.responseStart - nav.requestStart};
}"""
)

# Note every status a row of the vehicle table comes to show, with the time (s) it first
# showed it. The callback runs as a microtask right after the DOM changed, before the next paint.
# Installing it again starts a fresh log.
OBSERVE_JS = (
    "() => {"
    + _DEEP
    + """
  if (window.__boardBench) window.__boardBench.observer.disconnect();
  const root = host('vehicles').shadowRoot;
  const bench = {last: {}, log: [], rows: []};
  const scan = () => {
    const t = Date.now() / 1000;
    const rows = [];
    for (const row of root.querySelectorAll('tr[data-key]')) {
      const plate = row.querySelector('[data-field="plate"]');
      const shown = row.querySelector('[data-field="status"]');
      if (!plate || !shown) continue;
      const p = plate.textContent.trim(), s = shown.textContent.trim();
      rows.push([row.dataset.key, p]);
      if (bench.last[p] === s) continue;
      if (p in bench.last) bench.log.push([p, s, t]);
      bench.last[p] = s;
    }
    return rows;
  };
  bench.rows = scan();
  bench.observer = new MutationObserver(scan);
  bench.observer.observe(root, {subtree: true, childList: true, characterData: true});
  window.__boardBench = bench;
  return {rows: bench.rows, shown: bench.last, visibility: document.visibilityState};
}"""
)

COLLECT_JS = "() => window.__boardBench ? window.__boardBench.log : null"


def collect(page: Any) -> list[list[Any]] | None:
    """The page's log of shown statuses; None when the page reloaded and lost its observer.

    The top bar reloads a page whose server stopped ticking for eight seconds.
    """
    from playwright.sync_api import Error

    try:
        return page.evaluate(COLLECT_JS)
    except Error:  # the page was navigating right then
        return None


def plain(value: Any) -> Any:
    """Bokeh's wire form of a dict ({"type": "map", "entries": [...]}) as plain Python."""
    if isinstance(value, dict):
        if value.get("type") == "map" and "entries" in value:
            return {plain(k): plain(v) for k, v in value["entries"]}
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def patches(value: Any) -> list[list[Any]]:
    """Every [row key, {field: value}] a LiveTable patch message in this frame carries."""
    if isinstance(value, dict):
        if isinstance(value.get("patch"), list):
            return value["patch"]
        return [p for v in value.values() for p in patches(v)]
    if isinstance(value, list):
        return [p for v in value for p in patches(v)]
    return []


class FrameLog:
    """When each status patch of the vehicle table reached a tab's WebSocket (DevTools).

    Chrome stamps frames in its network service with its monotonic clock, which on Linux is
    CLOCK_MONOTONIC, as is Python's time.monotonic(): arrival is known to the millisecond
    however long the tab's main thread then takes to draw.
    """

    _TAG = re.compile(r"<[^>]+>")

    def __init__(self, cdp: Any) -> None:
        self.rows: list[list[str]] = []  # [row key, plate] of the table's rows, in order
        self.log: list[list[Any]] = []  # [plate, status word, monotonic seconds]
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")

    def _frame(self, event: dict[str, Any]) -> None:
        payload = event["response"]["payloadData"]
        if '"patch"' not in payload or '"status"' not in payload:
            return
        plates = dict(self.rows)
        for key, cells in patches(plain(json.loads(payload))):
            if "status" in cells and str(key) in plates:
                word = html.unescape(self._TAG.sub("", str(cells["status"]))).strip()
                self.log.append([plates[str(key)], word, event["timestamp"]])


# --- the fleet, the user, the browser -----------------------------------------------------------


def board_user(url: str) -> tuple[int, str, str]:
    """Create an agent who signs in with a password; return the id, username and password."""
    username, password = f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            user = fleet.create_user(conn, username=username, full_name="Benchmark", role="agent")
            auth.set_password(conn, user_id=user.id, password=password)
        return user.id, username, password
    finally:
        engine.dispose()


@dataclass
class ServerSide:
    """What the board's server session does before the page gets any row, timed here."""

    read_ms: float  # status.list_status + status.status_counts in one snapshot
    frames_ms: float  # the rows of both tables built from them


def server_side(url: str, repeats: int) -> ServerSide:
    """Time LiveBoard's own start: the engine reads and the frames, median of a few."""
    engine = make_engine(url)
    reads, frames = [], []
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                vehicles = status.list_status(conn, limit=MAX_VEHICLES)
                counts = status.status_counts(conn)
            t1 = time.perf_counter()
            clock = datetime.now(UTC)
            [row(v, clock) for v in vehicles]
            counts_rows(counts)
            t2 = time.perf_counter()
            reads.append((t1 - t0) * 1000)
            frames.append((t2 - t1) * 1000)
    finally:
        engine.dispose()
    return ServerSide(statistics.median(reads), statistics.median(frames))


def sign_in(browser: Any, server_url: str, username: str, password: str) -> dict[str, Any]:
    """Sign in once through /login; return the storage state every later context starts with.

    The login form allows ten attempts a minute per user, so sessions share one sign-in.
    """
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server_url}/login?next=/healthz")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/healthz", timeout=30_000)
        return context.storage_state()
    finally:
        context.close()


@dataclass
class Load:
    """One board opening, in ms since navigation start (the page's own clock)."""

    ready_ms: float
    ttfb_ms: float  # request to first byte of /board: the server builds the session meanwhile


def wait_ready(page: Any, rows: int, timeout_ms: float = 120_000) -> Load:
    """Wait, frame by frame, until the board in this page is complete."""
    got = page.wait_for_function(READY_JS, arg=rows, polling="raf", timeout=timeout_ms)
    done = got.json_value()
    if "/board" not in page.url:
        raise RuntimeError(f"the board redirected to {page.url}: is the session signed in?")
    return Load(done["ready"], done["ttfb"])


def open_board(page: Any, server_url: str, rows: int, timeout_ms: float = 120_000) -> Load:
    """Navigate to /board and time it until complete."""
    page.goto(f"{server_url}/board", wait_until="commit", timeout=timeout_ms)
    return wait_ready(page, rows, timeout_ms)


def browser_cpu_seconds() -> float:
    """CPU time so far of Playwright's driver and the Chromium it started (tabs included)."""
    total = 0.0
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.name() == "node" or "playwright" in " ".join(child.cmdline()):
                total += tree_cpu_seconds(child.pid)
    return total


class CpuMeter:
    """CPU shares over a span (100% = one core): server, browser, database, everything else."""

    def __init__(self, server: FleetServer, db: BenchDatabase) -> None:
        self.server, self.db, self.me = server, db, psutil.Process()

    def _now(self) -> tuple[float, ...]:
        return (
            self.server.cpu_seconds(),
            browser_cpu_seconds(),
            self.db.cpu_seconds(),
            sum(self.me.cpu_times()[:2]),
            machine_busy_seconds(),
            time.monotonic(),
        )

    def start(self) -> None:
        self.t0 = self._now()

    def stop(self) -> dict[str, float]:
        server, browser, database, me, busy, wall = (
            b - a for a, b in zip(self.t0, self._now(), strict=True)
        )
        shares = {"server": server / wall, "browser": browser / wall, "database": database / wall}
        shares["server_s"] = server
        # Whatever else ran: the machine's busy time minus all of ours (the writer is this one).
        shares["other"] = max(0.0, (busy - server - browser - database - me) / wall)
        return shares


def renderer_busy_ms(cdps: list[Any]) -> list[float]:
    """Main-thread CPU time of each page's renderer so far (Chrome's TaskDuration), in ms."""
    out = []
    for cdp in cdps:
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        out.append(metrics["TaskDuration"] * 1000)
    return out


# --- profiles (--profile) -----------------------------------------------------------------------


class Profiler:
    """py-spy sampling the server while something is measured (with --profile), else nothing.

    Writes collapsed stacks (`py-spy record --format raw`), which speedscope or flamegraph.pl
    open; threads waiting for work show as Condition.wait and thread.py `_worker`.
    """

    def __init__(self, args: argparse.Namespace, server: FleetServer, name: str) -> None:
        self.cmd: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        if args.profile is None or server.proc is None:
            return
        spy = args.py_spy or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy), or --py-spy PATH")
        args.profile.mkdir(parents=True, exist_ok=True)
        self.out = args.profile / f"{name}.txt"
        self.cmd = [spy, "record", "--format", "raw", "--rate", "100", "--subprocesses"]
        self.cmd += ["--output", str(self.out), "--pid", str(server.proc.pid)]

    def start(self) -> None:
        if self.cmd:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        self.proc.wait(timeout=60)
        self.proc = None
        print(f"    server profile: {self.out}", flush=True)


class TabProfiler:
    """Chrome's JavaScript sampling profiler in one tab (with --profile), else nothing.

    Writes a .cpuprofile, which Chrome DevTools (Performance panel) and speedscope open.
    """

    def __init__(self, args: argparse.Namespace, cdp: Any, name: str) -> None:
        self.cdp = cdp if args.profile is not None else None
        if self.cdp is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            self.out = args.profile / f"{name}.cpuprofile"

    def start(self) -> None:
        if self.cdp is not None:
            self.cdp.send("Profiler.enable")
            self.cdp.send("Profiler.setSamplingInterval", {"interval": 200})
            self.cdp.send("Profiler.start")

    def stop(self) -> None:
        if self.cdp is not None:
            self.out.write_text(json.dumps(self.cdp.send("Profiler.stop")["profile"]))
            print(f"    tab profile: {self.out}", flush=True)


# --- first render -------------------------------------------------------------------------------


@dataclass
class RenderResult:
    vehicles: int
    blocks: int
    first_after_start_ms: float  # the server's first board: the page modules import then
    cold: list[Load]
    warm: list[Load]
    server: ServerSide
    load: str

    @property
    def verdict(self) -> str:
        if self.vehicles != TARGET_RENDER_VEHICLES:
            return ""
        worst = max(x.ready_ms for x in self.cold) / 1000
        return "MET" if worst < TARGET_RENDER_S else "MISSED"


def measure_first_render(
    browser: Any, server: FleetServer, state: dict[str, Any], vehicles: int, blocks: int,
    url: str, args: argparse.Namespace,
) -> RenderResult:  # fmt: skip
    """Open the board `args.runs` times cold and warm; the server's very first opening apart."""
    rows = min(FIRST_PAGE, vehicles)
    context = browser.new_context(storage_state=state)
    try:
        first = open_board(context.new_page(), server.url, rows)
    finally:
        context.close()
    print(f"    first board after server start: {first.ready_ms:.0f} ms", flush=True)
    cold: list[Load] = []
    warm: list[Load] = []
    profiler = Profiler(args, server, f"render-{vehicles}")
    profiler.start()
    for i in range(args.runs):
        context = browser.new_context(storage_state=state)
        try:
            page = context.new_page()
            cold.append(open_board(page, server.url, rows))
            page.close()
            warm.append(open_board(context.new_page(), server.url, rows))
        finally:
            context.close()
        print(
            f"    run {i + 1}/{args.runs}: cold {cold[-1].ready_ms:.0f} ms"
            f" (first byte {cold[-1].ttfb_ms:.0f} ms), warm {warm[-1].ready_ms:.0f} ms",
            flush=True,
        )
    profiler.stop()
    if args.profile is not None:
        profile_cold_opening(browser, server, state, rows, vehicles, args)
    return RenderResult(
        vehicles=vehicles,
        blocks=blocks,
        first_after_start_ms=first.ready_ms,
        cold=cold,
        warm=warm,
        server=server_side(url, args.runs),
        load=load_average(),
    )


def profile_cold_opening(
    browser: Any, server: FleetServer, state: dict[str, Any], rows: int, vehicles: int,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """One more cold opening (not counted) under Chrome's profiler; print where its time went."""
    context = browser.new_context(storage_state=state)
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
        tab = TabProfiler(args, cdp, f"tab-render-{vehicles}")
        tab.start()
        load = open_board(page, server.url, rows)
        tab.stop()
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        spent = ", ".join(
            f"{name.removesuffix('Duration').lower()} {metrics[name] * 1000:.0f} ms"
            for name in ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
        )
        print(
            f"    profiled cold opening: {load.ready_ms:.0f} ms; main thread: {spent}", flush=True
        )
    finally:
        context.close()


# --- commit-to-DOM ------------------------------------------------------------------------------


@dataclass
class Commit:
    plate: str
    shows: str  # the status word the row must come to show
    at: float  # time.time() right after COMMIT
    mono: float  # time.monotonic() at the same moment


class Flipper:
    """Flip first-page vehicles between statuses, round robin, one committed change each."""

    def __init__(self, url: str, user_id: int) -> None:
        self.engine = make_engine(url)
        self.user_id = user_id
        self.vehicles: list[list[Any]] = []  # [vehicle id, plate, status]
        self.turn = 0

    def retarget(self, plates: list[str]) -> int:
        """Flip the vehicles of these plates that can; return how many there are.

        Overdue cars lead the board: at 10k vehicles the first page is all overdue rentals, so
        a rented car is returned to cleaning first and flips between cleaning and available
        after that; its row keeps its place (the table patches, never re-sorts).
        """
        with self.engine.connect() as conn:
            ids = [fleet.get_vehicle(conn, plate=plate).id for plate in plates]
            now = status.list_status(conn, vehicle_ids=ids, limit=len(ids)) if ids else []
        self.vehicles = [
            [v.vehicle_id, v.plate, v.status]
            for v in now
            if v.status in NEXT_STATUS and v.location_id is not None
        ]
        return len(self.vehicles)

    def change(self) -> Commit:
        """Commit the next change; say which row must come to show which word, and when."""
        while True:
            if not self.vehicles:
                raise RuntimeError("no vehicle on every board's first page can change status")
            at = self.turn % len(self.vehicles)
            vehicle_id, plate, current = self.vehicles[at]
            new = NEXT_STATUS[current]
            self.turn += 1
            try:
                with self.engine.begin() as conn:
                    status.change_status(
                        conn,
                        vehicle_id=vehicle_id,
                        new_status=new,
                        changed_by=self.user_id,
                        reason="benchmark",
                    )
            except FleetError as exc:  # e.g. a car the demo left in an odd state: drop it
                print(f"    dropping {plate}: {exc}", flush=True)
                del self.vehicles[at]
                continue
            committed = Commit(plate, BADGES[new], time.time(), time.monotonic())
            self.vehicles[at][2] = new
            return committed

    def close(self) -> None:
        self.engine.dispose()


def match(log: list[list[Any]], commits: list[Commit], clock: str) -> list[float | None]:
    """Pair each commit with the first later showing of its status on its row, in ms.

    A vehicle flips back and forth, so a showing counts for one commit only: each commit of a
    plate looks after the showing its previous commit took. `clock` names the Commit field
    the log's times (seconds) compare with. None: never shown.
    """
    shown: dict[str, list[tuple[str, float]]] = {}
    for plate, word, t in log:
        shown.setdefault(plate, []).append((word, t))
    cursor: dict[str, int] = {}
    out: list[float | None] = []
    for c in commits:
        entries, i = shown.get(c.plate, []), cursor.get(c.plate, 0)
        while i < len(entries) and entries[i][0] != c.shows:
            i += 1
        if i < len(entries):
            out.append((entries[i][1] - getattr(c, clock)) * 1000)
            cursor[c.plate] = i + 1
        else:
            out.append(None)
    return out


@dataclass
class Pace:
    """One schedule of changes: one every `interval` seconds, `changes` of them."""

    interval: float
    changes: int

    @classmethod
    def parse(cls, text: str) -> Pace:
        """Read `0.2:100` (seconds between changes, how many)."""
        interval, _, changes = text.partition(":")
        return cls(float(interval), int(changes or 100))


@dataclass
class LiveResult:
    vehicles: int
    sessions: int
    pace: Pace
    open_ms: list[float]  # each session's time to a complete board while the others were open
    latencies_ms: list[float] = field(default_factory=list)  # commit -> DOM, every pair
    socket_ms: list[float] = field(default_factory=list)  # commit -> frame at the tab
    slowest_ms: list[float] = field(default_factory=list)  # per change, its slowest session
    missed: int = 0
    reloaded: int = 0  # pages that reloaded during the changes (their observer went too)
    hidden: int = 0  # pages not visible (their rendering may be throttled)
    renderer_ms_per_change: float | None = None  # a tab's main thread per change, median tab
    server_ms_per_update: float = 0.0  # server CPU per change and open board
    cpu: dict[str, float] = field(default_factory=dict)
    load: str = ""

    @property
    def verdict(self) -> str:
        if self.sessions != TARGET_SESSIONS:
            return ""
        p99 = pct(self.latencies_ms)["p99"] if self.latencies_ms else float("inf")
        return "MET" if p99 < TARGET_P99_MS and not self.missed else "MISSED"


class Sessions:
    """Board sessions held open in two browser contexts, as two tablets would hold them."""

    def __init__(self, browser: Any, state: dict[str, Any], server_url: str, rows: int) -> None:
        self.contexts = [browser.new_context(storage_state=state) for _ in range(2)]
        self.server_url, self.rows = server_url, rows
        self.pages: list[Any] = []
        self.cdps: list[Any] = []
        self.frames: list[FrameLog] = []
        self.opened: list[float] = []

    def open(self, count: int) -> None:
        """Open the boards one after another, each timed while the ones before stay open."""
        for i in range(count):
            page = self.contexts[i % 2].new_page()
            self.opened.append(open_board(page, self.server_url, self.rows).ready_ms)
            cdp = page.context.new_cdp_session(page)
            # Thread time, not wall time: what each update costs a tab, whatever else runs.
            cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
            self.pages.append(page)
            self.cdps.append(cdp)
            self.frames.append(FrameLog(cdp))
            bar("sessions", i + 1, count)

    def reload(self) -> None:
        """Reload every open board, so all show the same first page (the fleet as it is now)."""
        for page in self.pages:
            page.reload(wait_until="commit")
            wait_ready(page, self.rows)

    def observe(self) -> tuple[list[str], int]:
        """Start fresh logs in every page; return the plates all show and the hidden pages."""
        common: list[str] | None = None
        hidden = 0
        for page, frames in zip(self.pages, self.frames, strict=True):
            wait_ready(page, self.rows)  # a page that reloaded must be complete again
            seen = page.evaluate(OBSERVE_JS)
            frames.rows, frames.log = seen["rows"], []
            hidden += seen["visibility"] != "visible"
            plates = [plate for _, plate in seen["rows"]]
            common = plates if common is None else [p for p in common if p in seen["shown"]]
        return common or [], hidden

    def logs(self, commits: list[Commit], grace: float) -> list[list[list[Any]] | None]:
        """Every page's DOM log once all changes show everywhere, or after `grace` seconds."""
        deadline = time.monotonic() + grace
        while True:
            logs = [collect(page) for page in self.pages]
            done = all(log is not None and None not in match(log, commits, "at") for log in logs)
            if done or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def run_pace(
    sessions: Sessions, flipper: Flipper, server: FleetServer, db: BenchDatabase, pace: Pace,
    idle: list[float], args: argparse.Namespace,
) -> LiveResult:  # fmt: skip
    """Commit one pace of changes and time each into every open board."""
    label = f"{len(sessions.pages)}x{pace.interval:g}s-{len(flipper.vehicles)}"
    cpu, profiler = CpuMeter(server, db), Profiler(args, server, f"changes-{label}")
    tab = TabProfiler(args, sessions.cdps[0], f"tab-changes-{label}")
    busy0, t0 = renderer_busy_ms(sessions.cdps), time.monotonic()
    cpu.start()
    profiler.start()
    tab.start()
    commits = []
    for i in range(pace.changes):
        delay = t0 + i * pace.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        commits.append(flipper.change())
        bar("changes", i + 1, pace.changes)
    profiler.stop()
    shares = cpu.stop()
    load = load_average()
    logs = sessions.logs(commits, args.grace)
    tab.stop()
    spent = time.monotonic() - t0
    # A page that reloaded started its count again: only the others say what a change costs.
    busy = [
        b - a - i * spent / IDLE_S
        for a, b, i, log in zip(busy0, renderer_busy_ms(sessions.cdps), idle, logs, strict=True)
        if log is not None
    ]
    result = LiveResult(
        vehicles=0,
        sessions=len(sessions.pages),
        pace=pace,
        open_ms=list(sessions.opened),
        renderer_ms_per_change=statistics.median(busy) / pace.changes if busy else None,
        server_ms_per_update=shares["server_s"] * 1000 / (pace.changes * len(sessions.pages)),
        cpu=shares,
        load=load,
    )
    per_change: list[list[float]] = [[] for _ in commits]
    for log, frames in zip(logs, sessions.frames, strict=True):
        if log is None:  # its frames after the reload may name other rows: left out
            result.reloaded += 1
            result.missed += len(commits)
            continue
        result.socket_ms += [ms for ms in match(frames.log, commits, "mono") if ms is not None]
        for k, ms in enumerate(match(log, commits, "at")):
            if ms is None:
                result.missed += 1
            else:
                result.latencies_ms.append(ms)
                per_change[k].append(ms)
    result.slowest_ms = [max(x) for x in per_change if x]
    if args.dump:
        with args.dump.open("a") as out:
            raw = {
                "sessions": result.sessions,
                "pace": vars(pace),
                "commits": [vars(c) for c in commits],
                "dom": logs,
                "frames": [f.log for f in sessions.frames],
            }
            out.write(json.dumps(raw) + "\n")
    return result


def measure_commit_to_dom(
    browser: Any, server: FleetServer, db: BenchDatabase, state: dict[str, Any], vehicles: int,
    user_id: int, args: argparse.Namespace,
) -> list[LiveResult]:  # fmt: skip
    """For each session count, hold that many boards open and time every change into each."""
    sessions = Sessions(browser, state, server.url, min(FIRST_PAGE, vehicles))
    flipper = Flipper(db.url, user_id)
    results = []
    try:
        for count in args.sessions:
            print(f"  commit-to-DOM, {count} sessions", flush=True)
            sessions.reload()
            sessions.open(count - len(sessions.pages))
            plates, _ = sessions.observe()
            flipper.retarget(plates)
            warmup = []
            for _ in range(args.warmup):
                warmup.append(flipper.change())
                time.sleep(0.5)
            sessions.logs(warmup, args.grace)  # every tab done with them: the quiet is quiet
            time.sleep(1)
            # A tab's own chores (heartbeat, clock) in a quiet spell, to take off the changes'.
            idle0 = renderer_busy_ms(sessions.cdps)
            time.sleep(IDLE_S)
            idle = [b - a for a, b in zip(idle0, renderer_busy_ms(sessions.cdps), strict=True)]
            for pace in args.paces:
                plates, hidden = sessions.observe()
                if not flipper.retarget(plates):  # pages that reloaded show other cars first
                    sessions.reload()
                    plates, hidden = sessions.observe()
                    flipper.retarget(plates)
                print(
                    f"  {count} sessions, a change every {pace.interval:g} s:"
                    f" {pace.changes} changes of {len(flipper.vehicles)} first-page vehicles",
                    flush=True,
                )
                result = run_pace(sessions, flipper, server, db, pace, idle, args)
                result.vehicles, result.hidden = vehicles, hidden
                print("    " + live_row(result), flush=True)
                results.append(result)
                time.sleep(2)
    finally:
        flipper.close()
        sessions.close()
    return results


# --- reporting ----------------------------------------------------------------------------------


def _s(ms: float) -> str:
    return f"{ms / 1000:.2f} s"


def _ms(values: Sequence[float | None], key: str) -> str:
    known = [v for v in values if v is not None]
    return f"{pct(known)[key]:.0f} ms" if known else "—"


RENDER_HEADER = (
    "| vehicles | blocks | runs | cold: median | cold: max | warm: median | warm: max"
    " | first byte (server session), median | engine read + frames | server's first board"
    " | target | load avg |"
)


def render_row(r: RenderResult) -> str:
    cold = [x.ready_ms for x in r.cold]
    warm = [x.ready_ms for x in r.warm]
    ttfb = statistics.median(x.ttfb_ms for x in [*r.cold, *r.warm])
    goal = f"< {TARGET_RENDER_S:.0f} s: **{r.verdict}**" if r.verdict else "—"
    return (
        f"| {r.vehicles:,} | {r.blocks:,} | {len(cold)} | {_s(statistics.median(cold))}"
        f" | {_s(max(cold))} | {_s(statistics.median(warm))} | {_s(max(warm))}"
        f" | {ttfb:.0f} ms | {r.server.read_ms:.0f} + {r.server.frames_ms:.0f} ms"
        f" | {_s(r.first_after_start_ms)} | {goal} | {r.load} |"
    )


LIVE_HEADER = (
    "| vehicles | sessions | a change every | changes | missed | pages reloaded"
    " | commit → tab's socket: median / p99 | commit → DOM: median | p95 | p99 | max"
    " | slowest session per change, median | target p99 | tab's main thread per change"
    " | server CPU per change and board"
    " | boards opened alongside, median / max | server CPU | browser CPU | database CPU"
    " | other processes' CPU | load avg |"
)


def live_row(r: LiveResult) -> str:
    goal = f"< {TARGET_P99_MS:.0f} ms: **{r.verdict}**" if r.verdict else "—"
    cpu = r.cpu
    return (
        f"| {r.vehicles:,} | {r.sessions} | {r.pace.interval:g} s | {r.pace.changes}"
        f" | {r.missed:,} of {r.pace.changes * r.sessions:,} | {r.reloaded}"
        f" | {_ms(r.socket_ms, 'p50')} / {_ms(r.socket_ms, 'p99')}"
        f" | {_ms(r.latencies_ms, 'p50')} | {_ms(r.latencies_ms, 'p95')}"
        f" | {_ms(r.latencies_ms, 'p99')} | {_ms(r.latencies_ms, 'max')}"
        f" | {_ms(r.slowest_ms, 'p50')} | {goal} | {_ms([r.renderer_ms_per_change], 'p50')}"
        f" | {r.server_ms_per_update:.0f} ms"
        f" | {_s(statistics.median(r.open_ms))} / {_s(max(r.open_ms))}"
        f" | {cpu['server']:.0%} | {cpu['browser']:.0%} | {cpu['database']:.0%}"
        f" | {cpu['other']:.0%} | {r.load} |"
    )


def tables(renders: list[RenderResult], lives: list[LiveResult]) -> tuple[list[str], list[str]]:
    render = [RENDER_HEADER, "|" + "---:|" * 10 + "---|---|"] + [render_row(r) for r in renders]
    live = [LIVE_HEADER, "|" + "---:|" * 11 + "---|" + "---:|" * 7 + "---|"]
    return render, live + [live_row(r) for r in lives]


def section(
    renders: list[RenderResult], lives: list[LiveResult], args: argparse.Namespace, where: str,
    chromium: str,
) -> str:  # fmt: skip
    render, live = tables(renders, lives)
    paces = ", ".join(f"{p.changes} at one every {p.interval * 1000:.0f} ms" for p in args.paces)
    hidden = [r for r in lives if r.hidden]
    return "\n".join([
        BEGIN,
        "## Fleet board in the browser: first render and commit-to-DOM",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/dashboard.py` on {where};"
        f" Chromium {chromium} (headless, Debian's), driven by Playwright.",
        "",
        "**The browser shares the machine with the server and the database**: Chromium (every"
        " tab), the server (`fleet serve`, one worker: every board session lives in it),"
        " PostgreSQL and the process committing the changes all run on the same"
        f" {psutil.cpu_count()} cores, where a lot's tablets would each have their own."
        " Other sessions' test suites may run on the machine too: *other processes' CPU* is the"
        " machine's busy time during the measured changes minus that of the benchmark's own"
        " processes (100% = one core); the load average (1/5/15 min) is read at the end of"
        " each measurement.",
        "",
        f"Demo fleets from `db.demo.load_demo` (seed {args.seed}, {args.locations} locations,"
        " about 8 blocks per vehicle), then `VACUUM (ANALYZE)`; a fresh server per size, one"
        " agent signed in through /login once, every page a new server session with that"
        " cookie, viewport 1280×720.",
        "",
        "### First render",
        "",
        "From navigation start to the board complete: the vehicle table showing its first page"
        f" ({FIRST_PAGE} rows), the counts table filled and the top bar live, timed in the page"
        " (`performance.now()`, polled every animation frame). *Cold*: the board in a new"
        " browser context, nothing cached; *warm*: then in a second tab of that context"
        " (scripts cached; still a new server session, which reads the whole fleet)."
        " *First byte* is the request-to-response time of `/board`: the server builds the"
        " session (reads every vehicle, builds both tables) before it answers. *Engine read +"
        " frames* times that work alone in the benchmark's process: `status.list_status` and"
        " `status.status_counts` in one snapshot, then the rows of both tables."
        " *Server's first board* is the first opening after the server started (the page"
        " modules import then); it is left out of the other columns. The target is judged on"
        " the slowest cold opening.",
        "",
        *render,
        "",
        "### Commit-to-DOM",
        "",
        f"{' and then '.join(map(str, args.sessions))} boards open in two browser contexts"
        " (a board alone shows what one tablet would see); a MutationObserver in each page"
        " notes `Date.now()` whenever a row of the vehicle table comes to show a new status,"
        " and the DevTools protocol notes when each WebSocket frame patching a row's status"
        " reaches each tab (Chrome stamps it in its network process, on the same monotonic"
        " clock as Python's `time.monotonic()`). This process then commits status changes of"
        f" vehicles on the table's first page ({paces}, after {args.warmup} warm-up changes),"
        " each with `db.status.change_status` in its own transaction, noting the time right"
        " after COMMIT returns. Overdue rentals lead the board (at 10,000 vehicles its whole"
        " first page), so a rented car is first returned to cleaning, then every car flips"
        " between cleaning and available; the rows keep their places. Latency is counted over"
        " every (session, change) pair. *Commit → tab's socket* is the server's share: the"
        " notification, the server's read for each session and the patch on the wire;"
        " *commit → DOM* adds the tab's own work (Bokeh decoding the message and the table"
        " writing the changed cells). *Missed* counts pairs never shown within"
        f" {args.grace:.0f} s of the last change, including every change for a page that"
        " reloaded (the top bar reloads a page whose server seemed silent for eight seconds)."
        " *Tab's main thread per change* is the CPU time of a page's renderer main thread"
        " (Chrome's `TaskDuration` in thread time) from the first change until every change"
        " showed, less what it spends in a quiet spell of that length (the heartbeat, the"
        " clock), divided by the number of changes, for the median tab: what one update costs"
        " one browser. *Server CPU per change and board* is the server's CPU time over the"
        " changes divided by changes × open boards: what one board's session costs the server"
        " for one change. *Boards opened alongside* is each session's time to a complete board"
        " while the sessions before it were open. CPU columns are CPU time over the changes'"
        " wall time (100% = one core) of the server, of Chromium and Playwright, and of"
        " PostgreSQL (all its processes, when it runs on this machine).",
        "",
        *live,
        "",
        f"Targets from the issue: first render under {TARGET_RENDER_S:.0f} s at"
        f" {TARGET_RENDER_VEHICLES:,} vehicles; commit-to-DOM p99 under {TARGET_P99_MS:.0f} ms"
        f" with {TARGET_SESSIONS} sessions (and no change missed)."
        + (
            ""
            if not hidden
            else " Pages not visible (their drawing may be throttled): "
            + "; ".join(f"{r.vehicles:,} vehicles: {r.hidden}" for r in hidden)
            + "."
        ),
        END,
    ])  # fmt: skip


# --- the run ------------------------------------------------------------------------------------


def run_size(
    browser: Any, vehicles: int, args: argparse.Namespace, workdir: Path
) -> tuple[str, RenderResult, list[LiveResult]]:
    """One fleet size: a fresh database and server, first render, then commit-to-DOM."""
    print(f"\n== demo fleet: {vehicles:,} vehicles ==", flush=True)
    with bench_database(args.database_url, f"fleet_bench_dashboard_{vehicles}") as db:
        where = machine(db.admin, db.where + " server")
        load_fleet(
            db.url,
            vehicles=vehicles,
            locations=args.locations,
            seed=args.seed,
            blocks_per_vehicle=None,
        )
        engine = make_engine(db.url)
        with engine.connect() as conn:
            blocks = conn.execute(text("SELECT count(*) FROM blocks")).scalar_one()
        engine.dispose()
        user_id, username, password = board_user(db.url)
        with FleetServer(db.url, log_dir=workdir) as server:
            try:
                state = sign_in(browser, server.url, username, password)
                print("  first render", flush=True)
                render = measure_first_render(
                    browser, server, state, vehicles, blocks, db.url, args
                )
                print("    " + render_row(render), flush=True)
                lives = []
                if vehicles in args.live_sizes:
                    lives = measure_commit_to_dom(
                        browser, server, db, state, vehicles, user_id, args
                    )
            except BaseException:
                print(f"server log:\n{server.log_tail()}", file=sys.stderr)
                raise
    return where, render, lives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="fleet sizes, comma-separated")
    parser.add_argument(
        "--live-sizes", default="", help="sizes that get commit-to-DOM (default: every size)"
    )
    parser.add_argument("--runs", type=int, default=5, help="cold + warm openings per size")
    parser.add_argument(
        "--sessions",
        default=f"1,{TARGET_SESSIONS}",
        help="boards held open, comma-separated, ascending (one alone shows a tablet's floor)",
    )
    parser.add_argument(
        "--paces",
        default="5:20,0.2:100",
        help="schedules of changes, in order: seconds between changes:how many, comma-separated",
    )
    parser.add_argument("--warmup", type=int, default=5, help="changes before measuring")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds to wait for stragglers")
    parser.add_argument("--locations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default=get_settings().database_url,
        help="server to create the benchmark databases on (default: FLEET_DATABASE_URL,"
        " else an embedded server in a temporary directory)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 vehicles, 3 runs, 1 and 5 sessions, 10 + 20 changes; print only",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="markdown file to update")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument(
        "--profile", type=Path, help="folder for py-spy profiles of the server and tab profiles"
    )
    parser.add_argument("--py-spy", help="the py-spy executable (default: on PATH)")
    parser.add_argument("--dump", type=Path, help="append every pace's raw timings (JSON lines)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.runs, args.sessions, args.paces = "1000", 3, "1,5", "1:10,0.2:20"
        args.warmup, args.no_docs = 3, True
    sizes = [int(s) for s in args.sizes.split(",") if s]
    args.live_sizes = {int(s) for s in args.live_sizes.split(",") if s} or set(sizes)
    args.paces = [Pace.parse(p) for p in args.paces.split(",") if p]
    args.sessions = sorted(int(n) for n in args.sessions.split(",") if n)
    die_on_sigterm()

    from playwright.sync_api import sync_playwright

    renders: list[RenderResult] = []
    lives: list[LiveResult] = []
    where = ""
    with (
        tempfile.TemporaryDirectory(prefix="fleet-bench-server-") as workdir,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        chromium = browser.version
        try:
            print(f"Chromium {chromium}; load average: {load_average()}", flush=True)
            for vehicles in sizes:
                where, render, live = run_size(browser, vehicles, args, Path(workdir))
                renders.append(render)
                lives += live
        finally:
            browser.close()

    render, live = tables(renders, lives)
    print(f"\nmachine: {where}\n")
    print("\n".join(render))
    print()
    print("\n".join(live))
    if not args.no_docs:
        write_section(args.docs, BEGIN, END, section(renders, lives, args, where, chromium))
        print(f"\nwrote {args.docs}")


if __name__ == "__main__":
    main()
