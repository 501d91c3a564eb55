"""The counter's overdue screen follows the one overdue rule: the server's, for its lot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db import rentals
from tests.counter.conftest import open_app
from tests.db.factories import booking


def _late_rental(engine, api, vehicle, *, returns_to) -> None:
    now = datetime.now(UTC)
    with engine.begin() as c:
        block = booking(
            c,
            api.world,
            vehicle,
            start=now - timedelta(days=1),
            end=now - timedelta(hours=3),
            location=api.world.ber,
            return_location=returns_to,
        )
        rentals.pick_up(
            c, block_id=block.id, handed_over_by=api.world.agent.id, at=now - timedelta(days=1)
        )


def test_the_overdue_screen_lists_what_is_due_back_here_with_level_and_fee(browser, api, engine):
    here, elsewhere = api.vehicles[0], api.vehicles[1]
    _late_rental(engine, api, here, returns_to=api.world.ber)
    # Picked up here, due back in Munich: Munich chases it (as the API and the dashboard say).
    _late_rental(engine, api, elsewhere, returns_to=api.world.muc)
    context, page = open_app(browser, api)
    try:
        page.goto(f"{api.url}/counter/#/overdue")
        fee = page.locator(".overdue li .fee", has_text="estimated late fee")
        fee.first.wait_for(timeout=15_000)
        listed = page.locator(".overdue li")
        assert listed.count() == 1
        assert here.plate in listed.first.inner_text()
        assert "level 2" in fee.first.inner_text()  # 3 h late: past the 2 h threshold
        assert page.locator(".overdue li", has_text=elsewhere.plate).count() == 0

        # Offline the device can only say which cars on its own board are past their return.
        context.set_offline(True)
        page.goto(f"{api.url}/counter/#/board")
        page.goto(f"{api.url}/counter/#/overdue")
        page.locator(".note", has_text="Offline").wait_for(timeout=10_000)
        assert page.locator(".overdue li", has_text=here.plate).count() == 1
    finally:
        context.close()
