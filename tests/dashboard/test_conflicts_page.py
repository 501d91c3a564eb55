"""The conflicts page in a real browser: bookings at risk, feed collisions, one-click ways out."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from db import audit, blocks, conflicts, rentals, status, transfers
from tests.dashboard.conftest import sign_in

WAIT = 10_000


def _booking_on_broken_car(api, engine, *, start: float = 1, end: float = 5):
    """Alice's booking on B AP 101, whose car then goes out of service: a booking at risk."""
    w, car = api.world, api.vehicles[0]
    with engine.begin() as c:
        booking = rentals.reserve(
            c,
            vehicle_id=car.id,
            start=w.at(start),
            end=w.at(end),
            pickup_location_id=w.ber.id,
            customer_id=w.alice.id,
            booked_by=w.agent.id,
            reference="R-77",
        )
        status.change_status(
            c,
            vehicle_id=car.id,
            new_status="out_of_service",
            changed_by=w.manager.id,
            reason="gearbox failed",
        )
    return booking


def test_agent_swaps_a_booking_at_risk_in_one_click_and_the_trail_records_it(browser, api, engine):
    booking = _booking_on_broken_car(api, engine)
    context, page = sign_in(browser, api, "agent", "/conflicts")
    try:
        card = page.locator(".conflict", has_text="B AP 101")
        card.locator(".card", has_text="car out of service").wait_for(timeout=WAIT)
        text = card.locator(".card").inner_text()
        assert "CRITICAL" in text and "car out of service" in text
        assert "Alice Schmidt" in text and "+49 30 1234567" in text
        # Times in the lot's zone: Berlin, not UTC.
        start = booking.start.astimezone(ZoneInfo("Europe/Berlin"))
        assert start.strftime("%a %d %b %H:%M") in text and re.search(r"CES?T", text)
        assert re.search(r"pickup in 1 h \d+ min", text)  # within two hours: critical

        swap = page.get_by_role(
            "button", name=re.compile(r"^Swap to B AP 10[234] \(same category\)$")
        )
        label = swap.first.inner_text()
        plate = label.removeprefix("Swap to ").removesuffix(" (same category)")
        swap.first.click()
        page.get_by_text(f"Booking #{booking.id} moved to {plate}").wait_for(timeout=WAIT)
        page.get_by_text("No conflicts").wait_for(timeout=WAIT)
    finally:
        context.close()

    with engine.begin() as c:
        old = blocks.get_block(c, block_id=booking.id)
        trail = audit.availability_changes(c, user_id=api.world.agent.id)
    assert old.state == "cancelled"
    created = next(e for e in trail if e.kind == "reservation_created")
    assert (created.plate, created.payload["swapped_from"]) == (plate, booking.id)
    assert (created.payload["customer_name"], created.payload["reference"]) == (
        "Alice Schmidt",
        "R-77",
    )
    cancelled = next(e for e in trail if e.kind == "reservation_cancelled")
    assert cancelled.payload["reason"].startswith("conflict swap: moved to vehicle")


def test_analyst_sees_the_ways_out_as_words_but_no_buttons(browser, api, engine):
    _booking_on_broken_car(api, engine)
    context, page = sign_in(browser, api, "analyst", "/conflicts")
    try:
        card = page.locator(".conflict", has_text="B AP 101")
        # The card comes first, its text a moment later on a busy machine.
        card.locator(".card", has_text="Swap to B AP 10").wait_for(timeout=WAIT)
        assert page.locator(".suggestion").count() == 0
        assert page.get_by_role("button", name=re.compile("^Swap to")).count() == 0
        page.locator(".lot-filter select").select_option(label="MUC1 Munich Central")
        page.get_by_text("No conflicts").wait_for(timeout=WAIT)
        assert page.locator(".conflict").count() == 0
    finally:
        context.close()


