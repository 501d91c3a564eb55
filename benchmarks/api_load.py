"""Availability search over HTTP under load: requests per second and latency at 10k and 100k cars.

Run from the repository root: `.venv/bin/python benchmarks/api_load.py [--quick]`.
Each fleet size gets a fresh database with demo data (as benchmarks/search.py loads it; with
--keep and --database-url, kept and reused across runs), served by `fleet serve` in its own
process, once per --workers count. An asyncio httpx client with a bearer token sends varied
`POST /api/availability/search` requests (pickups over the next 30 days at the demo locations,
in their own time zones), in two mixes: what a counter sends (alternatives worked out when
nothing fits) and category searches alone. Each mix gets two phases:

- **capacity**: a fixed number of requests in flight for a fixed time (closed loop): the most
  searches per second the server gives, and the latency they see at that pace;
- **at the target rate**: requests started on a fixed schedule (open loop, default 100/s),
  latency counted from each request's scheduled start, so a server that falls behind is
  charged for the wait: does it hold p95 < 50 ms while sustaining that rate?

Any answer but 200 counts as an error. The figures replace the api-load section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
from realtime import (  # noqa: E402
    BenchDatabase,
    FleetServer,
    bench_database,
    bench_user,
    die_on_sigterm,
    load_average,
    load_fleet,
    machine_busy_seconds,
    pct,
    write_section,
)
from search import machine  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db.database import make_engine  # noqa: E402
from fleet.settings import get_settings  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- api-load:begin -->", "<!-- api-load:end -->"
SEARCH_PATH = "/api/availability/search"
TARGET_RATE, TARGET_P95_MS = 100.0, 50.0  # issue 4, at 100k vehicles


def reuse_fleet(url: str, size: int) -> datetime:
    """Check a kept database holds the fleet asked for; return the database's hour."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            vehicles = conn.execute(text("SELECT count(*) FROM vehicles")).scalar_one()
            now = conn.execute(text("SELECT date_trunc('hour', now(), 'UTC')")).scalar_one()
    finally:
        engine.dispose()
    if vehicles != size:
        raise SystemExit(f"the kept database has {vehicles:,} vehicles, not {size:,}")
    print(f"    reusing the kept database of {vehicles:,} vehicles", flush=True)
    return now


# Request mixes: what the counter sends, and the cheapest useful search for comparison.
MIXES = {
    "mixed": "85% name a category, 15% ask for a feature, alternatives when nothing fits",
    "category": "every request names a category, no features, `with_alternatives: false`",
}


def search_bodies(url: str, now: datetime, count: int, seed: int, mix: str) -> list[dict[str, Any]]:
    """Build varied, realistic search requests from the locations and categories in the DB."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            locations = conn.execute(text("SELECT id, time_zone FROM locations ORDER BY id")).all()
            categories = (
                conn.execute(text("SELECT id FROM vehicle_categories ORDER BY id")).scalars().all()
            )
            features = (
                conn.execute(text("SELECT DISTINCT unnest(features) AS f FROM vehicles ORDER BY f"))
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        location_id, tz = rng.choice(locations)
        local = ZoneInfo(tz)
        # Pickups on the hour or half hour within opening hours, over the next 30 days.
        day = (now + timedelta(days=rng.randint(0, 29))).astimezone(local).date()
        start = datetime(day.year, day.month, day.day, rng.randint(7, 19), rng.choice((0, 30)))
        start = start.replace(tzinfo=local)
        if start <= now:
            start += timedelta(days=1)
        end = start + timedelta(days=rng.choice((1, 1, 2, 3, 3, 4, 5, 7, 7, 10, 14)))
        body: dict[str, Any] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "location_id": location_id,
        }
        if mix == "category":
            body["category_id"] = rng.choice(categories)
            body["with_alternatives"] = False
        else:
            if rng.random() < 0.85:  # most searches name a category; some browse the whole lot
                body["category_id"] = rng.choice(categories)
            if features and rng.random() < 0.15:
                body["features"] = [rng.choice(features)]
        out.append(body)
    return out


@dataclass
class Phase:
    """What one load phase saw."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)  # 200s only
    plain_ms: list[float] = field(default_factory=list)  # answers that are a search alone
    alternatives_ms: list[float] = field(default_factory=list)  # those with alternatives too
    statuses: Counter[str] = field(default_factory=Counter)
    hits: int = 0
    late: int = 0  # open loop: requests not started because too many were still in flight
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    db_cpu: float = 0.0
    other_cpu: float = 0.0  # everything else on the machine (other sessions' tests)
    connects: float = 0.0  # new database sessions per second: pool churn
    load: str = ""

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != "200") + self.late

    @property
    def rps(self) -> float:
        return self.ok / self.seconds

    def error_text(self) -> str:
        parts = [f"{n}× {s}" for s, n in sorted(self.statuses.items()) if s != "200"]
        if self.late:
            parts.append(f"{self.late}× not sent (too many in flight)")
        return ", ".join(parts) or "0"


