"""The Analytics page in a real browser: an analyst runs the numbers and sees charts and table."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest
from sqlalchemy import text

from dashboard.analytics import Request
from db import status
from db.errors import InvalidInput
from pipeline import analytics
from tests.conftest import add_vehicle
from tests.dashboard.conftest import sign_in

BERLIN = ZoneInfo("Europe/Berlin")


def _berlin(day: date, hour: float) -> datetime:
    return datetime.combine(day, datetime.min.time(), BERLIN) + timedelta(hours=hour)


@pytest.fixture
def rented_half_a_day(api, engine) -> date:
    """A premium car at BER1, rented 06:00-18:00 Berlin time two days ago: 50% utilized."""
    day = datetime.now(UTC).date() - timedelta(days=2)
    world = api.world
    with engine.begin() as c:
        v = add_vehicle(c, world, "B AN 50", category=world.prem)
        stamp = "UPDATE vehicle_status_log SET changed_at = :at WHERE id = :id"
        c.execute(
            text("UPDATE vehicle_status_log SET changed_at = :at WHERE vehicle_id = :v"),
            {"at": _berlin(day, -24), "v": v.id},
        )
        for new, hour, extra in (
            ("rented", 6, {"customer_id": world.alice.id}),
            ("cleaning", 18, {}),
            ("available", 18, {}),
        ):
            if new == "rented":
                extra["expected_available_at"] = _berlin(day, 18)
            done = status.change_status(
                c, vehicle_id=v.id, new_status=new, changed_by=world.agent.id, reason="t", **extra
            )
            c.execute(text(stamp), {"at": _berlin(day, hour), "id": done.log_id})
    return day


def _open(browser, api):
    context, page = sign_in(browser, api, "analyst", "/analytics")
    page.wait_for_selector("text=Choose a period and press Run", timeout=10_000)
    return context, page


def _run_by_category_at_berlin(page) -> None:
    page.locator(".location select").select_option(label="BER1 Berlin Airport")
    page.get_by_role("button", name="Category").click()
    page.get_by_role("button", name="Run").click()


def test_analyst_runs_and_sees_half_a_day_rented(browser, api, rented_half_a_day, tmp_path):
    context, page = _open(browser, api)
    try:
        _run_by_category_at_berlin(page)
        row = (
            page.locator(".analytics-table .tabulator-row")
            .filter(has_text=rented_half_a_day.isoformat())
            .filter(has_text="PREM")
        )
        row.first.wait_for(timeout=20_000)
        cells = {
            field: row.first.locator(f'.tabulator-cell[tabulator-field="{field}"]').inner_text()
            for field in ("day", "category", "utilization %", "availability %", "vehicle h")
        }
        assert cells == {
            "day": rented_half_a_day.isoformat(),
            "category": "PREM",
            "utilization %": "50.0",
            "availability %": "50.0",
            "vehicle h": "24.0",
        }
        assert page.locator(".utilization-chart canvas").first.is_visible()
        assert page.locator(".availability-chart canvas").first.is_visible()
        # The summary adds up the whole selection: the premium car's 12 rented hours.
        summary = page.locator(".analytics-summary").get_by_text("Utilization")
        assert "12 rented" in summary.inner_text()

        with page.expect_download(timeout=10_000) as download:
            page.locator(".analytics-csv").get_by_text("Download CSV").click()
        csv = tmp_path / "got.csv"
        download.value.save_as(csv)
        lines = csv.read_text().splitlines()
        assert lines[0].startswith("day,category,utilization %,availability %,vehicle h")
        assert f"{rented_half_a_day.isoformat()},PREM,50.0,50.0,24.0" in "\n".join(lines)
    finally:
        context.close()


def test_a_running_query_shows_progress_and_refresh_reads_again(browser, api, engine, monkeypatch):
    release = threading.Event()
    real = analytics.fetch_status_hours

    def slow(*args, **kwargs):
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(analytics, "fetch_status_hours", slow)
    context, page = _open(browser, api)
    rows = page.locator(".analytics-table .tabulator-row")
    try:
        as_of = page.locator(".topbar .fresh").get_attribute("data-as-of")
        page.get_by_role("button", name="Run").click()
        page.wait_for_selector("text=Running the query", timeout=5_000)
        assert page.get_by_role("button", name="Run").is_disabled()
        assert page.locator(".analytics-spinner").is_visible()
        release.set()
        rows.first.wait_for(timeout=20_000)
        assert page.get_by_role("button", name="Run").is_enabled()
        assert page.locator(".analytics-spinner").is_hidden()
        assert page.locator(".topbar .fresh").get_attribute("data-as-of") != as_of
        assert rows.filter(has_text="MUC1").count() == 0

        # Refresh asks the question of the last run again (not the controls touched since)
        # and sees what happened in the meantime.
        with engine.begin() as c:
            add_vehicle(c, api.world, "M AN 1", location=api.world.muc)
        page.locator(".location select").select_option(label="BER1 Berlin Airport")
        page.get_by_role("button", name="Refresh").click()
        rows.filter(has_text="MUC1").first.wait_for(timeout=20_000)
    finally:
        release.set()
        context.close()


def test_a_failing_query_says_why_in_a_toast(browser, api, monkeypatch):
    def broken(*args, **kwargs):
        raise duckdb.IOException("Unable to connect to Postgres at 127.0.0.1:1\nmore detail")

    monkeypatch.setattr(analytics, "fetch_status_hours", broken)
    context, page = _open(browser, api)
    try:
        page.get_by_role("button", name="Run").click()
        toast = page.locator(".toast.error")
        toast.wait_for(timeout=5_000)
        assert toast.inner_text() == (
            "The analytics query failed: Unable to connect to Postgres at 127.0.0.1:1"
        )
        page.wait_for_selector("text=The query did not run", timeout=5_000)
        assert "Traceback" not in page.content()
        assert page.get_by_role("button", name="Run").is_enabled()
    finally:
        context.close()


def test_last_n_days_end_today_and_a_range_needs_its_days():
    today = date(2026, 11, 25)
    ask = Request("Last 7 days", None, None, None, "day", "location")
    assert (ask.query(today).first_day, ask.query(today).last_day) == (date(2026, 11, 19), today)
    custom = Request("Date range", (date(2026, 3, 1), date(2026, 3, 31)), 1, 2, "week", "category")
    q = custom.query(today)
    assert (q.first_day, q.last_day, q.location_id, q.category_id, q.granularity, q.by) == (
        date(2026, 3, 1),
        date(2026, 3, 31),
        1,
        2,
        "week",
        "category",
    )
    with pytest.raises(InvalidInput):
        Request("Date range", None, None, None, "day", "location").query(today)
