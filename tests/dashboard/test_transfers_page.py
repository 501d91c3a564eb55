"""The transfers page in a real browser: the list, dispatch by button, lateness, scheduling."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from db import blocks, status, transfers
from tests.dashboard.conftest import sign_in

WAIT = 10_000


def _to_munich(api, engine, car, *, depart: datetime, eta: datetime | None = None):
    w = api.world
    with engine.begin() as c:
        return transfers.schedule_transfer(
            c,
            vehicle_id=car.id,
            to_location_id=w.muc.id,
            depart_at=depart,
            eta=eta,
            created_by=w.agent.id,
        )


def test_agent_dispatches_a_scheduled_transfer_with_the_button(browser, api, engine):
    car = api.vehicles[0]
    t = _to_munich(api, engine, car, depart=api.world.at(1))
    context, page = sign_in(browser, api, "agent", "/transfers")
    try:
        row = page.locator(".tabulator-row", has_text=car.plate)
        row.wait_for(timeout=WAIT)
        text = row.inner_text()
        assert "BER1 → MUC1" in text and "scheduled" in text and "on time" in text
        assert re.search(r"\d\d:\d\d CES?T", text)  # Berlin and Munich time, not UTC
        row.get_by_role("button", name="Dispatch").click()
        page.locator(".tabulator-row", has_text=car.plate).filter(has_text="in transit").wait_for(
            timeout=WAIT
        )
        page.get_by_text(f"{car.plate} left BER1 for MUC1").wait_for(timeout=WAIT)
        assert row.get_by_role("button", name="Dispatch").count() == 0
    finally:
        context.close()
    with engine.begin() as c:
        now = status.get_status(c, vehicle_id=car.id)
        assert (now.status, now.destination_code, now.block_id) == ("in_transit", "MUC1", t.id)
        assert blocks.get_block(c, block_id=t.id).started_at is not None


def test_a_transfer_past_its_eta_reads_late_and_analysts_get_no_actions(browser, api, engine):
    car = api.vehicles[1]
    eta = datetime.now(UTC) - timedelta(minutes=25, seconds=20)
    t = _to_munich(api, engine, car, depart=eta - timedelta(hours=6), eta=eta)
    with engine.begin() as c:
        transfers.dispatch(c, block_id=t.id, changed_by=api.world.agent.id, at=t.start)
    context, page = sign_in(browser, api, "analyst", "/transfers")
    try:
        row = page.locator(".tabulator-row", has_text=car.plate)
        row.wait_for(timeout=WAIT)
        text = row.inner_text()
        assert "in transit" in text
        assert re.search(r"late 2[56] min", text), text
        page.get_by_text("1 in transit, 0 scheduled, 0 arrived; 1 late.").wait_for(timeout=WAIT)
        assert page.get_by_role("button", name=re.compile("^(Dispatch|Arrived)$")).count() == 0
        assert page.locator(".schedule-form").count() == 0
    finally:
        context.close()


def test_agent_schedules_a_transfer_with_the_form_and_marks_it_arrived(browser, api, engine):
    car = api.vehicles[2]
    context, page = sign_in(browser, api, "agent", "/transfers")
    try:
        page.get_by_text("No transfers scheduled or under way.").wait_for(timeout=WAIT)
        page.locator(".transfer-vehicle select").select_option(label=f"{car.plate} (BER1)")
        page.locator(".transfer-destination select").select_option(label="MUC1 Munich Central")
        picked = page.locator(".transfer-departure input").first.input_value()
        page.get_by_role("button", name="Schedule transfer").click()
        page.get_by_text(f"Transfer of {car.plate} scheduled").wait_for(timeout=WAIT)
        row = page.locator(".tabulator-row", has_text=car.plate)
        row.wait_for(timeout=WAIT)
        assert "scheduled" in row.inner_text()
        # The picked wall-clock time is read on the Berlin lot's clock, and shown so.
        departure = row.locator("[tabulator-field=departure]").inner_text()
        assert re.fullmatch(r"\w{3} \d\d \w{3} " + picked[11:16] + r" CES?T", departure), (
            picked,
            departure,
        )
        # Not due to leave yet: it can be dispatched, but not marked arrived.
        assert row.get_by_role("button", name="Arrived").count() == 0
        row.get_by_role("button", name="Dispatch").click()
        row.get_by_role("button", name="Arrived").click()
        row.locator("[tabulator-field=status]", has_text=re.compile("^arrived$")).wait_for(
            timeout=WAIT
        )
    finally:
        context.close()
    with engine.begin() as c:
        [done] = transfers.list_transfers(
            c, include_done_since=datetime.now(UTC) - timedelta(hours=1)
        )
        now = status.get_status(c, vehicle_id=car.id)
    assert (done.plate, done.to_code, done.state) == (car.plate, "MUC1", "completed")
    assert (now.status, now.location_code) == ("available", "MUC1")
