"""Every ```sql example in docs/analytics.md returns rows on the data `make run` creates.

The fleet is loaded as the Makefile's `run` target loads it (`fleet demo-data --vehicles 200
--locations 4 --seed 7 --feeds`), the archive job runs once as the pipeline's first run does,
and each example goes through `fleet analytics --query`, as an analyst would paste it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from db import overdue
from fleet.cli.main import app
from fleet.settings import get_settings
from pipeline.archive import archive_history
from tests.conftest import DATA_TABLES, empty_tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
DISPUTED_PLATE = "B QX 4711"  # the plate the doc's dispute example asks about
MAKE_RUN = ["demo-data", "--vehicles", "200", "--locations", "4", "--seed", "7", "--feeds"]


def sql_blocks() -> list[tuple[str, str]]:
    """Return (title, sql) for each ```sql block, titled by the heading above it."""
    blocks, heading = [], "top"
    for m in re.finditer(r"^(#+ [^\n]*)$|^```sql\n(.*?)^```$", DOC.read_text(), re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        else:
            blocks.append((heading, m.group(2)))
    return blocks


Query = Callable[[str], list[dict]]


@pytest.fixture(scope="module")
def demo_fleet(
    engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Query]:
    """`make run`'s demo fleet, archived once; runs a query through `fleet analytics`."""
    base = tmp_path_factory.mktemp("analytics-docs")
    env = {
        "FLEET_DATABASE_URL": database_url,
        "FLEET_DATA_DIR": str(base / "data"),
        "FLEET_ARCHIVE_DIR": str(base / "archive"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        runner = CliRunner()
        loaded = runner.invoke(app, MAKE_RUN)
        assert loaded.exit_code == 0, loaded.output
        # The pipeline `make run` serves refreshes the overdue alerts and archives the old
        # history on its first runs; here each runs once.
        with engine.begin() as c:
            overdue.refresh_overdue(c)
        summary = archive_history(engine, archive_dir=base / "archive")
        assert summary.rows_archived > 0, "the demo has no history older than the retention"

        def query(sql: str) -> list[dict]:
            r = runner.invoke(app, ["analytics", "--query", sql, "--json"])
            assert r.exit_code == 0, r.output
            return json.loads(r.stdout)

        yield query
    get_settings.cache_clear()
    empty_tables(engine, DATA_TABLES, restart_identity=True)


BLOCKS = sql_blocks()


def test_the_doc_has_the_examples_it_promises():
    titles = " | ".join(t.lower() for t, _ in BLOCKS)
    for topic in ("utilization", "overdue", "return", "dispute"):
        assert topic in titles, f"docs/analytics.md has no example about {topic}"


def _utilization(rows: list[dict]) -> None:
    values = [r["utilization"] for r in rows if r["utilization"] is not None]
    assert all(0 <= u <= 1 for u in values) and max(values) > 0
    assert len({r["day"] for r in rows}) == 30


def _overdue(rows: list[dict]) -> None:
    assert sum(r["overdue"] for r in rows) >= 1 or sum(r["returned_late"] for r in rows) >= 1


def _return_to_available(rows: list[dict]) -> None:
    # Months both from the archive (beyond 90 days) and from the live table.
    months = {date.fromisoformat(r["month"]) for r in rows}
    assert min(months) < date.today() - timedelta(days=100) < max(months)
    assert all(r["median_minutes"] > 0 for r in rows)


def _dispute(rows: list[dict]) -> None:
    assert {r["plate"] for r in rows} == {DISPUTED_PLATE}
    rollback = [r for r in rows if r["reverts"] is not None]
    assert len(rollback) == 1 and rollback[0]["role"] == "manager"
    assert rollback[0]["reverts"] in {r["change"] for r in rows}


def _archive(rows: list[dict]) -> None:
    assert {r["table_name"] for r in rows} == {"vehicle_status_log", "availability_events"}


# What some examples must show beyond "some rows", keyed by their heading.
CHECKS = {
    "Utilization per category and location per day": _utilization,
    "Overdue rate and late fees per lot and category": _overdue,
    "Time from return to available": _return_to_available,
    "Who changed what in a disputed period": _dispute,
    "What is in the archive": _archive,
}


@pytest.mark.parametrize(("title", "sql"), BLOCKS, ids=[t for t, _ in BLOCKS])
def test_every_example_returns_rows_on_the_make_run_demo(demo_fleet, title, sql):
    rows = demo_fleet(sql)
    assert rows, f"the example under '{title}' returned nothing on the demo"
    check = CHECKS.get(title)
    if check is not None:
        check(rows)


def test_checks_name_real_examples():
    titles = [t for t, _ in BLOCKS]
    assert len(titles) == len(set(titles)), "give each example its own heading"
    assert set(CHECKS) <= set(titles)
