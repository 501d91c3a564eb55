"""`fleet serve --workers 2`: how fast workers start, stop, and go when their supervisor dies.

Run from the repository root: `.venv/bin/python benchmarks/workers.py [--rounds N]`.
1. In a fresh interpreter: the supervisor's import (`api.workers`), the fork server's one
   import of the app's code (`api.preload`), and what each forked worker still does (build
   the app).
2. `fleet serve --workers 2` from its start until /readyz answers and until both workers have
   finished start-up (each logs "serving"), on an idle machine and with one busy loop per core.
3. SIGTERM to the process group with 10 WebSocket and 10 SSE streams open: until every
   process has exited. 4. `kill -9` of the supervisor: until no worker is left.
The database is fresh (embedded in a temporary directory, or on FLEET_DATABASE_URL /
--database-url). The figures replace the workers section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
from realtime import (  # noqa: E402
    bench_database,
    bench_user,
    die_on_sigterm,
    free_port,
    load_average,
    write_section,
)
from search import machine  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from fleet.settings import get_settings  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- workers:begin -->", "<!-- workers:end -->"
FLEET = Path(sys.executable).parent / "fleet"
IMPORT_SNIPPET = (
    "import sys, time; w, c = time.perf_counter(), time.process_time(); import {m};"
    " print(time.perf_counter() - w, time.process_time() - c,"
    " sum(n.split('.')[0] in ('pandas', 'polars', 'prefect') for n in sys.modules))"
)


# What a worker does once forked: build the app, its code already imported by the fork server
# (no database needed for that).
BUILD_SNIPPET = (
    "import sys, time; import api.preload; from api.app import create_app;"
    " w, c = time.perf_counter(), time.process_time(); create_app();"
    " print(time.perf_counter() - w, time.process_time() - c,"
    " sum(n.split('.')[0] in ('pandas', 'polars', 'prefect') for n in sys.modules))"
)


def import_cost(module: str, rounds: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds to import `module` in a fresh interpreter, heavy modules."""
    walls, cpus, heavy = [], [], 0
    snippet = BUILD_SNIPPET if module == "factory" else IMPORT_SNIPPET.format(m=module)
    env = {**os.environ, "FLEET_SECRET_KEY": "benchmark-secret-key-not-for-production"}
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", snippet],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        walls.append(float(out[0]))
        cpus.append(float(out[1]))
        heavy = int(out[2])
    return statistics.median(walls), statistics.median(cpus), heavy


def _burn() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_cores(on: bool) -> Iterator[None]:
    """One busy loop per core while inside, if `on`."""
    procs = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(os.cpu_count() or 1)]
    for p in procs if on else []:
        p.start()
    try:
        yield
    finally:
        for p in procs if on else []:
            p.kill()
            p.join()


class Served:
    """`fleet serve --workers 2` in its own process group, its log in a file."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"serve-{self.port}.log"
        env = {
            **os.environ,
            "FLEET_DATABASE_URL": database_url,
            "FLEET_DATA_DIR": str(workdir),
            "FLEET_SECRET_KEY": "benchmark-secret-key-not-for-production",
            "FLEET_LOG_LEVEL": "INFO",
        }
        cmd = [str(FLEET), "serve", "--port", str(self.port), "--workers", "2"]
        self.started = time.monotonic()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        return False

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def workers_serving(self) -> int:
        return self.text().count("serving; events from seq")

    def group(self) -> list[int]:
        alive = []
        for p in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error):
                if os.getpgid(p.pid) == self.proc.pid and p.info["status"] != "zombie":
                    alive.append(p.pid)
        return alive

    def kill(self) -> None:
        for pid in self.group():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def until(condition: Callable[[], bool], start: float, timeout: float = 120) -> float:
    """Seconds from `start` until condition() holds (polled every 20 ms)."""
    while not condition():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def start_round(url: str, workdir: Path) -> tuple[Served, list[float]]:
    """Start a server; return it and the seconds until the supervisor runs, /readyz, both up."""
    server = Served(url, workdir)
    try:
        supervisor = until(lambda: "Started parent process" in server.text(), server.started)
        ready = until(server.ready, server.started)
        both = until(lambda: server.workers_serving() >= 2, server.started)
    except BaseException:
        server.kill()
        raise
    return server, [supervisor, ready, both]


def stop_round(server: Served, token: str, streams: int) -> float:
    """Seconds from SIGTERM to the group's exit with `streams` WebSocket and SSE clients."""
    ws_base = server.url.replace("http://", "ws://")
    headers = {"Authorization": f"Bearer {token}"}
    sockets = [
        connect(f"{ws_base}/api/availability/realtime", additional_headers=headers, proxy=None)
        for _ in range(streams)
    ]
    clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(streams)]
    responses = []
    for c in clients:
        r = c.send(c.build_request("GET", "/api/availability/events", headers=headers), stream=True)
        lines = r.iter_lines()
        while "hello" not in next(lines):
            pass
        responses.append(r)
    for ws in sockets:
        ws.recv(timeout=10)  # the hello: the stream is followed
    start = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)
    took = until(lambda: not server.group(), start, timeout=30)
    for ws in sockets:
        ws.close()
    for r, c in zip(responses, clients, strict=True):
        r.close()
        c.close()
    server.proc.wait(timeout=5)
    if "timeout graceful shutdown exceeded" in server.text():
        raise RuntimeError("the stop needed uvicorn's graceful-shutdown timeout")
    return took


