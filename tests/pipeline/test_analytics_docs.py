"""Every ```sql example in docs/analytics.md runs, over a demo fleet with an archived past."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Connection, Engine, text

from db import audit, fleet, overdue, status
from db.demo import load_demo
from pipeline import analytics
from pipeline.archive import ArchiveSummary, archive_history
from tests.conftest import DATA_TABLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
DISPUTED_PLATE = "B QX 4711"  # the plate the doc's dispute example asks about


def sql_blocks() -> list[tuple[str, str]]:
    """Return (title, sql) for each ```sql block, titled by the heading above it."""
    blocks, heading = [], "top"
    for m in re.finditer(r"^(#+ [^\n]*)$|^```sql\n(.*?)^```$", DOC.read_text(), re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        else:
            blocks.append((heading, m.group(2)))
    return blocks


def backdate(c: Connection, log_id: int, when: datetime) -> None:
    """Move a status change and its event back in time (test data setup)."""
    c.execute(
        text("UPDATE vehicle_status_log SET changed_at = :t WHERE id = :id"),
        {"t": when, "id": log_id},
    )
    c.execute(
        text(
            "UPDATE availability_events SET created_at = :t"
            " WHERE kind = 'status_changed' AND payload->>'log_id' = CAST(:id AS text)"
        ),
        {"t": when, "id": log_id},
    )


def rental_cycles(
    c: Connection, vehicle_id: int, *, days_ago: list[int], customer: int, staff: list[int]
) -> list[tuple[int, datetime]]:
    """Rent, return (cleaning) and free a vehicle once per start given; return log ids + times."""
    now = c.execute(text("SELECT date_trunc('hour', now())")).scalar_one()
    out = []
    for k, d in enumerate(days_ago):
        start = now - timedelta(days=d)
        returned = start + timedelta(days=2, minutes=10 * k)
        steps = [
            ("rented", start, {"customer_id": customer, "expected_available_at": returned}),
            ("cleaning", returned, {}),
            ("available", returned + timedelta(minutes=35 + 20 * k), {}),
        ]
        for n, (new_status, when, extra) in enumerate(steps):
            change = status.change_status(
                c,
                vehicle_id=vehicle_id,
                new_status=new_status,
                changed_by=staff[(k + n) % len(staff)],
                reason=f"{new_status} at the counter",
                **extra,
            )
            out.append((change.log_id, when))
    return out


def populate(engine: Engine, archive_dir: Path) -> ArchiveSummary:
    """Demo fleet, overdue alerts, rental cycles over 4 months, then archive the old ones."""
    with engine.begin() as c:
        load_demo(c, vehicles=30, locations=2, seed=7)
    with engine.begin() as c:
        overdue.refresh_overdue(c)
    with engine.begin() as c:
        categories = c.execute(text("SELECT id FROM vehicle_categories ORDER BY upgrade_rank"))
        categories = categories.scalars().all()
        locations = c.execute(text("SELECT id FROM locations ORDER BY id")).scalars().all()
        agents = c.execute(
            text("SELECT id FROM users WHERE role = 'agent' ORDER BY id LIMIT 2")
        ).scalars()
        agents = agents.all()
        manager = c.execute(
            text("SELECT id FROM users WHERE role = 'manager' ORDER BY id LIMIT 1")
        ).scalar_one()
        customer = c.execute(text("SELECT min(id) FROM customers")).scalar_one()
        now = c.execute(text("SELECT date_trunc('hour', now())")).scalar_one()
        timeline: list[tuple[int, datetime]] = []
        plates = [DISPUTED_PLATE, "M QX 100", "B QX 200", "M QX 300"]
        for n, plate in enumerate(plates):
            v = fleet.create_vehicle(
                c,
                plate=plate,
                vin=f"WVWZZZ1KZ{n:08d}",
                make="VW",
                model="Golf",
                year=2024,
                category_id=categories[n % 3],
                home_location_id=locations[n % len(locations)],
                created_by=manager,
            )
            first = c.execute(
                text("SELECT id FROM vehicle_status_log WHERE vehicle_id = :v"), {"v": v.id}
            ).scalar_one()
            timeline.append((first, now - timedelta(days=130)))
            timeline += rental_cycles(
                c,
                v.id,
                days_ago=[125, 110] if n == 0 else [115, 100],
                customer=customer,
                staff=agents,
            )
            if n == 0:
                # In the disputed period an agent sends the car to the workshop by mistake
                # and the manager rolls it back.
                wrong = status.change_status(
                    c,
                    vehicle_id=v.id,
                    new_status="maintenance",
                    changed_by=agents[1],
                    reason="brake noise reported",
                )
                fixed = audit.rollback_change(
                    c, log_id=wrong.log_id, rolled_back_by=manager, reason="wrong car"
                )
                timeline += [
                    (wrong.log_id, now - timedelta(days=104)),
                    (fixed.log_id, now - timedelta(days=104, hours=-3)),
                ]
            timeline += rental_cycles(
                c,
                v.id,
                days_ago=[20, 3] if n == 0 else [40, 10],
                customer=customer,
                staff=agents,
            )
        for log_id, when in timeline:
            backdate(c, log_id, when)
    return archive_history(engine, archive_dir=archive_dir)


@pytest.fixture(scope="module")
def analysts_db(engine, database_url, tmp_path_factory) -> Iterator[duckdb.DuckDBPyConnection]:
    """The populated database, as `fleet analytics` opens it; emptied afterwards."""
    base = tmp_path_factory.mktemp("analytics-docs")
    summary = populate(engine, base / "archive")
    assert summary.rows_archived > 0 and summary.files_written >= 2
    con = analytics.connect(
        postgres_url=database_url,
        extension_directory=base / "ext",
        archive_dir=base / "archive",
    )
    yield con
    con.close()
    with engine.begin() as c:
        seq = c.execute(text("SELECT last_value FROM availability_events_seq_seq")).scalar()
        c.execute(text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))
        c.execute(text("SELECT setval('availability_events_seq_seq', :v)"), {"v": seq})


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
    assert sum(r["overdue"] for r in rows) >= 1 and sum(r["late_fees"] for r in rows) > 0


def _return_to_available(rows: list[dict]) -> None:
    # Months both from the archive (beyond 90 days) and from the live table.
    months = {r["month"] for r in rows}
    assert min(months) < date.today() - timedelta(days=100) < max(months)
    assert all(r["median_minutes"] >= 35 for r in rows)


def _dispute(rows: list[dict]) -> None:
    assert {r["plate"] for r in rows} == {DISPUTED_PLATE}
    rollback = [r for r in rows if r["reverts"] is not None]
    assert len(rollback) == 1 and rollback[0]["role"] == "manager"
    assert rollback[0]["reverts"] in {r["change"] for r in rows}


# What some examples must show beyond "some rows", keyed by their heading.
CHECKS = {
    "Utilization per category and location per day": _utilization,
    "Overdue rate and late fees per lot and category": _overdue,
    "Time from return to available": _return_to_available,
    "Who changed what in a disputed period": _dispute,
}


@pytest.mark.parametrize(("title", "sql"), BLOCKS, ids=[t for t, _ in BLOCKS])
def test_every_example_runs_and_returns_rows(analysts_db, title, sql):
    result = analysts_db.execute(sql)
    columns = [d[0] for d in result.description]
    rows = [dict(zip(columns, r, strict=True)) for r in result.fetchall()]
    assert rows, f"the example under '{title}' returned nothing"
    check = CHECKS.get(title)
    if check is not None:
        check(rows)


def test_checks_name_real_examples():
    titles = [t for t, _ in BLOCKS]
    assert len(titles) == len(set(titles)), "give each example its own heading"
    assert set(CHECKS) <= set(titles)
