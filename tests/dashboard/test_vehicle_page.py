"""The vehicle page: found by misread plate, customer name or QR link; status changed live."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from dashboard.vehicle import Matches, find, render_matches
from db import audit, status
from db.lookup import PlateMatch, RentalMatch
from db.timeutil import zone
from tests.dashboard.conftest import sign_in
from tests.db.factories import booking, rental_under_way

WAIT = 8_000


def _plate(vid: int, plate: str, score: float, *, exact: bool = False) -> PlateMatch:
    return PlateMatch(
        vehicle_id=vid,
        plate=plate,
        make="VW",
        model="Golf",
        category_code="ECON",
        status="available",
        location_code="BER1",
        score=score,
        exact=exact,
    )


def _rental(vid: int, name: str, score: float) -> RentalMatch:
    from datetime import UTC, datetime

    at = datetime(2026, 11, 25, 10, tzinfo=UTC)
    return RentalMatch(
        customer_id=1,
        customer_name=name,
        customer_phone=None,
        customer_email=None,
        block_id=1,
        kind="rental",
        vehicle_id=vid,
        plate=f"B X {vid}",
        start=at,
        end=at,
        pickup_code="BER1",
        return_code="BER1",
        score=score,
    )


@pytest.mark.parametrize(
    ("plates", "rentals", "opens"),
    [
        ([_plate(1, "B AP 101", 1.0, exact=True), _plate(2, "B AP 107", 0.5)], [], 1),
        ([_plate(1, "B AP 101", 0.9), _plate(2, "B AP 1012", 0.9)], [], None),
        ([_plate(3, "M X 3", 0.9)], [], 3),
        ([], [_rental(4, "Alice Schmidt", 0.9)], 4),
        ([_plate(5, "B AP 5", 0.4)], [_rental(4, "Alice Schmidt", 0.9)], None),
        ([], [_rental(4, "Alice Schmidt", 0.45)], None),
    ],
    ids=["one-exact", "two-containing", "one-containing", "one-name", "name-and-plate", "guess"],
)
def test_only_one_clear_match_opens_straight_away(plates, rentals, opens):
    assert Matches(plates=plates, rentals=rentals).opens == opens


def test_match_list_escapes_names_and_links_each_car():
    shown = render_matches(
        Matches(plates=[], rentals=[_rental(9, "<img src=x onerror=alert(1)>", 0.5)]), opened=None
    )
    assert "<img" not in shown and "&lt;img" in shown
    assert "href='/vehicle?id=9'" in shown


def test_a_name_that_is_no_plate_still_searches_customers(conn, world):
    found = find(conn, "O'Brien")
    assert found.plates == [] and found.problem == ""
    assert "two" in find(conn, "x").problem


def test_misread_plate_opens_the_vehicle_from_the_url_the_bar_and_the_page(browser, api):
    first, third, fourth = api.vehicles[0], api.vehicles[2], api.vehicles[3]
    context, page = sign_in(browser, api, "agent", "/vehicle?q=" + quote("B AP 1O1"))
    try:
        expect(page.locator(".vd-plate")).to_have_text(first.plate, timeout=WAIT)
        # The page's own QR code opens this page again, wherever it is scanned.
        qr = page.locator(".vd-qr")
        expect(qr).to_have_attribute("data-url", f"{api.url}/vehicle?id={first.id}")
        assert qr.locator("svg").count() == 1
        # The top bar's quick find, lower case and without spaces.
        page.fill(".topbar input[name=q]", "bap103")
        page.press(".topbar input[name=q]", "Enter")
        page.wait_for_url("**/vehicle?q=bap103", timeout=WAIT)
        expect(page.locator(".vd-plate")).to_have_text(third.plate, timeout=WAIT)
        # The page's search box opens in place and the address bar follows.
        page.fill(".vehicle-query input", "b ap 1o4")
        page.press(".vehicle-query input", "Enter")
        expect(page.locator(".vd-plate")).to_have_text(fourth.plate, timeout=WAIT)
        page.wait_for_url(f"**/vehicle?id={fourth.id}", timeout=WAIT)
    finally:
        context.close()


def test_customer_name_finds_the_rented_car_with_contact_and_return(browser, api, engine):
    w, car = api.world, api.vehicles[1]
    with engine.begin() as c:
        rental_under_way(c, w, car, start=w.at(-3), end=w.at(4))
    context, page = sign_in(browser, api, "agent", "/vehicle?q=Schmitt")
    try:
        # A misspelt surname is a guess: listed as a link, not opened.
        link = page.locator(".customer-match", has_text="rented by Alice Schmidt").locator("a")
        expect(link).to_have_text(car.plate, timeout=WAIT)
        link.click()
        page.wait_for_url(f"**/vehicle?id={car.id}", timeout=WAIT)
        expect(page.locator(".vd-plate")).to_have_text(car.plate, timeout=WAIT)
        expect(page.locator(".badge.status")).to_have_text("rented")
        expect(page.locator(".customer")).to_have_text("Alice Schmidt")
        assert page.locator("a[href='tel:+49301234567']").count() >= 1
        assert page.locator("a[href='mailto:alice@example.com']").count() >= 1
        due = w.at(4).astimezone(zone("Europe/Berlin")).strftime("%a %d %b %H:%M %Z")
        expect(page.locator(".expected")).to_have_text(due)
        expect(page.locator(".return")).to_have_text("on time")
        # On the page: the guess lists again; a name containing what was typed opens the car.
        page.fill(".vehicle-query input", "Schmitt")
        page.press(".vehicle-query input", "Enter")
        expect(page.locator(".vd-plate")).to_have_count(0, timeout=WAIT)
        expect(page.locator(".customer-match")).to_have_count(1)
        page.fill(".vehicle-query input", "alice")
        page.press(".vehicle-query input", "Enter")
        expect(page.locator(".vd-plate")).to_have_text(car.plate, timeout=WAIT)
        expect(page.locator(".customer-match")).to_have_count(0)
    finally:
        context.close()


def test_late_car_shows_overdue_alert_conflict_and_next_booking(browser, api, engine):
    w, car = api.world, api.vehicles[2]
    with engine.begin() as c:
        rental_under_way(c, w, car, start=w.at(-8), end=w.at(-4), customer=w.bob)
        booking(c, w, car, start=w.at(3), end=w.at(9), customer=w.alice)
    context, page = sign_in(browser, api, "agent", f"/vehicle?id={car.id}")
    try:
        expect(page.locator(".badge.status")).to_have_text("OVERDUE", timeout=WAIT)
        expect(page.locator(".return")).to_contain_text("late 3 h")
        expect(page.locator(".overdue-alert")).to_contain_text("level 2")
        expect(page.locator(".conflict")).to_contain_text("Alice Schmidt")
        expect(page.locator(".vd-blocks tr", has_text="reservation")).to_contain_text("Alice")
        expect(page.locator(".audit-link")).to_have_attribute(
            "href", "/audit?plate=" + quote(car.plate)
        )
    finally:
        context.close()


def test_agent_changes_status_and_sees_a_refusal_in_words(browser, api, engine):
    car = api.vehicles[0]
    context, page = sign_in(browser, api, "agent", f"/vehicle?id={car.id}")
    try:
        expect(page.locator(".badge.status")).to_have_text("available", timeout=WAIT)
        page.locator(".new-status select").select_option(label="maintenance")
        page.click(".change-status button")  # no reason given: the engine refuses
        expect(page.locator(".form-message")).to_contain_text(
            "Not changed: a reason is required", timeout=WAIT
        )
        with engine.connect() as c:
            assert status.get_status(c, vehicle_id=car.id).status == "available"
        page.fill(".status-reason input", "brake check")
        page.click(".change-status button")
        expect(page.locator(".badge.status")).to_have_text("maintenance", timeout=WAIT)
        with engine.connect() as c:
            assert status.get_status(c, vehicle_id=car.id).status == "maintenance"
            [last, *_] = audit.history(c, vehicle_id=car.id)
        assert (last.change_reason, last.changed_by) == ("brake check", api.users["agent"].id)
        expect(page.locator(".vd-changes")).to_contain_text("brake check")
    finally:
        context.close()


def test_analyst_reads_the_vehicle_with_no_form_and_prints_labels(browser, api):
    car = api.vehicles[0]
    context, page = sign_in(browser, api, "analyst", f"/vehicle?id={car.id}")
    try:
        expect(page.locator(".vd-plate")).to_have_text(car.plate, timeout=WAIT)
        expect(page.locator(".read-only")).to_contain_text("analyst")
        assert page.locator(".change-status").count() == 0
        assert page.locator(".new-status").count() == 0
        page.locator(".label-location select").select_option(label="MUC1 · Munich Central")
        expect(page.locator(".labels-link")).to_have_attribute("href", "/labels?location=MUC1")
        page.locator(".label-location select").select_option(label="BER1 · Berlin Airport")
        expect(page.locator(".labels-link")).to_have_attribute("href", "/labels?location=BER1")
        with context.expect_page() as sheet_opened:
            page.click(".labels-link")
        sheet = sheet_opened.value
        sheet.wait_for_load_state()
        expect(sheet.locator(".label")).to_have_count(len(api.vehicles), timeout=WAIT)
    finally:
        context.close()


def test_pushed_change_rereads_the_open_vehicle(browser, api):
    car = api.vehicles[3]
    context, page = sign_in(browser, api, "agent", f"/vehicle?id={car.id}")
    try:
        expect(page.locator(".badge.status")).to_have_text("available", timeout=WAIT)
        with api.client("manager") as c:
            r = c.put(
                f"/api/vehicles/{car.id}/status", json={"status": "cleaning", "reason": "wash"}
            )
        assert r.status_code == 200, r.text
        expect(page.locator(".badge.status")).to_have_text("cleaning", timeout=3_000)
        expect(page.locator(".vd-changes")).to_contain_text("wash")
        # The form now offers what can follow cleaning.
        options = page.locator(".new-status select option").all_inner_texts()
        assert "cleaning" not in options and "available" in options
    finally:
        context.close()
