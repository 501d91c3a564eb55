"""Availability search latency on demo fleets: db.availability.search against a plain query.

Run from the repository root: `.venv/bin/python benchmarks/search.py [--sizes 1000,10000]`.
Each size gets a fresh database `fleet_bench` on the configured server (or the embedded one),
dropped again at the end; the figures replace the search section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import Connection, Engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db import migrate  # noqa: E402
from db.availability import search  # noqa: E402
from db.database import make_engine, resolve_url  # noqa: E402
from db.demo import load_demo  # noqa: E402
from fleet.settings import get_settings  # noqa: E402

BENCH_DB = "fleet_bench"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- search:begin -->", "<!-- search:end -->"

# The obvious way to ask the question: every car of the category on the lot, minus those with
# an overlapping live block (one probe of the exclusion constraint's GiST index per candidate).
PLAIN_SQL = """
SELECT v.id
FROM vehicle_status_realtime s
JOIN vehicles v ON v.id = s.vehicle_id
JOIN vehicle_categories c ON c.id = v.category_id
WHERE s.location_id = :location_id
  AND v.category_id = :category_id
  AND NOT EXISTS (
      SELECT 1 FROM blocks b
      WHERE b.vehicle_id = v.id
        AND b.state IN ('active', 'completed')
        AND b.blocked && tstzrange(:start, CAST(:end AS timestamptz) + c.prep_buffer))
"""

# The same question with the category read from the status table, where our schema copies
# it: the fairest plain competitor, since `status_location` alone then gives the candidates.
PLAIN_STATUS_SQL = """
SELECT s.vehicle_id
FROM vehicle_status_realtime s
JOIN vehicle_categories c ON c.id = s.category_id
WHERE s.location_id = :location_id
  AND s.category_id = :category_id
  AND NOT EXISTS (
      SELECT 1 FROM blocks b
      WHERE b.vehicle_id = s.vehicle_id
        AND b.state IN ('active', 'completed')
        AND b.blocked && tstzrange(:start, CAST(:end AS timestamptz) + c.prep_buffer))
