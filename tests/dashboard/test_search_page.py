"""Availability search: search, hold with a countdown, book, save searches, fall back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

from playwright.sync_api import expect

from dashboard.search import SearchView, mark, plate_pattern, quick_period, round_up
from dashboard.shell import PageContext
from db import availability, blocks, events, holds, rentals, saved_searches
from db.timeutil import zone
from tests.conftest import add_vehicle
from tests.dashboard.conftest import run_async, sign_in

BERLIN = zone("Europe/Berlin")


def _local(moment: datetime) -> str:
    return moment.astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M")


def _search_path(api, start: datetime, end: datetime, **criteria: str) -> str:
    query = {"location": "BER1", "start": _local(start), "end": _local(end), **criteria}
    return "/search?" + urlencode(query)


def _row(page, plate: str):
    return page.locator(".results .tabulator-row", has_text=plate)


# The view's own logic, without a browser


class Toasts:
    """Stands in for the top bar: keeps the toasts a view shows."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def toast(self, level: str, text: str, *, sound: bool = False) -> None:
        self.shown.append((level, text))

    def fresh(self, as_of: str) -> None:
        self.as_of = as_of


def _view(api, engine, role: str, query: dict[str, str]) -> tuple[SearchView, Toasts]:
    toasts = Toasts()
    ctx = PageContext(
        state=SimpleNamespace(engine=engine, settings=None),
        user=api.users[role],
        doc=None,
        query=query,
        bar=toasts,  # type: ignore[arg-type]
    )
    return SearchView(ctx), toasts


def _select(view: SearchView, plate: str) -> int:
    frame = view._table.value
    [at] = [i for i, p in enumerate(frame["plate"]) if p == plate]
    view._table.selection = [at]
    return int(frame.index[at])


def _query(start: datetime, end: datetime) -> dict[str, str]:
    return {"location": "BER1", "start": _local(start), "end": _local(end)}


def test_booking_that_collides_shows_the_error_and_writes_nothing(api, engine):
    w = api.world
    start, end = w.at(26), w.at(50)
    view, toasts = _view(api, engine, "agent", _query(start, end))
    vehicle_id = _select(view, "B AP 101")
    view._customer.options = {"Alice Schmidt": w.alice.id}
    view._customer.value = w.alice.id
    # Another clerk books the same car before this one presses Book.
    with engine.begin() as c:
        rentals.reserve(
            c,
            vehicle_id=vehicle_id,
            start=start,
            end=end,
            pickup_location_id=w.ber.id,
            customer_id=w.bob.id,
            booked_by=w.agent2.id,
        )

    view._on_book()

    assert toasts.shown[-1][0] == "error"
    assert "B AP 101" in toasts.shown[-1][1]
    with engine.connect() as c:
        booked = blocks.vehicle_blocks(c, vehicle_id=vehicle_id)
    assert [(b.kind, b.customer_id) for b in booked] == [("reservation", w.bob.id)]


def test_hold_running_out_says_so_and_stops_offering_book(api, engine):
    w = api.world
    view, toasts = _view(api, engine, "agent", _query(w.at(26), w.at(50)))
    _select(view, "B AP 103")
    view._customer.options = {"Alice Schmidt": w.alice.id}
    view._customer.value = w.alice.id
    view._on_hold()
    assert toasts.shown[-1] == ("success", "B AP 103 is held for you")
    assert re.search(r"expires in <span class='left'>(9|10):\d\d<", view._hold_state.object)
    assert not view._book_btn.disabled

    view._hold = view._hold.model_copy(update={"expires_at": w.now - timedelta(hours=2)})
    ran_out = view._count_down()

    assert ran_out
    assert "expired" in view._hold_state.object
    assert view._book_btn.disabled and view._hold_btn.disabled


