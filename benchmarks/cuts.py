"""Recovery of the live streams after a database restart and real network cuts.

Run from the repository root: `.venv/bin/python benchmarks/cuts.py [--restarts 3]`.
The measuring is the tests' own (no second harness to drift from them): this script runs
`tests/api/test_database_restart.py` (PostgreSQL stopped for 8 s and started again; the time
from the first change committed after it to its arrival on a WebSocket opened before) once per
`--restarts`, and `tests/network/test_network_cuts.py` once (PostgreSQL, two `fleet serve` hosts
and the stream clients in network namespaces: a server cut from the database for 10 s, the
clients' host cut from the servers for 10 s, then 300 ms each way and 5 % loss for a minute).
The tests append what they measured to a file (tests/figures.py); the figures replace the
cuts section of docs/benchmarks.md. The network cuts need root (network namespaces): without,
that test skips and the section says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realtime import load_average, write_section  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- cuts:begin -->", "<!-- cuts:end -->"
RESTART_TEST = (
    "tests/api/test_database_restart.py::"
    "test_after_a_database_outage_the_first_request_works_and_streams_resume_within_2_s"
)
NETWORK_TEST = "tests/network/test_network_cuts.py"
PROMISE_S = 2.0


def run_tests(test: str, figures: Path) -> str:
    """Run one test file or test in a fresh pytest; return its last line (the outcome)."""
    env = {**os.environ, "FLEET_FIGURES": str(figures)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else out.stderr.strip()[-300:]


def read(figures: Path) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {}
    if figures.exists():
        for line in figures.read_text().splitlines():
            row = json.loads(line)
            series.setdefault(row["what"], []).extend(row["seconds"])
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=3, help="database restarts to time")
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    load = load_average()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="fleet-cuts-") as tmp:
        figures = Path(tmp) / "figures.jsonl"
        for i in range(args.restarts):
            outcome = run_tests(RESTART_TEST, figures)
            print(f"database restart {i + 1}: {outcome}", flush=True)
            outcomes.append(outcome)
        outcome = run_tests(NETWORK_TEST, figures)
        print(f"network cuts: {outcome}", flush=True)
        outcomes.append(outcome)
        series = read(figures)

    rows = []
    for what, seconds in series.items():
        promise = "" if "commit to client" in what else f"{PROMISE_S:.0f} s"
        rows.append(
            f"| {what} | {len(seconds)} | {statistics.median(seconds):.2f} s |"
            f" {max(seconds):.2f} s | {promise} |"
        )
    skipped = [o for o in outcomes if "skipped" in o and "passed" not in o]
    body = "\n".join([
        BEGIN,
        "## Live streams through a database restart and real network cuts",
        "",
        f"`benchmarks/cuts.py --restarts {args.restarts}`, measured"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (load average before: {load}). The figures"
        " are the tests' own (`tests/api/test_database_restart.py`, `tests/network/`, see"
        " docs/architecture.md for the lab); \"live again\" is from the link (or the database)"
        " coming back to the first event committed after it reaching each affected client.",
        "",
        "| what | samples | median | slowest | promise |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Outcomes: " + "; ".join(outcomes) + "."
        + (" The network lab needs root (network namespaces)." if skipped else ""),
        END,
    ])  # fmt: skip
    print(body)
    if not args.no_docs:
        write_section(args.docs, BEGIN, END, body)


if __name__ == "__main__":
    main()