"""

# Counter staff mostly book the coming two weeks; far pickups see more cars move in between.
NEAR_DAYS = 14


@dataclass
class Result:
    vehicles: int
    blocks: int
    load_s: float
    vacuum_s: float
    db_bytes: int
    search_ms: list[float]
    plain_ms: list[float]
    plain_status_ms: list[float]
    near: list[bool]
    search_hits: float
    plain_hits: float
    explain_median: str  # search at its median latency, then the plain query on that request
    explain_p95: str  # search at its 95th percentile
    explain_plain: str

    @property
    def ratio(self) -> float:
        return statistics.median(self.plain_ms) / statistics.median(self.search_ms)

    def pick(self, values: list[float], near: bool) -> list[float]:
        return [v for v, n in zip(values, self.near, strict=True) if n == near]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def bar(stage: str, done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    print(f"\r    {stage:<11} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end,
          flush=True)  # fmt: skip


def admin_engine() -> tuple[Engine, str]:
    settings = get_settings()
    url = resolve_url(settings.database_url, settings.data_dir)
    where = "configured server" if settings.database_url else "embedded server"
    return make_engine(url, isolation_level="AUTOCOMMIT"), where


def fresh_database(admin: Engine) -> Engine:
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
    url = make_url(admin.url).set(database=BENCH_DB).render_as_string(hide_password=False)
    engine = make_engine(url)
    with engine.begin() as c:
        migrate.upgrade(c)
    return engine


def drop_database(admin: Engine) -> None:
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))


def requests(conn: Connection, now: datetime, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    locations = conn.execute(text("SELECT id FROM locations ORDER BY id")).scalars().all()
    categories = conn.execute(text("SELECT id FROM vehicle_categories ORDER BY id")).scalars().all()
    out = []
    for i in range(count):
        # Alternate near pickups (within NEAR_DAYS) and far ones (up to 90 days ahead).
        days = rng.randint(0, NEAR_DAYS - 1) if i % 2 == 0 else rng.randint(NEAR_DAYS, 89)
        start = now + timedelta(days=days, hours=rng.randint(1, 23))
        out.append({
            "location_id": rng.choice(locations),
            "category_id": rng.choice(categories),
            "start": start,
            "end": start + timedelta(days=rng.randint(1, 7)),
        })  # fmt: skip
    return out


def explain_search(conn: Connection, request: dict, now: datetime) -> str:
    """EXPLAIN ANALYZE exactly the statement and parameters search() sends, planned as it is."""
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if "candidates AS" in statement:
            sent.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", record)
    try:
        search(conn, **request, now=now)
    finally:
        event.remove(conn, "before_cursor_execute", record)
    statement, parameters = sent[-1]
    # EXPLAIN of a statement with parameters always plans for their values; search() runs a
    # generic plan, so prepare the statement by name and explain its execution instead.
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", number, statement)
    conn.exec_driver_sql("PREPARE bench_search AS " + prepared)
    types = conn.execute(
        text(
            "SELECT CAST(unnest(parameter_types) AS text) FROM pg_prepared_statements"
            " WHERE name = 'bench_search'"
        )
    ).scalars()
    args = ", ".join(f"CAST(%({n})s AS {t})" for n, t in zip(names, types, strict=True))
    conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    # EXECUTE's arguments get their types only when it runs, too late for an empty array sent
    # as a parameter; a client-side cursor sends them as quoted literals instead.
    with psycopg.ClientCursor(conn.connection.dbapi_connection) as cur:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_search({args})", parameters)
        plan = "\n".join(row[0] for row in cur.fetchall())
    conn.execute(text("RESET plan_cache_mode"))
    conn.exec_driver_sql("DEALLOCATE bench_search")
    return plan


def describe(request: dict, now: datetime) -> str:
    ahead = request["start"] - now
    length = request["end"] - request["start"]
    return (
        f"-- location {request['location_id']}, category {request['category_id']},"
        f" pickup {ahead.days} days {ahead.seconds // 3600} h ahead, {length.days} days\n"
    )


def explain_plain(conn: Connection, request: dict) -> str:
    rows = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + PLAIN_SQL), request).scalars()
    return "\n".join(rows)


def measure(conn: Connection, now: datetime, args: argparse.Namespace) -> tuple:
    plain, plain_status = text(PLAIN_SQL), text(PLAIN_STATUS_SQL)
    reqs = requests(conn, now, args.warmup + args.queries, args.seed)
    search_ms, plain_ms, plain_status_ms, search_hits, plain_hits = [], [], [], [], []
    near = []
    for i, req in enumerate(reqs):
        # Rotate which query runs first so none always finds the others' pages cached.
        order = ["search", "plain", "plain_status"]
        order = order[i % 3 :] + order[: i % 3]
        for which in order:
            t0 = time.perf_counter()
            if which == "search":
                n = len(search(conn, **req, now=now))
            elif which == "plain":
                n = len(conn.execute(plain, req).all())
            else:
                conn.execute(plain_status, req).all()
            ms = (time.perf_counter() - t0) * 1000
            if i >= args.warmup:
                if which == "search":
                    search_ms.append(ms)
                    search_hits.append(n)
                elif which == "plain":
                    plain_ms.append(ms)
                    plain_hits.append(n)
                else:
                    plain_status_ms.append(ms)
        if i >= args.warmup:
            near.append(req["start"] - now < timedelta(days=NEAR_DAYS))
        if (i + 1) % 30 == 0 or i + 1 == len(reqs):
            bar("queries", i + 1, len(reqs))
    # Explain typical and slow requests, not whichever came first.
    ranked = sorted(range(len(search_ms)), key=search_ms.__getitem__)
    median = reqs[args.warmup + ranked[len(ranked) // 2]]
    slow = reqs[args.warmup + ranked[int(len(ranked) * 0.95) - 1]]
    return (
        search_ms,
        plain_ms,
        plain_status_ms,
        near,
        statistics.mean(search_hits),
        statistics.mean(plain_hits),
        describe(median, now) + explain_search(conn, median, now),
        describe(slow, now) + explain_search(conn, slow, now),
        describe(median, now) + explain_plain(conn, median),
    )


def run_size(admin: Engine, size: int, args: argparse.Namespace) -> Result:
    print(f"\n== {size:,} vehicles ==", flush=True)
    engine = fresh_database(admin)
    try:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            now = conn.execute(text("SELECT date_trunc('hour', now(), 'UTC')")).scalar_one()
            summary = load_demo(
                conn,
                vehicles=size,
                locations=args.locations,
                seed=args.seed,
                now=now,
                blocks_per_vehicle=args.blocks_per_vehicle,
                progress=bar,
            )
        load_s = time.perf_counter() - t0
        print(f"    loaded {summary.blocks:,} blocks in {load_s:.1f} s", flush=True)
        # A settled database has its visibility map set, as autovacuum would leave it.
        t0 = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
            db_bytes = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        vacuum_s = time.perf_counter() - t0
        with engine.connect() as conn:
            measured = measure(conn, now, args)
            conn.rollback()
        return Result(size, summary.blocks, load_s, vacuum_s, db_bytes, *measured)
    finally:
        engine.dispose()
        drop_database(admin)


def machine(admin: Engine, where: str) -> str:
    with admin.connect() as c:
        version = c.execute(text("SHOW server_version")).scalar()
    cpu = platform.processor() or platform.machine()
    mem_gib = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {mem_gib:.0f} GiB RAM; PostgreSQL {version}"
        f" ({where}, default settings); Python {platform.python_version()}"
    )


def table(results: list[Result]) -> list[str]:
    lines = [
        "| vehicles | blocks | load | db size | pickups | search median | search p95 |"
        " plain median | plain p95 | plain/search | plain† median | plain†/search |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        first = True
        for label, subset in (
            ("all", None),
            (f"within {NEAR_DAYS} d", True),
            (f"{NEAR_DAYS}-90 d ahead", False),
        ):
            sm, pm, qm = (
                values if subset is None else r.pick(values, subset)
                for values in (r.search_ms, r.plain_ms, r.plain_status_ms)
            )
            head = (
                f"| {r.vehicles:,} | {r.blocks:,} | {r.load_s:.0f} s"
                f" | {r.db_bytes / 2**20:,.0f} MiB"
                if first
                else "| | | |"
            )
            first = False
            lines.append(
                f"{head} | {label}"
                f" | {statistics.median(sm):.2f} ms | {p95(sm):.2f} ms"
                f" | {statistics.median(pm):.2f} ms | {p95(pm):.2f} ms"
                f" | {statistics.median(pm) / statistics.median(sm):.2f}x"
                f" | {statistics.median(qm):.2f} ms"
                f" | {statistics.median(qm) / statistics.median(sm):.2f}x |"
            )
    return lines


def section(results: list[Result], args: argparse.Namespace, where: str) -> str:
    last = results[-1]
    return "\n".join([
        BEGIN,
        "## Availability search",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/search.py` on {where}.",
        "",
        f"Demo fleets from `db.demo.load_demo` (seed {args.seed}, {args.locations} locations,"
        f" about {args.blocks_per_vehicle} blocks per vehicle over a year), loaded with COPY in"
        " one transaction, then `VACUUM (ANALYZE)`. For each size, "
        f"{args.queries} requests (after {args.warmup} warm-up) for a random location and"
        f" category, for 1-7 days, picking up alternately within {NEAR_DAYS} days and"
        f" {NEAR_DAYS}-90 days ahead. Latency is wall time in Python, round trip included.",
        "",
        "- **search**: `db.availability.search()` (`db/sql/search.sql`, at most 50 hits, with"
        " whereabouts at pickup, arrivals from elsewhere and the next block).",
        "- **plain**: cars of the category whose live status is on that lot, `NOT EXISTS` an"
        " overlapping live block (one GiST probe of `blocks_no_overlap` per candidate), all"
        " rows, with the category from `vehicles` as a newcomer would write it.",
        "- **plain†**: the same with the category from `vehicle_status_realtime.category_id`,"
        " so `status_location` alone gives the candidates: the fairest plain competitor on"
        " this schema. Neither plain query knows where a car will be at pickup (one-way"
        " rentals, transfers); search does.",
        "",
        *table(results),
        "",
        f"Mean rows returned at {last.vehicles:,} vehicles: search {last.search_hits:.1f},"
        f" plain {last.plain_hits:.1f}.",
        END,
    ])  # fmt: skip


def write_docs(path: Path, body: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + body + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + body + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="vehicle counts, comma-separated"
    )
    parser.add_argument("--locations", type=int, default=20)
    parser.add_argument("--blocks-per-vehicle", type=int, default=50)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--docs", type=Path, default=DOCS, help="markdown file to update")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    admin, where = admin_engine()
    where = machine(admin, where)
    print(f"machine: {where}")
    results = []
    try:
        for size in sizes:
            results.append(run_size(admin, size, args))
    finally:
        drop_database(admin)
        admin.dispose()

    print()
    print("\n".join(table(results)))
    last = results[-1]
    print(f"\nmean rows at {last.vehicles:,}: search {last.search_hits:.1f},", end=" ")
    print(f"plain {last.plain_hits:.1f}")
    if last.ratio < 2:
        print(f"\nsearch is only {last.ratio:.2f}x the plain query at {last.vehicles:,} vehicles")
        print("\nEXPLAIN ANALYZE search, request at its median:\n" + last.explain_median)
        print("\nEXPLAIN ANALYZE search, request at its p95:\n" + last.explain_p95)
        print("\nEXPLAIN ANALYZE plain, the median request:\n" + last.explain_plain)
    if not args.no_docs:
        write_docs(args.docs, section(results, args, where))
        print(f"\nwrote {args.docs}")


if __name__ == "__main__":
    main()
