"""The audit page in a real browser: filtered log, rollback with confirmation, CSV export, live."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from bokeh.models import HoverTool

from dashboard.audit import timeline_figure
from db import audit, status
from tests.dashboard.conftest import sign_in

WAIT = 8_000


def _put_status(api, vehicle, new_status: str, reason: str, role: str = "manager") -> int:
    """Change a status through the API as `role`; return the log id of the change."""
    with api.client(role) as c:
        r = c.put(
            f"/api/vehicles/{vehicle.id}/status", json={"status": new_status, "reason": reason}
        )
    assert r.status_code == 200, r.text
    return r.json()["log_id"]


def _open(browser, api, role: str, plate: str | None = None, period: tuple[str, str] | None = None):
    query = {"plate": plate} if plate else {}
    if period:
        query.update({"from": period[0], "to": period[1]})
    path = "/audit" + (f"?{urlencode(query, quote_via=quote)}" if query else "")
    context, page = sign_in(browser, api, role, path)
    page.locator(".audit-log .tabulator-row").first.wait_for(timeout=WAIT)
    return context, page


def _row(page, plate: str, change: str):
    return page.locator(".audit-log .tabulator-row", has_text=plate).filter(has_text=change)


def test_manager_rolls_back_a_change_only_once_confirmed(browser, api, engine):
    car = api.vehicles[0]
    wrong = _put_status(api, car, "cleaning", "wash")
    context, page = _open(browser, api, "manager", plate=car.plate)
    try:
        _row(page, car.plate, "available -> cleaning").first.click()
        page.locator(".audit-rollback button").click()
        box = page.locator(".audit-confirm-text p")
        box.wait_for(timeout=WAIT)
        assert (
            f"{car.plate} goes back from cleaning to available; this is recorded as a new"
            " change by you (Maria Manager)"
        ) in " ".join(box.inner_text().split())
        # Cancel does nothing: the box closes and the vehicle and its log stay as they were.
        page.locator(".audit-cancel button").click()
        box.wait_for(state="hidden", timeout=WAIT)
        with engine.connect() as c:
            assert status.get_status(c, vehicle_id=car.id).status == "cleaning"
            assert len(audit.history(c, vehicle_id=car.id)) == 2

        page.locator(".audit-rollback button").click()
        box.wait_for(timeout=WAIT)
        page.locator(".audit-confirm button").click()
        page.locator(".audit-notice", has_text=f"Rolled back change #{wrong}").wait_for(
            timeout=WAIT
        )
        # The new change heads the log, and the undone one says by which change.
        _row(page, car.plate, "cleaning -> available").first.wait_for(timeout=WAIT)
        _row(page, car.plate, "yes, by #").first.wait_for(timeout=WAIT)
    finally:
        context.close()
    with engine.connect() as c:
        assert status.get_status(c, vehicle_id=car.id).status == "available"
        latest = audit.history(c, vehicle_id=car.id)[0]
    assert (latest.old_status, latest.new_status) == ("cleaning", "available")
    assert latest.reverts_log_id == wrong
    assert latest.changed_by_name == "Maria Manager"
    assert latest.change_reason == f"rollback of #{wrong}: incorrect change"


def test_a_refused_rollback_shows_the_engines_reason(browser, api, engine):
    car = api.vehicles[2]
    first = _put_status(api, car, "cleaning", "wash")
    context, page = _open(browser, api, "admin", plate=car.plate)
    try:
        _row(page, car.plate, "available -> cleaning").first.click()
        page.locator(".audit-rollback button").click()
        page.locator(".audit-confirm-text p").wait_for(timeout=WAIT)
        # Someone else moves the car on before the admin confirms.
        _put_status(api, car, "maintenance", "dent found", role="agent")
        page.locator(".audit-confirm button").click()
        notice = page.locator(".audit-notice .notice.error")
        notice.wait_for(timeout=WAIT)
        assert f"change #{first} is not the latest for this vehicle" in notice.inner_text()
    finally:
        context.close()
    with engine.connect() as c:
        assert status.get_status(c, vehicle_id=car.id).status == "maintenance"


def test_an_agent_sees_the_log_but_no_roll_back_button(browser, api):
    car = api.vehicles[0]
    _put_status(api, car, "cleaning", "wash", role="agent")
    context, page = _open(browser, api, "agent", plate=car.plate)
    try:
        _row(page, car.plate, "available -> cleaning").first.click()
        page.locator(".audit-export button").wait_for(timeout=WAIT)
        assert page.locator(".audit-rollback button").count() == 0
        assert page.get_by_text("Roll back selected change").count() == 0
        # Filtering by who changed it leaves the manager's registration out.
        page.locator(".audit-user select").select_option(label="Anna Agent (agent)")
        page.locator(".audit-pager", has_text="1 change ").wait_for(timeout=WAIT)
        assert page.locator(".audit-log .tabulator-row").count() == 1
    finally:
        context.close()


def test_export_writes_the_filtered_log_as_csv_and_progress_reaches_100(browser, api):
    car, other = api.vehicles[0], api.vehicles[3]
    _put_status(api, car, "cleaning", "wash")
    _put_status(api, car, "available", "=clean now")
    _put_status(api, other, "cleaning", "not in the export")
    context, page = _open(browser, api, "analyst", plate=car.plate)
    try:
        page.locator(".audit-export button").click()
        page.locator(".audit-progress progress[value='100']").wait_for(timeout=WAIT)
        page.locator(".audit-export-status", has_text="Exported 3 changes").wait_for(timeout=WAIT)
        with page.expect_download(timeout=WAIT) as info:
            page.locator(".audit-download button").click()
        body = Path(info.value.path()).read_text(encoding="utf-8")
    finally:
        context.close()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["plate"], r["old_status"], r["new_status"]) for r in rows] == [
        (car.plate, "cleaning", "available"),
        (car.plate, "available", "cleaning"),
        (car.plate, "", "available"),
    ]
    # A reason that looks like a formula stays text in a spreadsheet.
    assert rows[0]["reason"] == "'=clean now"
    assert rows[0]["changed_by"] == "Maria Manager"
    assert rows[0]["time_zone"] == "Europe/Berlin"
    assert rows[0]["local_time"].endswith(("+01:00", "+02:00"))


def test_a_new_change_appears_without_reload_with_the_vehicles_timeline(browser, api):
    car = api.vehicles[1]
    # The period is today in the lot's days: through the end of today in Berlin.
    today = datetime.now(ZoneInfo("Europe/Berlin")).date().isoformat()
    context, page = _open(browser, api, "agent", plate=car.plate, period=(today, today))
    try:
        page.locator(".audit-timeline-title", has_text=f"Timeline of {car.plate}").wait_for(
            timeout=WAIT
        )
        assert page.locator(".audit-legend .status").all_inner_texts() == ["available"]
        # The plot is drawn, not laid out at zero height.
        plot = page.locator(".audit-timeline canvas").first
        plot.wait_for(timeout=WAIT)
        page.wait_for_function(
            "el => el.getBoundingClientRect().height > 40", arg=plot.element_handle(), timeout=WAIT
        )
        # A change to a car the filter leaves out does not show up; the next one does.
        _put_status(api, api.vehicles[2], "cleaning", "wash")
        _put_status(api, car, "cleaning", "wash")
        _row(page, car.plate, "available -> cleaning").first.wait_for(timeout=WAIT)
        page.locator(".audit-legend .status", has_text="cleaning").wait_for(timeout=WAIT)
        assert page.locator(".audit-pager", has_text="2 changes").count() == 1
        assert (
            page.locator(".audit-log .tabulator-row", has_text=api.vehicles[2].plate).count() == 0
        )
    finally:
        context.close()


def test_timeline_figure_draws_a_bar_per_span_in_lot_time_with_hover():
    start = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)  # 10:00 in Berlin (summer time)
    spans = [
        audit.StatusSpan(
            log_id=1,
            status="available",
            started_at=start,
            ended_at=start + timedelta(hours=2),
            location_code="BER1",
            time_zone="Europe/Berlin",
            changed_by_name="Maria Manager",
            change_reason="vehicle registered",
            reverts_log_id=None,
        ),
        audit.StatusSpan(
            log_id=2,
            status="in_transit",
            started_at=start + timedelta(hours=2),
            ended_at=None,
            location_code="BER1",
            time_zone="Europe/Berlin",
            changed_by_name="Anna Agent",
            change_reason="to Munich",
            reverts_log_id=None,
        ),
    ]
    fig = timeline_figure(
        spans,
        tz_name="Europe/Berlin",
        since=start - timedelta(hours=1),
        until=start + timedelta(hours=5),
    )
    (bars,) = fig.renderers
    data = bars.data_source.data
    assert list(data["status"]) == ["available", "in transit"]
    assert list(fig.y_range.factors) == ["in transit", "available"]
    # Bars are drawn in the lot's wall-clock time; the open span runs to the period's end.
    assert list(data["left"]) == [datetime(2026, 7, 1, 10, 0), datetime(2026, 7, 1, 12, 0)]
    assert list(data["right"]) == [datetime(2026, 7, 1, 12, 0), datetime(2026, 7, 1, 15, 0)]
    assert list(data["from"]) == ["Wed 01 Jul 2026 10:00:00 CEST", "Wed 01 Jul 2026 12:00:00 CEST"]
    assert list(data["to"]) == ["Wed 01 Jul 2026 12:00:00 CEST", "now"]
    assert list(data["who"]) == ["Maria Manager", "Anna Agent"]
    assert data["colour"][0] != data["colour"][1]
    (hover,) = [t for t in fig.tools if isinstance(t, HoverTool)]
    assert [label for label, _ in hover.tooltips] == ["status", "from", "to", "who", "why"]