class Load:
    """An asyncio httpx client sending searches to one server."""

    def __init__(self, base_url: str, token: str, bodies: list[dict[str, Any]], seed: int):
        self.base_url = base_url
        self.token = token
        self.bodies = bodies
        self.rng = random.Random(seed)

    def client(self, connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def one(self, client: httpx.AsyncClient, phase: Phase | None, since: float) -> None:
        body = self.rng.choice(self.bodies)
        try:
            r = await client.post(SEARCH_PATH, json=body)
        except httpx.HTTPError as exc:
            if phase is not None:
                phase.statuses[type(exc).__name__] += 1
            return
        ms = (time.perf_counter() - since) * 1000
        if phase is None:
            return
        if r.status_code != 200:
            phase.statuses[str(r.status_code)] += 1
            return
        phase.statuses["200"] += 1
        phase.latencies_ms.append(ms)
        answer = r.json()
        phase.hits += len(answer["results"])
        kind = phase.plain_ms if answer["alternatives"] is None else phase.alternatives_ms
        kind.append(ms)

    async def closed(self, concurrency: int, seconds: float, phase: Phase | None) -> None:
        """Keep `concurrency` requests in flight for `seconds`."""
        stop = time.perf_counter() + seconds
        async with self.client(concurrency) as client:

            async def worker() -> None:
                while time.perf_counter() < stop:
                    await self.one(client, phase, time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def open(self, rate: float, seconds: float, phase: Phase, in_flight: int = 64) -> None:
        """Start requests on a fixed schedule, `rate` a second, for `seconds`."""
        async with self.client(in_flight) as client:
            start = time.perf_counter()
            tasks: set[asyncio.Task[None]] = set()
            for i in range(int(rate * seconds)):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(tasks) >= in_flight:
                    phase.late += 1
                    continue
                # Latency from the scheduled start: waiting for the client counts too.
                task = asyncio.create_task(self.one(client, phase, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)


def sessions(db: BenchDatabase) -> int:
    """How many sessions the benchmark database has had since it was created."""
    name = make_url(db.url).database
    with db.admin.connect() as c:
        c.execute(text("SELECT pg_stat_clear_snapshot()"))
        return c.execute(
            text("SELECT sessions FROM pg_stat_database WHERE datname = :n"), {"n": name}
        ).scalar_one()


def measure(
    server: FleetServer,
    db: BenchDatabase,
    run: Callable[[Phase], Awaitable[None]],
    seconds: float,
) -> Phase:
    """Run one load phase, with the CPU the server, the database and this process used."""
    phase = Phase(seconds=seconds)
    me = psutil.Process()
    cpu0, me0, t0 = server.cpu_seconds(), sum(me.cpu_times()[:2]), time.monotonic()
    db0, sessions0, busy0 = db.cpu_seconds(), sessions(db), machine_busy_seconds()
    asyncio.run(_with_progress(run(phase), phase, seconds))
    wall = time.monotonic() - t0
    phase.server_cpu = (server.cpu_seconds() - cpu0) / wall
    phase.client_cpu = (sum(me.cpu_times()[:2]) - me0) / wall
    phase.db_cpu = (db.cpu_seconds() - db0) / wall
    ours = phase.server_cpu + phase.client_cpu + phase.db_cpu
    phase.other_cpu = max(0.0, (machine_busy_seconds() - busy0) / wall - ours)
    phase.connects = (sessions(db) - sessions0) / wall
    phase.load = load_average()
    return phase


async def _with_progress(work: Any, phase: Phase, seconds: float) -> None:
    async def tick() -> None:
        t0 = time.monotonic()
        while True:
            await asyncio.sleep(5)
            done = time.monotonic() - t0
            print(
                f"      {done:4.0f}/{seconds:.0f} s: {phase.ok:,} ok, {phase.errors} errors,"
                f" {phase.ok / done:.0f}/s",
                flush=True,
            )

    ticker = asyncio.create_task(tick())
    try:
        await work
    finally:
        ticker.cancel()


@dataclass
class Result:
    vehicles: int
    workers: int
    mix: str
    concurrency: int
    rate: float
    capacity: Phase
    target: Phase
    rss: int

    @property
    def verdict(self) -> str:
        t = self.target
        held = t.rps >= TARGET_RATE * 0.98 and not t.errors
        return "met" if held and pct(t.latencies_ms)["p95"] < TARGET_P95_MS else "missed"


def run_server(
    db: BenchDatabase,
    workdir: Path,
    vehicles: int,
    workers: int,
    bodies: dict[str, list[dict[str, Any]]],
    token: str,
    args: Any,
) -> list[Result]:
    print(f"\n  -- fleet serve --workers {workers} --", flush=True)
    results = []
    # One benchmark user sends everything: lift the per-user rate limit, or it would answer 429.
    with FleetServer(
        db.url, workers=workers, log_dir=workdir, rate_limit_per_minute="100000000"
    ) as server:
        for mix, requests in bodies.items():
            load = Load(server.url, token, requests, args.seed)
            print(f"    {mix} requests; warm-up {args.warmup:g} s", flush=True)
            asyncio.run(load.closed(args.concurrency, args.warmup, None))
            print(f"    capacity: {args.concurrency} in flight for {args.duration:g} s", flush=True)
            closed = partial(load.closed, args.concurrency, args.duration)
            capacity = measure(server, db, closed, args.duration)
            print("    " + phase_line(capacity), flush=True)
            print(f"    target: {args.rate:g}/s on schedule for {args.duration:g} s", flush=True)
            scheduled = partial(load.open, args.rate, args.duration)
            target = measure(server, db, scheduled, args.duration)
            print("    " + phase_line(target), flush=True)
            if (capacity.errors or target.errors) and args.verbose:
                print(server.log_tail(), file=sys.stderr)
            results.append(
                Result(
                    vehicles, workers, mix, args.concurrency, args.rate, capacity, target,
                    server.rss(),
                )
            )  # fmt: skip
    return results


def phase_line(p: Phase) -> str:
    q = pct(p.latencies_ms)
    return (
        f"{p.rps:.0f}/s, p50 {q['p50']:.1f} ms, p95 {q['p95']:.1f} ms, p99 {q['p99']:.1f} ms,"
        f" max {q['max']:.0f} ms, errors {p.error_text()}; search alone p95"
        f" {pct(p.plain_ms)['p95']:.1f} ms, {len(p.alternatives_ms)} with alternatives p95"
        f" {pct(p.alternatives_ms)['p95']:.0f} ms; server CPU {p.server_cpu:.0%},"
        f" client CPU {p.client_cpu:.0%}, database CPU {p.db_cpu:.0%},"
        f" other processes {p.other_cpu:.0%}, {p.connects:.0f} new DB sessions/s,"
        f" load {p.load}"
    )


def run_size(database_url: str | None, size: int, args: Any) -> tuple[list[Result], str]:
    print(f"\n== {size:,} vehicles ==", flush=True)
    results = []
    name = f"fleet_bench_api_{size}" if args.keep else "fleet_bench_api"
    with (
        bench_database(database_url, name, keep=args.keep) as db,
        tempfile.TemporaryDirectory(prefix="fleet-bench-server-") as workdir,
    ):
        where, url = machine(db.admin, db.where + " server"), db.url
        if db.fresh:
            now = load_fleet(
                url,
                vehicles=size,
                locations=args.locations,
                seed=args.seed,
                blocks_per_vehicle=args.blocks_per_vehicle,
            )
        else:
            now = reuse_fleet(url, size)
        _, token = bench_user(url)
        bodies = {mix: search_bodies(url, now, 5000, args.seed, mix) for mix in args.mixes}
        for workers in args.workers:
            results += run_server(db, Path(workdir), size, workers, bodies, token, args)
    return results, where


def table(results: list[Result]) -> list[str]:
    lines = [
        "| vehicles | workers | requests | phase | searches/s | p50 | p95 | p99 | max | errors"
        " | p95 search alone | alternatives: share, p95 | server CPU | client CPU"
        " | database CPU | other processes' CPU | new DB sessions/s | load avg | server RSS |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        for p in (r.capacity, r.target):
            q = pct(p.latencies_ms)
            label = (
                f"{r.concurrency} in flight"
                if p is r.capacity
                else f"{r.rate:g}/s on schedule: **{r.verdict}**"
            )
            share = len(p.alternatives_ms) / max(p.ok, 1)
            alternatives = f"{share:.0%}, {pct(p.alternatives_ms)['p95']:.0f} ms" if share else "—"
            lines.append(
                f"| {r.vehicles:,} | {r.workers} | {r.mix} | {label} | {p.rps:.0f}"
                f" | {q['p50']:.1f} ms | {q['p95']:.1f} ms | {q['p99']:.1f} ms"
                f" | {q['max']:.0f} ms | {p.error_text()}"
                f" | {pct(p.plain_ms)['p95']:.1f} ms | {alternatives}"
                f" | {p.server_cpu:.0%} | {p.client_cpu:.0%} | {p.db_cpu:.0%}"
                f" | {p.other_cpu:.0%} | {p.connects:.0f} | {p.load}"
                f" | {r.rss / 2**20:.0f} MiB |"
            )
    return lines


def section(results: list[Result], args: Any, where: str) -> str:
    mixes = [f"- *{m}*: {MIXES[m]}." for m in args.mixes]
    return "\n".join([
        BEGIN,
        "## Availability search over HTTP, under load",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/api_load.py` on {where}.",
        "",
        "**The load generator shares the machine with the server and the database**: 2 cores"
        " for all three. Other sessions' test suites may run on the machine too: *other"
        " processes' CPU* is the machine's busy time during the phase minus that of the"
        " benchmark's own processes, and the load average (1/5/15 min, read at the end of each"
        " phase) counts the benchmark's own processes as well (each request in flight is a"
        " runnable PostgreSQL backend).",
        "",
        f"Demo fleets from `db.demo.load_demo` (seed {args.seed}, {args.locations} locations,"
        f" about {args.blocks_per_vehicle} blocks per vehicle over a year, as"
        " `benchmarks/search.py` loads them), then `VACUUM (ANALYZE)`. The server is"
        " `fleet serve --workers N` in its own process(es), default settings except the per-user"
        " rate limit (lifted: one benchmark user sends everything). The client is one asyncio"
        " process with `httpx` and a bearer token, sending `POST /api/availability/search` drawn"
        " from 5,000 varied requests: a random demo location, pickup on the hour or half hour"
        " between 07:00 and 19:30 in the location's own time zone (ISO 8601 with offset) over"
        " the next 30 days, 1-14 days long. Request mixes:",
        "",
        *mixes,
        "",
        "Alternatives (upgrades, the same category at other lots, the nearest free periods) take"
        " dozens of searches each; the table splits latency between answers that are a search"
        " alone and those with alternatives. A phase holds only a hundred or so answers with"
        " alternatives, some taking seconds at 100k vehicles, so the *mixed* figures move"
        " between runs: compare several before trusting a change of a few tens of percent."
        " Every answer is checked: anything but 200 is an error.",
        "",
        f"- **{args.concurrency} in flight** (capacity): {args.concurrency} requests in flight"
        f" for {args.duration:g} s after a {args.warmup:g} s warm-up (closed loop): the most the"
        " server gives; latency at that pace includes queueing.",
        f"- **{args.rate:g}/s on schedule** (the target): requests started on a fixed schedule"
        f" for {args.duration:g} s (open loop; at most 64 in flight, more count as errors);"
        " latency from each request's scheduled start, so falling behind is charged. *met*"
        f" means the rate was held with no errors and p95 under {TARGET_P95_MS:.0f} ms.",
        "",
        "CPU columns are CPU time over the phase's wall time (100% = one core) of the server"
        " (all its processes), of the load generator, and of PostgreSQL (all its processes,"
        " when it runs on this machine). *New DB sessions/s* counts connections the server"
        " opened during the phase (`pg_stat_database.sessions`): churn of its connection pool.",
        "",
        *table(results),
        "",
        f"Target from issue 4: at 100,000 vehicles, p95 under {TARGET_P95_MS:.0f} ms while"
        f" sustaining at least {TARGET_RATE:.0f} searches a second (the story asks for 500 a"
        " minute, about 8 a second).",
        END,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="vehicle counts, comma-separated")
    parser.add_argument("--workers", default="1,2", help="fleet serve --workers values to try")
    parser.add_argument(
        "--mixes", default=",".join(MIXES), help=f"request mixes: {', '.join(MIXES)}"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="open-loop requests/s")
    parser.add_argument("--locations", type=int, default=20)
    parser.add_argument("--blocks-per-vehicle", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default=get_settings().database_url,
        help="server to create the benchmark database on (default: FLEET_DATABASE_URL,"
        " else an embedded server in a temporary directory)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="with --database-url: keep each fleet's database and reuse it on the next run",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 vehicles, 5 s phases")
    parser.add_argument("--verbose", action="store_true", help="print the server log on errors")
    parser.add_argument("--docs", type=Path, default=DOCS, help="markdown file to update")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.duration, args.warmup, args.blocks_per_vehicle = "2000", 5.0, 2.0, 8
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    args.mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    if unknown := set(args.mixes) - set(MIXES):
        parser.error(f"unknown mix {', '.join(sorted(unknown))}: choose from {', '.join(MIXES)}")
    die_on_sigterm()

    print(f"load average: {load_average()}", flush=True)
    results: list[Result] = []
    where = ""
    for size in sizes:
        found, where = run_size(args.database_url, size, args)
        results += found

    print()
    print(f"machine: {where}")
    print("\n".join(table(results)))
    if not args.no_docs:
        write_section(args.docs, BEGIN, END, section(results, args, where))
        print(f"\nwrote {args.docs}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
