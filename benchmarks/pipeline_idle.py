"""The idle pipeline's CPU, and how long `fleet pipeline run refresh-overdue` takes.

Run from the repository root: `.venv/bin/python benchmarks/pipeline_idle.py [--minutes N]`.
1. `fleet pipeline run refresh-overdue` with no Prefect server up (the flow runs in the
   command's process), median of 3.
2. `fleet pipeline serve` on a fresh database (empty inbox, nothing due): after a warm-up,
   the CPU time of its whole process tree (the serving process, the Prefect server, anything
   they start) over N minutes (default 5), as a share of one core, and the flow runs made.
3. `fleet pipeline run refresh-overdue` with it up (handed to the served deployment, its log
   followed until it ends), median of 3.
The database is fresh (embedded in a temporary directory, or on FLEET_DATABASE_URL /
--database-url). The figures replace the pipeline-idle section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from realtime import bench_database, die_on_sigterm, free_port, load_average, write_section  # noqa: E402
from search import machine  # noqa: E402

from fleet.settings import get_settings  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- pipeline-idle:begin -->", "<!-- pipeline-idle:end -->"
FLEET = Path(sys.executable).parent / "fleet"
WARM_UP_SECONDS = 30.0


def until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def api(url: str, path: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
            return reply.read().strip() == b"true"
    except OSError:
        return False


def tree_cpu(root: psutil.Process) -> float:
    """CPU seconds of root and its descendants, with the children they have already reaped."""
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def timed_run(env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(FLEET), "pipeline", "run", "refresh-overdue"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fleet pipeline run failed:\n{done.stdout}{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="idle window to measure")
    parser.add_argument("--runs", type=int, default=3, help="timed `fleet pipeline run`s each")
    parser.add_argument(
        "--database-url",
        default=get_settings().database_url,
        help="server to create the benchmark database on (default: FLEET_DATABASE_URL,"
        " else an embedded server in a temporary directory)",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="markdown file to update")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    die_on_sigterm()

    with (
        bench_database(args.database_url, "fleet_bench_pipeline") as db,
        tempfile.TemporaryDirectory(prefix="fleet-bench-pipeline-") as tmp,
    ):
        where = machine(db.admin, db.where + " server")
        before = load_average()
        print(f"machine: {where}\nload average: {before}", flush=True)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env |= {
            "FLEET_DATABASE_URL": db.url,
            "FLEET_DATA_DIR": tmp,
            "FLEET_PREFECT_PORT": str(port),
        }
        Path(tmp, "inbox").mkdir()

        alone = [timed_run(env) for _ in range(args.runs)]
        print(f"run without a server: {[round(t, 2) for t in alone]} s", flush=True)

        # Open for the whole serve, closed in its finally below.
        log = Path(tmp, "serve.log").open("w+")  # noqa: SIM115
        serve = subprocess.Popen(
            [str(FLEET), "pipeline", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            started = time.monotonic()
            until(
                lambda: healthy(api_url) and len(api(api_url, "/deployments/filter")) == 5,
                120,
                "the five deployments",
            )
            up = time.monotonic() - started
            print(f"serve up in {up:.1f} s; warming up {WARM_UP_SECONDS:.0f} s", flush=True)
            time.sleep(WARM_UP_SECONDS)
            root = psutil.Process(serve.pid)
            cpu0, t0 = tree_cpu(root), time.monotonic()
            peak_processes = 0
            deadline = t0 + args.minutes * 60
            while time.monotonic() < deadline:
                # Sampled every second: a process started per run would show in the count.
                with contextlib.suppress(psutil.Error):
                    peak_processes = max(peak_processes, 1 + len(root.children(recursive=True)))
                time.sleep(1.0)
            cpu1, t1 = tree_cpu(root), time.monotonic()
            share = (cpu1 - cpu0) / (t1 - t0) * 100
            print(
                f"idle: {share:.1f} % of one core over {(t1 - t0) / 60:.1f} min,"
                f" at most {peak_processes} processes",
                flush=True,
            )
            served = [timed_run(env) for _ in range(args.runs)]
            print(f"run with serve up: {[round(t, 2) for t in served]} s", flush=True)
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
            log.close()
        after = load_average()

    body = "\n".join(
        [
            BEGIN,
            "## Idle pipeline and `fleet pipeline run`",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d} by `benchmarks/pipeline_idle.py` on {where};"
            f" load average (1 / 5 / 15 min) {before} before, {after} after. A fresh database,"
            " an empty inbox, nothing due. `fleet pipeline serve` runs the due flow runs in"
            " threads of its own process (no process per run).",
            "",
            "| measure | figure |",
            "|---|---|",
            f"| `fleet pipeline serve` idle, whole process tree (Prefect server included),"
            f" {args.minutes:g} min after a {WARM_UP_SECONDS:.0f} s warm-up"
            f" | {share:.1f} % of one core (at most"
            f" {peak_processes} processes) |",
            f"| `fleet pipeline run refresh-overdue`, no server up (runs in the command),"
            f" median of {args.runs} | {statistics.median(alone):.2f} s"
            f" (slowest {max(alone):.2f} s) |",
            f"| `fleet pipeline run refresh-overdue`, `fleet pipeline serve` up (handed to the"
            f" deployment, log followed), median of {args.runs}"
            f" | {statistics.median(served):.2f} s (slowest {max(served):.2f} s) |",
            "",
            "Promises: idle at most 10 % of one core; `fleet pipeline run refresh-overdue`"
            " under 3 s on an idle machine.",
            END,
        ]
    )
    print("\n" + body)
    if not args.no_docs:
        write_section(args.docs, BEGIN, END, body)


if __name__ == "__main__":
    main()
