"""Importing a feed file from the page: progress, the result, quarantined rows, and roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from dashboard.feeds import describe
from pipeline.ingest import FileResult
from tests.dashboard.conftest import sign_in


def _maintenance_file(plates: list[str]) -> bytes:
    # Jobs a month ahead: inside the feeds' plausible window whatever today is.
    day = (datetime.now(UTC) + timedelta(days=30)).date()
    lines = ["external_id,version,updated_at,event,plate,location,starts_at,ends_at,description"]
    for i, plate in enumerate([*plates, "NO SUCH CAR"]):
        at = day + timedelta(days=i)
        lines.append(
            f"WS-PAGE-{i if plate != 'NO SUCH CAR' else 'BAD'},1,2026-11-19T00:15+01:00,"
            f"scheduled,{plate},BER1,{at}T08:00+01:00,{at}T14:00+01:00,brake check"
        )
    return ("\n".join(lines) + "\n").encode()


def test_manager_imports_a_maintenance_file_with_progress(browser, api, engine):
    plates = [v.plate for v in api.vehicles[:2]]
    context, page = sign_in(browser, api, "manager", "/feeds")
    try:
        page.locator(".feed-upload input[type=file]").set_input_files(
            {
                "name": "maintenance-from-page.csv",
                "mimeType": "text/csv",
                "buffer": _maintenance_file(plates),
            }
        )
        page.wait_for_timeout(500)  # the file travels to the server with the widget's value
        page.locator(".feed-import button").click()
        result = page.locator(".feed-result p")
        result.filter(has_text="quarantined").wait_for(timeout=15_000)
        assert "3 rows, 2 applied" in result.inner_text()
        assert page.locator(".feed-progress progress").get_attribute("value") == "100"
        # The file is listed; selecting it shows the bad row and why.
        page.locator(".feed-files .tabulator-row", has_text="maintenance-from-page.csv").click()
        page.locator(".feed-rejects .tabulator-row", has_text="NO SUCH CAR").wait_for(timeout=5_000)
    finally:
        context.close()
    with engine.connect() as c:
        blocks = c.execute(
            text(
                "SELECT count(*) FROM blocks b JOIN vehicles v ON v.id = b.vehicle_id"
                " WHERE b.kind = 'maintenance' AND v.plate = ANY(:p)"
            ),
            {"p": plates},
        ).scalar_one()
    assert blocks == 2


def test_agents_are_not_offered_the_import(browser, api):
    context, page = sign_in(browser, api, "agent", "/feeds")
    try:
        page.locator(".feed-files").wait_for(timeout=10_000)
        assert page.locator(".feed-import").count() == 0
    finally:
        context.close()


def test_describe_says_what_became_of_a_file():
    assert "imported before" in describe(
        FileResult(name="a.csv", feed="returns", status="duplicate")
    )
    unreadable = FileResult(name="x.txt", feed=None, status="unreadable", note="not a feed")
    assert describe(unreadable) == "x.txt: not imported. not a feed"