def test_hold_released_from_another_page_ends_the_countdown(api, engine):
    w = api.world
    view, _ = _view(api, engine, "agent", _query(w.at(26), w.at(50)))
    _select(view, "B AP 104")
    view._on_hold()
    hold = view._hold
    assert hold is not None
    with engine.begin() as c:
        holds.release_hold(c, hold_id=hold.id, released_by=w.agent.id)

    event = {"kind": "hold_cancelled", "vehicle_id": hold.vehicle_id, "location_id": w.ber.id}
    run_async(view.on_events([{**event, "seq": 1, "data": {"id": hold.id}}]))

    assert view._hold is None
    assert "The hold on B AP 104 was cancelled." in view._hold_state.object
    assert view._release_btn.disabled
    assert "B AP 104" in list(view._table.value["plate"])  # free again, offered again


def _last_event(engine, vehicle_id: int) -> dict:
    """The newest event for a vehicle as the page's stream delivers it."""
    with engine.connect() as c:
        row = events.events_since(c, vehicle_id=vehicle_id)[-1]
    keys = ("seq", "kind", "vehicle_id", "location_id", "actor_id")
    return {**{k: row[k] for k in keys}, "data": row["payload"]}


def test_hold_a_manager_released_tells_the_holder_who_and_why(api, engine):
    w = api.world
    view, toasts = _view(api, engine, "agent", _query(w.at(26), w.at(50)))
    _select(view, "B AP 102")
    view._on_hold()
    hold = view._hold
    assert hold is not None
    with engine.begin() as c:
        holds.release_hold(
            c, hold_id=hold.id, released_by=w.manager.id, reason="customer walked out"
        )

    run_async(view.on_events([_last_event(engine, hold.vehicle_id)]))

    assert toasts.shown[-1] == (
        "warning",
        "Maria Manager released your hold on B AP 102: customer walked out",
    )
    assert view._hold is None and view._release_btn.disabled
    assert "Maria Manager released the hold on B AP 102: customer walked out." in (
        view._hold_state.object
    )
    assert "B AP 102" in list(view._table.value["plate"])  # free again, offered again


def test_hold_extended_from_another_page_counts_down_from_the_new_expiry(api, engine):
    w = api.world
    view, _ = _view(api, engine, "agent", _query(w.at(26), w.at(50)))
    _select(view, "B AP 103")
    view._on_hold()
    hold = view._hold
    with engine.begin() as c:
        longer = holds.extend_hold(
            c, hold_id=hold.id, extended_by=w.agent.id, ttl=timedelta(minutes=45)
        )

    run_async(view.on_events([_last_event(engine, hold.vehicle_id)]))

    assert view._hold is not None and view._hold.expires_at == longer.expires_at
    assert re.search(r"expires in <span class='left'>(44|45):\d\d<", view._hold_state.object)


def test_analyst_hold_is_refused_on_the_server_whatever_the_page_offers(api, engine):
    w = api.world
    view, toasts = _view(api, engine, "analyst", _query(w.at(26), w.at(50)))
    vehicle_id = _select(view, "B AP 101")

    view._on_hold()

    assert toasts.shown[-1] == ("error", "your role (analyst) cannot do this")
    with engine.connect() as c:
        assert blocks.vehicle_blocks(c, vehicle_id=vehicle_id) == []


def test_a_shown_car_taken_elsewhere_leaves_the_results_with_a_warning(api, engine):
    w = api.world
    start, end = w.at(26), w.at(50)
    view, toasts = _view(api, engine, "agent", _query(start, end))
    vehicle_id = _select(view, "B AP 102")
    with engine.begin() as c:
        rentals.reserve(
            c,
            vehicle_id=vehicle_id,
            start=start,
            end=end,
            pickup_location_id=w.ber.id,
            customer_id=w.bob.id,
            booked_by=w.agent2.id,
        )

    event = {"kind": "reservation_created", "vehicle_id": vehicle_id, "location_id": w.ber.id}
    run_async(view.on_events([{**event, "seq": 1, "data": {}}]))

    assert "B AP 102" not in list(view._table.value["plate"])
    assert len(view._table.value) == 3
    assert toasts.shown[-1] == ("warning", "B AP 102 was just taken; pick another car")


