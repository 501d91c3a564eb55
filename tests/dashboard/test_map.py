"""The fleet map: lots with their counts, vehicles on their routes, tiles or plain axes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import panel as pn
import pytest
from bokeh.models import ColumnDataSource, TileRenderer

from dashboard import map as fleet_map
from db.fleet import Location
from db.transfers import Transfer
from tests.dashboard.conftest import run_async, sign_in

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BER = Location(
    id=1,
    code="BER1",
    name="Berlin Airport",
    address="",
    latitude=52.3667,
    longitude=13.5033,
    time_zone="Europe/Berlin",
)
JFK = Location(
    id=2,
    code="JFK1",
    name="New York JFK",
    address="",
    latitude=40.6413,
    longitude=-73.7781,
    time_zone="America/New_York",
)
NOWHERE = Location(
    id=3, code="POP1", name="Pop-up", address="", latitude=None, longitude=None, time_zone="UTC"
)


def _transfer(departed: datetime | None, eta: datetime, plate: str = "B AP 101") -> Transfer:
    return Transfer(
        block_id=1,
        vehicle_id=1,
        plate=plate,
        from_code="BER1",
        to_code="JFK1",
        departs_at=departed or NOW,
        eta=eta,
        departed_at=departed,
        arrived_at=None,
        state="active",
        late_by=None,
    )


@pytest.fixture
def probe(monkeypatch):
    """Pretend the tile server answers (this machine is offline); count the questions asked."""
    asked: list[str] = []

    def answer(url: str) -> bool:
        asked.append(url)
        return True

    monkeypatch.setattr(fleet_map, "_probed", {})
    monkeypatch.setattr(fleet_map, "_fetch_tile", answer)
    return asked


def test_web_mercator_puts_known_points_where_tile_servers_expect_them():
    assert fleet_map.to_mercator(0, 0) == pytest.approx((0, 0), abs=1e-6)
    # The edges of the square world every XYZ tile pyramid covers.
    assert fleet_map.to_mercator(180, 85.0511287798) == pytest.approx((20037508.34, 20037508.34))
    assert fleet_map.to_mercator(-180, -85.0511287798) == pytest.approx(
        (-20037508.34, -20037508.34)
    )
    x, y = fleet_map.to_mercator(BER.longitude, BER.latitude)
    assert (round(x), round(y)) == (1503180, 6866703)


def test_a_vehicle_in_transit_sits_where_the_elapsed_time_puts_it_on_its_route():
    left, eta = NOW - timedelta(hours=2), NOW + timedelta(hours=2)
    assert fleet_map.progress(left, eta, NOW) == pytest.approx(0.5)
    assert fleet_map.progress(None, eta, NOW) == 0.0  # not left yet: still on its lot
    assert fleet_map.progress(left, eta, NOW + timedelta(hours=9)) == 1.0  # late: waits there
    assert fleet_map.along((0, 0), (10, -4), 0.25) == (2.5, -1.0)

    data = fleet_map.transfer_data([_transfer(left, eta)], [BER, JFK], NOW, fleet_map.to_mercator)
    start, end = fleet_map.to_mercator(13.5033, 52.3667), fleet_map.to_mercator(-73.7781, 40.6413)
    assert (data["x"][0], data["y"][0]) == pytest.approx(fleet_map.along(start, end, 0.5))
    assert (data["x0"][0], data["x1"][0]) == pytest.approx((start[0], end[0]))
    # The ETA in New York time, where the car arrives: 14:00 UTC is 09:00 EST.
    assert data["label"] == ["B AP 101 to JFK1\nETA Wed 09:00 EST"]
    assert data["state"] == ["on the way"]


def test_a_transfer_past_its_eta_is_marked_late_and_a_scheduled_one_has_no_label():
    late = _transfer(NOW - timedelta(hours=5), NOW - timedelta(minutes=30), plate="B AP 102")
    waiting = _transfer(None, NOW + timedelta(hours=8), plate="B AP 103")
    data = fleet_map.transfer_data([late, waiting], [BER, JFK], NOW, fleet_map.plain)
    assert data["state"] == ["late", "scheduled"]
    assert data["label"][0] == "B AP 102 to JFK1: late\nETA was Wed 06:30 EST"
    assert (data["x"][0], data["y"][0]) == (JFK.longitude, JFK.latitude)
    assert data["label"][1] == ""
    assert (data["x"][1], data["y"][1]) == (BER.longitude, BER.latitude)
    listed = fleet_map.transfers_html([late, waiting], [BER, JFK], NOW)
    assert '<li data-state="late"><b>B AP 102</b> BER1 to JFK1: late' in listed


def test_lots_show_their_counts_in_words_and_lots_without_coordinates_only_in_the_table():
    counts = fleet_map.by_location(
        [
            {"location": "BER1", "status": "available", "vehicles": 3},
            {"location": "BER1", "status": "in_transit", "vehicles": 1},
            {"location": "BER1", "status": "overdue", "vehicles": 2},
            {"location": None, "status": "rented", "vehicles": 5},
        ]
    )
    data = fleet_map.location_data([BER, JFK, NOWHERE], counts, fleet_map.plain)
    assert data["code"] == ["BER1", "JFK1"]
    assert data["label"][0] == "BER1: 3 available, 2 overdue"
    assert data["counts"][1] == "no vehicles"
    assert data["colour"] == [fleet_map.COLOURS["overdue"], fleet_map.COLOURS["empty"]]
    assert data["size"][0] > data["size"][1]
    # The eastern lot's label goes on its left, so it is not cut off at the frame's edge.
    assert data["align"] == ["right", "left"]
    assert data["offset"][0] < 0 < data["offset"][1]
    table = fleet_map.counts_table([BER, JFK, NOWHERE], counts)
    assert list(table["location"]) == ["BER1", "JFK1", "POP1", fleet_map.NOT_AT_A_LOT]
    assert table.loc[0, "in transit"] == 1 and table.loc[3, "rented"] == 5
    assert table.loc[2].drop(["location", "name"]).sum() == 0


def test_provider_names_resolve_through_xyzservices_and_none_means_plain_axes():
    osm = fleet_map.resolve_provider("OpenStreetMap.Mapnik")
    assert osm is not None and osm.build_url(x=1, y=2, z=3).endswith("/3/1/2.png")
    assert fleet_map.resolve_provider("esri worldstreetmap") is not None  # as query_name reads
    # CARTO now wants a key we do not have: plain axes rather than a grid of refused tiles.
    for name in ("", "none", "NONE", "No.Such.Provider", "CartoDB.Positron"):
        assert fleet_map.resolve_provider(name) is None, name


def test_configured_reachable_tiles_draw_web_mercator_under_the_lots(probe):
    tiles = fleet_map.choose_tiles("OpenStreetMap.Mapnik")
    assert tiles is not None and tiles.name == "OpenStreetMap.Mapnik"
    assert fleet_map.choose_tiles("OpenStreetMap.Mapnik") is not None
    assert probe == ["https://tile.openstreetmap.org/0/0/0.png"]  # asked once per process
    sites = ColumnDataSource(fleet_map.location_data([BER], {}, fleet_map.to_mercator))
    drawn = fleet_map.build_figure(sites, ColumnDataSource(), tiles)
    assert any(isinstance(r, TileRenderer) for r in drawn.renderers)
    assert round(sites.data["x"][0]) == 1503180
    assert fleet_map.choose_tiles("none") is None


def test_an_unreachable_tile_server_falls_back_to_plain_axes(monkeypatch):
    def refuse(url: str) -> bool:
        raise OSError("no route to host")

    monkeypatch.setattr(fleet_map, "_probed", {})
    monkeypatch.setattr(fleet_map, "_fetch_tile", refuse)
    assert fleet_map.choose_tiles("OpenStreetMap.Mapnik") is None
    drawn = fleet_map.build_figure(ColumnDataSource(), ColumnDataSource(), None)
    assert not any(isinstance(r, TileRenderer) for r in drawn.renderers)
    assert drawn.xaxis[0].axis_label == "longitude"


class _Context:
    """Just enough of PageContext for a view built outside a browser session."""

    def __init__(self, map_tiles: str, moves: list[Transfer]) -> None:
        self.settings = SimpleNamespace(map_tiles=map_tiles)
        self.moves = moves
        self.reads = 0
        self.freshened = 0

    def read(self, fn):
        self.reads += 1
        counts = [{"location": "BER1", "status": "available", "vehicles": 2}]
        return [BER, JFK], counts, list(self.moves)

    async def aread(self, fn):
        return self.read(fn)

    def fresh(self) -> None:
        self.freshened += 1


@pytest.fixture
def no_timers(monkeypatch):
    """Outside a server session there is no page to drift vehicles on: keep timers off."""
    monkeypatch.setattr(pn.state, "add_periodic_callback", lambda *a, **k: None)


def test_the_page_draws_tiles_in_web_mercator_when_the_tile_server_answers(probe, no_timers):
    view = fleet_map.FleetMap(_Context("OpenStreetMap.Mapnik", []))
    drawn = view._map.object
    assert any(isinstance(r, TileRenderer) for r in drawn.renderers)
    assert [round(x) for x in view._sites.data["x"]] == [1503180, -8212941]
    assert not any("map-note" in part.css_classes for part in view.__panel__().objects)


def test_the_page_rereads_only_for_events_that_move_counts_or_transfers(no_timers):
    ctx = _Context("none", [])
    view = fleet_map.FleetMap(ctx)
    assert view._routes.data["plate"] == [] and ctx.reads == 1
    assert fleet_map.NO_TILES_NOTE in view.__panel__().objects[0].object
    assert view._sites.data["x"] == [BER.longitude, JFK.longitude]  # plain axes
    run_async(view.on_events([{"kind": "hold_created", "vehicle_id": 1}]))
    assert ctx.reads == 1 and ctx.freshened == 0
    ctx.moves = [
        _transfer(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1))
    ]
    run_async(view.on_events([{"kind": "status_changed", "vehicle_id": 1}]))
    assert ctx.reads == 2 and ctx.freshened == 1
    assert view._routes.data["plate"] == ["B AP 101"]
    assert view._routes.data["state"] == ["on the way"]


# Reads what the browser's Bokeh document holds: the labels are drawn on a canvas.
_LABELS_JS = """name => {
  for (const doc of window.Bokeh.documents) {
    const model = doc.get_model_by_name(name);
    if (!model) continue;
    const data = model.data_source.data;
    return Array.from(data instanceof Map ? data.get('label') : data.label);
  }
  return null;
}"""


def _canvas_labels(page, name: str) -> list[str]:
    return page.evaluate(_LABELS_JS, name) or []


def test_map_shows_every_lot_and_a_dispatched_transfer_appears_without_reload(browser, api):
    w, car = api.world, api.vehicles[0]
    context, page = sign_in(browser, api, "agent", "/map")
    try:
        page.locator(".map-note", has_text=fleet_map.NO_TILES_NOTE).wait_for(timeout=5_000)
        row = page.locator(".map-counts .tabulator-row", has_text="BER1")
        row.wait_for(timeout=5_000)
        assert "Berlin Airport" in row.inner_text() and "4" in row.inner_text()
        for code in ("MUC1", "JFK1"):
            assert page.locator(".map-counts .tabulator-row", has_text=code).count() == 1
        labels = _canvas_labels(page, "fleet-map-location-labels")
        assert "BER1: 4 available" in labels
        assert "MUC1: no vehicles" in labels
        assert _canvas_labels(page, "fleet-map-transfer-labels") == []

        with api.client("agent") as c:
            booked = c.post(
                "/api/transfers",
                json={
                    "vehicle_id": car.id,
                    "to_location_id": w.muc.id,
                    "depart_at": w.at(-1).isoformat(),
                },
            )
            assert booked.status_code == 201, booked.text
            sent = c.post(f"/api/transfers/{booked.json()['id']}/dispatch")
            assert sent.status_code == 200, sent.text
        eta = datetime.fromisoformat(booked.json()["end"])
        shown = fleet_map.local_time(eta, "Europe/Berlin")
        started = time.monotonic()
        # Booking and departure may arrive as two pushes: wait for the departure's.
        item = page.locator(".map-transfers li", has_text=car.plate).filter(has_text="on the way")
        item.wait_for(timeout=2_000)
        assert f"BER1 to MUC1: on the way, ETA {shown}" in item.inner_text()
        page.wait_for_function(
            f"plate => ({_LABELS_JS})('fleet-map-transfer-labels')?.some(l => l.includes(plate))",
            arg=car.plate,
            timeout=2_000,
        )
        assert time.monotonic() - started < 2.0
        assert _canvas_labels(page, "fleet-map-transfer-labels") == [
            f"{car.plate} to MUC1\nETA {shown}"
        ]
        assert "BER1: 3 available" in _canvas_labels(page, "fleet-map-location-labels")
    finally:
        context.close()


def test_only_transfers_under_way_or_leaving_within_a_day_are_drawn():
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)

    def move(plate: str, departs: datetime, departed: datetime | None = None) -> Transfer:
        return Transfer(
            block_id=1,
            vehicle_id=1,
            plate=plate,
            from_code="BER1",
            to_code="MUC1",
            departs_at=departs,
            eta=departs + timedelta(hours=6),
            departed_at=departed,
            arrived_at=None,
            state="scheduled",
            late_by=None,
        )

    moves = [
        move("ON WAY", now - timedelta(hours=1), now - timedelta(hours=1)),
        move("TONIGHT", now + timedelta(hours=8)),
        move("NEXT WEEK", now + timedelta(days=7)),
    ]
    assert [t.plate for t in fleet_map.on_the_map(moves, now)] == ["ON WAY", "TONIGHT"]