def orphan_round(server: Served) -> float:
    """Seconds from `kill -9` of the supervisor until none of its workers is left."""
    start = time.monotonic()
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=5)
    return until(lambda: not server.group() and not server.ready(), start, timeout=30)


def figures(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (slowest {max(values):.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=10, help="WebSocket and SSE clients each")
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

    imports = {m: import_cost(m, 5) for m in ("api.workers", "api.preload", "factory")}
    for m, (wall, cpu, heavy) in imports.items():
        print(f"import {m}: {wall:.2f} s wall, {cpu:.2f} s CPU, {heavy} pandas/polars/prefect")
    rows: dict[str, list[list[float]]] = {}
    with (
        bench_database(args.database_url, "fleet_bench_workers") as db,
        tempfile.TemporaryDirectory(prefix="fleet-bench-workers-") as tmp,
    ):
        where = machine(db.admin, db.where + " server")
        before = load_average()
        print(f"machine: {where}\nload average: {before}", flush=True)
        _, token = bench_user(db.url)
        for loaded in (False, True):
            label = "plus one busy loop per core" if loaded else "as found (see load average)"
            starts: list[list[float]] = []
            stops, orphans = [], []
            for i in range(args.rounds):
                with busy_cores(loaded):
                    server, times = start_round(db.url, Path(tmp))
                    try:
                        if i % 2 == 0:
                            stops.append(stop_round(server, token, args.streams))
                        else:
                            orphans.append(orphan_round(server))
                    finally:
                        server.kill()
                starts.append(times)
                shown = ", ".join(f"{t:.2f} s" for t in times)
                print(f"{label}: supervisor, /readyz, both workers after {shown}", flush=True)
            rows[label] = [*(list(column) for column in zip(*starts, strict=True)), stops, orphans]
            print(f"{label}: stop {stops}, orphans gone {orphans}", flush=True)

    lines = [
        BEGIN,
        "## `fleet serve --workers 2`: start, stop, orphans",
        "",
        f"`benchmarks/workers.py --rounds {args.rounds}`, measured"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {where} (load average before: {before}).",
        "",
        "The supervisor imports only its own module; workers are forked from a fork server"
        " that imported the app's code once (`api.preload`), so each worker, and each"
        " replacement, only builds its app (before, each was spawned and imported it all"
        " itself). In a fresh interpreter (median of 5):",
        "",
        "| step | wall | CPU | pandas/polars/prefect modules |",
        "|---|---:|---:|---:|",
    ]
    names = {
        "api.workers": "the supervisor: import `api.workers`",
        "api.preload": "the fork server, once: import `api.preload`",
        "factory": "each worker: build the app (`create_app`)",
    }
    for m, (wall, cpu, heavy) in imports.items():
        lines.append(f"| {names[m]} | {wall:.2f} s | {cpu:.2f} s | {heavy} |")
    lines += [
        "",
        "From `fleet serve --workers 2` until the supervisor runs (the CLI's checks, then the"
        " exec), until /readyz answers and until both workers have finished start-up (the app,"
        " Panel pages and listener), then SIGTERM to the process"
        f" group with {args.streams} WebSocket and {args.streams} SSE streams open until every"
        " process has exited (rounds 1, 3, ...), or `kill -9` of the supervisor until no worker"
        " is left and /readyz is refused (rounds 2, 4, ...). Seconds from the start; median:",
        "",
        "| machine | supervisor runs | first /readyz | both workers up | SIGTERM → exited"
        " | kill -9 → no worker |",
        "|---|---|---|---|---|---|",
    ]
    for label, columns in rows.items():
        cells = [figures(v) if v else "-" for v in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", 'Promises: stop within 2 s, no "timeout graceful shutdown exceeded".', END]
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_docs:
        write_section(args.docs, BEGIN, END, body)


if __name__ == "__main__":
    main()