def test_text_filter_keeps_matching_plates_and_marks_the_match(api, engine):
    w = api.world
    query = {**_query(w.at(26), w.at(50)), "plate": "ap1O2"}  # O typed for 0, no spaces
    view, _ = _view(api, engine, "analyst", query)

    frame = view._table.value
    assert list(frame["plate"]) == ["B AP 102"]
    assert frame["_plate"].iloc[0] == "B <mark>AP 102</mark>"

    view._text.value = "golf"
    run_async(view._on_search())
    assert len(view._table.value) == 4
    assert set(view._table.value["_vehicle"]) == {"VW <mark>Golf</mark> 2024"}


def test_booking_a_selected_car_directly_without_a_hold(api, engine):
    w = api.world
    start, end = w.at(26), w.at(50)
    view, toasts = _view(api, engine, "agent", _query(start, end))
    vehicle_id = _select(view, "B AP 104")
    view._customer.options = {"Bob Meyer": w.bob.id}
    view._customer.value = w.bob.id
    # The value's watcher is a coroutine; without a session loop here, run its sync part.
    view._sync_actions()
    assert "Book reserves it directly for Bob Meyer" in view._picked.object

    view._on_book()

    assert toasts.shown[-1][0] == "success"
    assert toasts.shown[-1][1].endswith("B AP 104 for Bob Meyer, " + _said(start, end))
    with engine.connect() as c:
        [booked] = blocks.vehicle_blocks(c, vehicle_id=vehicle_id)
    assert (booked.kind, booked.customer_id, booked.start, booked.end) == (
        "reservation",
        w.bob.id,
        start,
        end,
    )


def _said(start: datetime, end: datetime) -> str:
    fmt = "%a %d %b %H:%M"
    return f"{start.astimezone(BERLIN):{fmt}} to {end.astimezone(BERLIN):{fmt}} (Europe/Berlin)"


def test_choosing_a_customer_suggests_what_they_usually_rent(api, engine):
    w = api.world
    with engine.begin() as c:
        suv = add_vehicle(c, w, "B SU 901", category=w.suv, features=("towbar",))
        rentals.reserve(
            c,
            vehicle_id=suv.id,
            start=w.at(100),
            end=w.at(120),
            pickup_location_id=w.ber.id,
            customer_id=w.alice.id,
            booked_by=w.agent.id,
        )
    view, _ = _view(api, engine, "agent", _query(w.at(26), w.at(50)))

    run_async(view._on_customer(SimpleNamespace(new=w.alice.id)))

    assert view._suggestions.visible
    [text, buttons] = view._suggestions.objects
    assert "SUV: 1 rental, usually with towbar" in text.object
    assert [b.label for b in buttons.objects] == ["Search SUV"]


# Small pieces


def test_quick_periods_in_local_wall_clock_time():
    wednesday = datetime(2026, 11, 25, 10, 7)
    saturday = datetime(2026, 11, 28, 12, 0)

    assert quick_period("now", wednesday) == (
        datetime(2026, 11, 25, 10, 15),
        datetime(2026, 11, 26, 10, 15),
    )
    assert quick_period("tomorrow", wednesday) == (
        datetime(2026, 11, 26, 9, 0),
        datetime(2026, 11, 29, 9, 0),
    )
    assert quick_period("weekend", wednesday) == (
        datetime(2026, 11, 27, 17, 0),
        datetime(2026, 11, 30, 9, 0),
    )
    assert quick_period("weekend", saturday) == (saturday, datetime(2026, 11, 30, 9, 0))
    assert round_up(datetime(2026, 11, 25, 10, 0)) == datetime(2026, 11, 25, 10, 0)
    assert round_up(datetime(2026, 11, 25, 10, 0, 1)) == datetime(2026, 11, 25, 10, 15)