def test_feed_collision_is_listed_and_its_blocking_booking_moved(browser, api, engine):
    w, car = api.world, api.vehicles[0]
    with engine.begin() as c:
        in_the_way = rentals.reserve(
            c,
            vehicle_id=car.id,
            start=w.at(20),
            end=w.at(26),
            pickup_location_id=w.ber.id,
            customer_id=w.bob.id,
            booked_by=w.agent.id,
        )
        conflicts.record_feed_collision(
            c,
            block_id=in_the_way.id,
            vehicle_id=car.id,
            location_id=w.ber.id,
            details={
                "external_id": "maintenance/W-42",
                "reason": f"B AP 101 is already spoken for from {w.at(20).isoformat()}",
                "pickup_at": w.at(20),
                "suggestions": [],
            },
        )
    context, page = sign_in(browser, api, "agent", "/conflicts")
    try:
        card = page.locator(".conflict.source-feed")
        # The card comes first, its text a moment later on a busy machine.
        card.get_by_text("maintenance/W-42").first.wait_for(timeout=WAIT)
        text = card.locator(".card").inner_text()
        assert "Feed collision" in text and "maintenance/W-42" in text
        assert f"reservation #{in_the_way.id} for Bob Meyer" in text
        # The engine's UTC time in the reason is shown in Berlin time.
        assert "+00:00" not in text and "UTC" not in text and re.search(r"CES?T", text)
        card.get_by_role("button", name=re.compile("^Swap to")).first.click()
        page.get_by_text(f"Booking #{in_the_way.id} moved to").wait_for(timeout=WAIT)
        card.get_by_text("(now cancelled)").wait_for(timeout=WAIT)
    finally:
        context.close()
    with engine.begin() as c:
        assert blocks.get_block(c, block_id=in_the_way.id).state == "cancelled"


def test_a_conflict_made_elsewhere_is_pushed_into_the_open_page(browser, api, engine):
    context, page = sign_in(browser, api, "manager", "/conflicts")
    try:
        page.get_by_text("No conflicts").wait_for(timeout=WAIT)
        _booking_on_broken_car(api, engine)
        page.locator(".conflict", has_text="B AP 101").wait_for(timeout=5_000)
    finally:
        context.close()


def test_a_transfer_way_out_books_the_drive_and_moves_the_booking_onto_that_car(conn, world):
    from dashboard.conflicts import suggestion_label
    from db.conflicts import apply_suggestion
    from tests.conftest import add_vehicle

    broken = add_vehicle(conn, world, "B DC 1")
    far = add_vehicle(conn, world, "M DC 2", location=world.muc)
    booking = rentals.reserve(
        conn,
        vehicle_id=broken.id,
        start=world.at(20),
        end=world.at(24),
        pickup_location_id=world.ber.id,
        customer_id=world.alice.id,
        booked_by=world.agent.id,
    )
    status.change_status(
        conn,
        vehicle_id=broken.id,
        new_status="out_of_service",
        changed_by=world.manager.id,
        reason="flood damage",
    )
    [c] = conflicts.list_conflicts(conn, now=world.now)
    [move] = [s for s in c.suggestions if s.action == "transfer"]
    label = suggestion_label(move, {"MUC1": "Europe/Berlin"})
    assert label.startswith("Transfer M DC 2 from MUC1, leave by ") and label.endswith(
        ("CET", "CEST")
    )

    moved = apply_suggestion(conn, block_id=booking.id, suggestion=move, user_id=world.agent.id)

    assert (moved.vehicle_id, moved.start, moved.customer_name) == (
        far.id,
        booking.start,
        "Alice Schmidt",
    )
    [drive] = transfers.list_transfers(conn)
    assert (drive.plate, drive.from_code, drive.to_code) == ("M DC 2", "MUC1", "BER1")
    assert (drive.departs_at, drive.eta) == (move.depart_by, booking.start)
    assert blocks.get_block(conn, block_id=booking.id).state == "cancelled"