def test_marks_are_escaped_and_plates_match_across_spaces_and_look_alikes():
    assert mark("<b>towbar</b>", [re.compile("towbar")]) == "&lt;b&gt;<mark>towbar</mark>&lt;/b&gt;"
    pattern = plate_pattern("ap1O")
    assert pattern is not None
    assert mark("B AP 101", [pattern]) == "B <mark>AP 10</mark>1"


# In the browser


def test_agent_searches_holds_with_a_countdown_and_books_for_a_customer(browser, api, engine):
    w = api.world
    context, page = sign_in(browser, api, "agent", "/search")
    try:
        page.locator(".quick button", has_text="Tomorrow 9:00, 3 days").click()
        summary = page.locator(".result-summary")
        expect(summary).to_contain_text("4 cars free at BER1", timeout=5_000)
        expect(summary).to_contain_text("09:00")
        expect(page.locator(".results .tabulator-row")).to_have_count(4)
        assert "start=" in page.url and "location=BER1" in page.url

        _row(page, "B AP 101").click()
        page.locator(".hold button").click()
        left = page.locator(".hold-state .left")
        expect(left).to_have_text(re.compile(r"^(9|10):\d\d$"), timeout=5_000)
        first = left.inner_text()
        expect(left).not_to_have_text(first, timeout=3_000)  # it counts down, live
        expect(_row(page, "B AP 101")).to_have_count(0)  # held: not offered to others

        page.locator(".customer-query input").fill("Schmidt")
        customer = page.locator(".customer select")
        expect(customer).to_have_value(re.compile("^Alice Schmidt"), timeout=5_000)
        page.locator(".book button").click()
        expect(page.locator(".hold-state .booked")).to_contain_text(
            "B AP 101 for Alice Schmidt", timeout=5_000
        )
    finally:
        context.close()

    vehicle = api.vehicles[0]
    with engine.connect() as c:
        [booked] = blocks.vehicle_blocks(c, vehicle_id=vehicle.id)
        assert (booked.kind, booked.state, booked.customer_id) == (
            "reservation",
            "active",
            w.alice.id,
        )
        assert booked.start.astimezone(BERLIN).hour == 9
        free = availability.search(c, start=booked.start, end=booked.end, location_id=w.ber.id)
    assert vehicle.id not in {h.vehicle_id for h in free}
    assert len(free) == 3


def test_analyst_sees_results_but_no_hold_or_book_buttons(browser, api):
    w = api.world
    path = _search_path(api, w.at(26), w.at(50))
    context, page = sign_in(browser, api, "analyst", path)
    try:
        expect(page.locator(".results .tabulator-row")).to_have_count(4, timeout=5_000)
        expect(page.locator(".picked")).to_contain_text("can search but not hold or book")
        for action in ("hold", "book", "release"):
            assert page.locator(f".{action} button").count() == 0
    finally:
        context.close()


def test_saved_search_round_trip_restores_the_criteria(browser, api, engine):
    w = api.world
    with engine.begin() as c:
        add_vehicle(c, w, "B SU 501", category=w.suv, features=("towbar", "automatic"))
    path = _search_path(api, w.at(26), w.at(50), category="SUV", features="towbar")
    context, page = sign_in(browser, api, "agent", path)
    try:
        expect(page.locator(".results .tabulator-row")).to_have_count(1, timeout=5_000)
        marked = page.locator(".results .tabulator-row mark")
        expect(marked).to_have_text(["SUV", "towbar"])

        page.locator(".save-name input").fill("Morning SUVs")
        page.locator(".save-search button").click()
        expect(page.locator(".toast.success")).to_contain_text("saved as 'Morning SUVs'")
        with engine.connect() as c:
            [saved] = saved_searches.list_saved(c, user_id=w.agent.id)
        assert saved.criteria["category"] == "SUV" and saved.criteria["features"] == ["towbar"]
        assert saved.criteria["duration_hours"] == 24

        page.goto(f"{api.url}/search")  # a fresh page: any category, the default period
        expect(page.locator(".results .tabulator-row")).to_have_count(5, timeout=10_000)
        page.locator(".saved select").select_option("Morning SUVs")
        page.locator(".load-search button").click()
        expect(page.locator(".results .tabulator-row")).to_have_count(1, timeout=5_000)
        expect(page.locator(".category select")).to_have_value("SUV")
        expect(page.locator(".result-summary")).to_contain_text("1 car free")

        page.locator(".delete-search button").click()
        expect(page.locator(".toast.success").first).to_contain_text("deleted")
        expect(page.locator(".saved select option")).to_have_count(0)
    finally:
        context.close()
    with engine.connect() as c:
        assert saved_searches.list_saved(c, user_id=w.agent.id) == []


def test_nothing_fits_offers_upgrades_other_lots_and_nearest_periods(browser, api, engine):
    w = api.world
    start, end = w.at(48), w.at(72)
    with engine.begin() as c:
        suv = add_vehicle(c, w, "B SU 601", category=w.suv)
        add_vehicle(c, w, "B PR 701", category=w.prem)
        add_vehicle(c, w, "M SU 801", category=w.suv, location=w.muc)
        rentals.reserve(
            c,
            vehicle_id=suv.id,
            start=start - timedelta(hours=1),
            end=end - timedelta(hours=12),
            pickup_location_id=w.ber.id,
            customer_id=w.bob.id,
            booked_by=w.agent2.id,
        )
    context, page = sign_in(browser, api, "agent", _search_path(api, start, end, category="SUV"))
    try:
        expect(page.locator(".result-summary")).to_contain_text("Nothing fits", timeout=5_000)
        alternatives = page.locator(".alternatives")
        expect(alternatives.locator(".upgrades")).to_contain_text("B PR 701")
        expect(alternatives.locator(".other-lots")).to_contain_text(
            re.compile(r"M SU 801: .* from MUC1, \d+ h \d\d min by transfer")
        )
        expect(alternatives.locator(".windows")).to_contain_text("B SU 601")

        alternatives.locator(".try-window button").first.click()
        expect(_row(page, "B SU 601")).to_have_count(1, timeout=5_000)
        expect(page.locator(".alternatives")).to_be_hidden()
    finally:
        context.close()


def test_a_car_booked_elsewhere_disappears_from_open_results(browser, api):
    w = api.world
    start, end = w.at(26), w.at(50)
    context, page = sign_in(browser, api, "agent", _search_path(api, start, end))
    try:
        expect(page.locator(".results .tabulator-row")).to_have_count(4, timeout=5_000)
        taken = api.vehicles[1]
        with api.client("manager") as c:
            r = c.post(
                "/api/reservations",
                json={
                    "customer_id": w.bob.id,
                    "vehicle_id": taken.id,
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "location_id": w.ber.id,
                },
            )
        assert r.status_code == 201, r.text
        expect(_row(page, taken.plate)).to_have_count(0, timeout=2_000)
        expect(page.locator(".results .tabulator-row")).to_have_count(3)
    finally:
        context.close()


def test_holder_sees_a_manager_release_their_hold_and_why(browser, api, engine):
    w = api.world
    context, page = sign_in(browser, api, "agent", _search_path(api, w.at(26), w.at(50)))
    try:
        expect(page.locator(".results .tabulator-row")).to_have_count(4, timeout=5_000)
        _row(page, "B AP 104").click()
        page.locator(".hold button").click()
        expect(page.locator(".hold-state .left")).to_be_visible(timeout=5_000)
        with engine.connect() as c:
            [hold] = holds.list_holds(c, held_by=w.agent.id)
        with api.client("manager") as c:
            r = c.delete(
                f"/api/availability/lock/{hold.id}", params={"reason": "customer walked out"}
            )
        assert r.status_code == 204, r.text
        expect(page.locator(".toast.warning")).to_contain_text(
            "Maria Manager released your hold on B AP 104: customer walked out", timeout=5_000
        )
        expect(page.locator(".hold-state .ended")).to_contain_text("Maria Manager released")
        expect(_row(page, "B AP 104")).to_have_count(1, timeout=5_000)  # offered again
    finally:
        context.close()
