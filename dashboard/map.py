"""The fleet map: every lot with its vehicles by status, and vehicles in transit on their routes."""

from __future__ import annotations

import html
import logging
import math
import threading
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure
from sqlalchemy import Connection
from xyzservices import TileProvider
from xyzservices import providers as xyz

from dashboard.live import COUNT_COLUMNS
from dashboard.shell import PageContext, View
from dashboard.vehicles import BADGES
from db import fleet, status, transfers
from db.fleet import Location
from db.timeutil import zone
from db.transfers import Transfer

log = logging.getLogger("fleet.dashboard.map")

EARTH_RADIUS_M = 6_378_137.0  # the sphere Web Mercator (EPSG:3857) projects from
PROBE_SECONDS = 1.5
NO_TILES_NOTE = "map tiles unavailable: showing plain coordinates"
NOT_AT_A_LOT = "(not at a lot)"
# Positions move with the clock between events; a minute is finer than anyone reads a map.
DRIFT_MS = 60_000
# Event kinds that can change a lot's counts or a transfer; holds and conflicts cannot.
RELEVANT = ("status_changed", "transfer", "block_", "overdue_", "vehicle_", "rental", "maintenance")

# Marker colour says how the lot is doing; the label and the legend say it in words too.
COLOURS = {"overdue": "#c62828", "none free": "#ef6c00", "free": "#2e7d32", "empty": "#9e9e9e"}
ROUTE_COLOURS = {"scheduled": "#9e9e9e", "on the way": "#1565c0", "late": "#c62828"}
LEGEND = (
    "Marker colour: <b style='color:#2e7d32'>green</b> vehicles available,"
    " <b style='color:#ef6c00'>orange</b> none available,"
    " <b style='color:#c62828'>red</b> overdue rentals, <b style='color:#9e9e9e'>grey</b> no"
    " vehicles; bigger markers hold more vehicles. Routes: <b style='color:#1565c0'>blue</b>"
    " on the way, <b style='color:#c62828'>red</b> late, <b style='color:#9e9e9e'>grey</b>"
    " scheduled."
)

# A pale box behind each label keeps it readable over tiles, routes and its neighbours.
LABEL_BOX: dict[str, Any] = {
    "background_fill_color": "white",
    "background_fill_alpha": 0.8,
    "padding": 2,
    "border_radius": 3,
}

Point = tuple[float, float]
Project = Callable[[float, float], Point]


def to_mercator(lon: float, lat: float) -> Point:
    """Return Web Mercator metres (x east, y north) for a longitude and latitude."""
    x = EARTH_RADIUS_M * math.radians(lon)
    y = EARTH_RADIUS_M * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return x, y


def plain(lon: float, lat: float) -> Point:
    """Return longitude and latitude as they are: the axes when no tiles can be drawn."""
    return lon, lat


def progress(departed_at: datetime | None, eta: datetime, now: datetime) -> float:
    """Return the share of the trip behind a vehicle: 0 before it leaves, 1 at or past its ETA."""
    if departed_at is None or now <= departed_at:
        return 0.0
    total = (eta - departed_at).total_seconds()
    if total <= 0:
        return 1.0
    return min(1.0, (now - departed_at).total_seconds() / total)


def along(start: Point, end: Point, fraction: float) -> Point:
    """Return the point `fraction` of the way from start to end on the drawn (straight) line."""
    return start[0] + (end[0] - start[0]) * fraction, start[1] + (end[1] - start[1]) * fraction


def local_time(value: datetime, time_zone: str) -> str:
    """Render a time as staff at that lot read it."""
    return value.astimezone(zone(time_zone)).strftime("%a %H:%M %Z")


def resolve_provider(name: str) -> TileProvider | None:
    """Return the xyzservices provider named in the settings, or None for plain axes."""
    cleaned = (name or "").strip()
    if cleaned.lower() in ("", "none"):
        return None
    try:
        provider = xyz.query_name(cleaned)
    except ValueError:
        log.warning("unknown map tile provider %r: drawing plain coordinates", cleaned)
        return None
    if provider.requires_token():
        log.warning("map tile provider %s needs an API key: drawing plain coordinates", cleaned)
        return None
    return provider


_probed: dict[str, bool] = {}
_probe_lock = threading.Lock()


def _fetch_tile(url: str) -> bool:
    # Tile servers refuse anonymous clients (OpenStreetMap's usage policy): say who asks.
    request = urllib.request.Request(url, headers={"User-Agent": "fleet-availability map"})
    with urllib.request.urlopen(request, timeout=PROBE_SECONDS) as answer:
        return answer.status < 400


def tiles_reachable(provider: TileProvider) -> bool:
    """Say whether the provider's tile server answers; asked once per process, then cached.

    The answer has a hard deadline: name resolution is not covered by the socket timeout and
    may hang on a closed network, so the fetch runs in a thread we stop waiting for.
    """
    url = provider.build_url(x=0, y=0, z=0)
    with _probe_lock:
        if url not in _probed:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-probe")
            try:
                _probed[url] = pool.submit(_fetch_tile, url).result(timeout=PROBE_SECONDS)
            except (OSError, ValueError, FutureTimeout) as exc:
                log.warning("map tiles at %s unreachable (%s): drawing plain coordinates", url, exc)
                _probed[url] = False
            finally:
                pool.shutdown(wait=False)
        return _probed[url]


def choose_tiles(name: str) -> TileProvider | None:
    """Return the tile provider to draw, or None when none is set or its server is out of reach."""
    provider = resolve_provider(name)
    return provider if provider is not None and tiles_reachable(provider) else None


def place(loc: Location | None, project: Project) -> Point | None:
    """Return where a lot is drawn, or None for a lot nobody has put on the map yet."""
    if loc is None or loc.latitude is None or loc.longitude is None:
        return None
    return project(loc.longitude, loc.latitude)


def by_location(counts: list[dict[str, Any]]) -> dict[str | None, dict[str, int]]:
    """Fold status_counts rows into location code -> status -> vehicles."""
    folded: dict[str | None, dict[str, int]] = {}
    for r in counts:
        folded.setdefault(r["location"], {})[r["status"]] = int(r["vehicles"])
    return folded


def counts_text(counts: dict[str, int]) -> str:
    """Say a lot's vehicles by status in words, in the board's order of statuses."""
    parts = [f"{counts[s]} {BADGES.get(s, s)}" for s in COUNT_COLUMNS if counts.get(s)]
    return ", ".join(parts) or "no vehicles"


def short_label(code: str, counts: dict[str, int]) -> str:
    """A lot's label on the map: its code, cars free now, and overdue ones if any."""
    if not sum(counts.values()):
        return f"{code}: no vehicles"
    label = f"{code}: {counts.get('available', 0)} available"
    return label + (f", {counts['overdue']} overdue" if counts.get("overdue") else "")


def _colour(counts: dict[str, int]) -> str:
    if counts.get("overdue"):
        return COLOURS["overdue"]
    if not sum(counts.values()):
        return COLOURS["empty"]
    return COLOURS["free"] if counts.get("available") else COLOURS["none free"]


def location_data(
    locations: list[Location], counts: dict[str | None, dict[str, int]], project: Project
) -> dict[str, list[Any]]:
    """Return the map's location source: one point per lot that has coordinates.

    Lots in the eastern half of the map carry their label on their left, so the labels of
    the outermost lots stay inside the frame instead of being cut off at its edge.
    """
    keys = ("x", "y", "code", "name", "counts", "label", "size", "colour", "total", "align")
    data: dict[str, list[Any]] = {k: [] for k in (*keys, "offset")}
    placed = [(loc, point) for loc in locations if (point := place(loc, project)) is not None]
    xs = [x for _, (x, _) in placed]
    middle = (min(xs) + max(xs)) / 2 if xs else 0.0
    for loc, (x, y) in placed:
        mine = counts.get(loc.code, {})
        total = sum(mine.values())
        data["x"].append(x)
        data["y"].append(y)
        data["code"].append(loc.code)
        data["name"].append(loc.name)
        data["counts"].append(counts_text(mine))
        # Short on the map (neighbouring lots must not print over each other); the full
        # counts are in the hover and the table below.
        data["label"].append(short_label(loc.code, mine))
        # Grows with the fleet, but a one-car lot stays tappable and a hub leaves room around it.
        data["size"].append(min(44.0, 16.0 + 5.0 * math.sqrt(total)))
        data["colour"].append(_colour(mine))
        data["total"].append(total)
        east = x > middle
        data["align"].append("right" if east else "left")
        data["offset"].append(-(data["size"][-1] / 2 + 6) if east else data["size"][-1] / 2 + 6)
    return data


SOON = timedelta(hours=24)


def on_the_map(moves: list[Transfer], now: datetime) -> list[Transfer]:
    """The transfers worth drawing: under way, late, or leaving within a day.

    A fleet books transfers weeks ahead; drawing them all would bury today's in lines.
    """
    return [t for t in moves if t.departed_at is not None or t.departs_at <= now + SOON]


def transfer_state(t: Transfer, now: datetime) -> str:
    """Say where a transfer stands: scheduled, on the way, or late."""
    if (t.arrived_at or now) > t.eta:
        return "late"
    return "on the way" if t.departed_at is not None else "scheduled"


def transfer_label(t: Transfer, destination: Location, now: datetime) -> str:
    """Label a vehicle on its route with its plate and ETA in the destination's local time."""
    eta = local_time(t.eta, destination.time_zone)
    if transfer_state(t, now) == "late":
        return f"{t.plate} to {t.to_code}: late\nETA was {eta}"
    return f"{t.plate} to {t.to_code}\nETA {eta}"


def transfer_data(
    moves: list[Transfer], locations: list[Location], now: datetime, project: Project
) -> dict[str, list[Any]]:
    """Return the route source: a line per open transfer and the vehicle's estimated position.

    A transfer that has not left yet sits at its origin; one past its ETA sits at the
    destination, marked late, until someone records its arrival.
    """
    keys = ("x0", "y0", "x1", "y1", "x", "y", "plate", "route", "eta", "state", "label", "colour")
    data: dict[str, list[Any]] = {k: [] for k in keys}
    where = {loc.code: loc for loc in locations}
    for t in moves:
        destination = where.get(t.to_code)
        start, end = place(where.get(t.from_code), project), place(destination, project)
        if start is None or end is None or destination is None:
            continue
        state = transfer_state(t, now)
        x, y = along(start, end, progress(t.departed_at, t.eta, now))
        data["x0"].append(start[0])
        data["y0"].append(start[1])
        data["x1"].append(end[0])
        data["y1"].append(end[1])
        data["x"].append(x)
        data["y"].append(y)
        data["plate"].append(t.plate)
        data["route"].append(f"{t.from_code} to {t.to_code}")
        data["eta"].append(local_time(t.eta, destination.time_zone))
        data["state"].append(state)
        # A scheduled car still stands on its lot: its label would sit on the lot's own.
        data["label"].append("" if state == "scheduled" else transfer_label(t, destination, now))
        data["colour"].append(ROUTE_COLOURS[state])
    return data


def counts_table(
    locations: list[Location], counts: dict[str | None, dict[str, int]]
) -> pd.DataFrame:
    """Return the table under the map: every lot (empty ones too) and its counts by status."""
    rows = [
        {"location": loc.code, "name": loc.name, **counts.get(loc.code, {})} for loc in locations
    ]
    if counts.get(None):
        rows.append({"location": NOT_AT_A_LOT, "name": "with customers", **counts[None]})
    table = pd.DataFrame(rows, columns=["location", "name", *COUNT_COLUMNS])
    table[COUNT_COLUMNS] = table[COUNT_COLUMNS].fillna(0).astype(int)
    return table.rename(columns={s: BADGES.get(s, s) for s in COUNT_COLUMNS})


def transfers_html(moves: list[Transfer], locations: list[Location], now: datetime) -> str:
    """List the open transfers in words, for readers who cannot see the map's canvas."""
    where = {loc.code: loc for loc in locations}
    items = []
    for t in moves:
        tz = where[t.to_code].time_zone if t.to_code in where else "UTC"
        state = transfer_state(t, now)
        items.append(
            f'<li data-state="{html.escape(state)}"><b>{html.escape(t.plate)}</b>'
            f" {html.escape(t.from_code)} to {html.escape(t.to_code)}: {html.escape(state)},"
            f" ETA {html.escape(local_time(t.eta, tz))}</li>"
        )
    if not items:
        return "<p>No vehicles in transit or scheduled to move.</p>"
    return "<ul>" + "".join(items) + "</ul>"


def build_figure(
    sites: ColumnDataSource, routes: ColumnDataSource, tiles: TileProvider | None
) -> figure:
    """Draw lots and routes over the tiles, or over plain longitude/latitude axes without."""
    axis = "mercator" if tiles is not None else "linear"
    p = figure(
        x_axis_type=axis,
        y_axis_type=axis,
        height=520,
        sizing_mode="stretch_width",
        match_aspect=True,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        toolbar_location="above",
        name="fleet-map",
    )
    # Room for the labels beside the outermost lots and above the cars.
    p.x_range.range_padding = p.y_range.range_padding = 0.5
    if tiles is not None:
        p.add_tile(tiles)
    else:
        p.xaxis.axis_label, p.yaxis.axis_label = "longitude", "latitude"
    p.segment(
        "x0", "y0", "x1", "y1", source=routes, line_color="colour", line_width=3, line_alpha=0.7
    )
    lots = p.scatter(
        "x",
        "y",
        source=sites,
        size="size",
        fill_color="colour",
        fill_alpha=0.85,
        line_color="white",
        line_width=2,
    )
    p.text(
        "x",
        "y",
        text="label",
        source=sites,
        x_offset="offset",
        text_align="align",
        text_font_size="13px",
        text_baseline="middle",
        name="fleet-map-location-labels",
        **LABEL_BOX,
    )
    # Cars come last so a car that has just left is drawn over its lot, not hidden under it.
    cars = p.scatter(
        "x", "y", source=routes, size=14, marker="triangle", fill_color="colour", line_color="white"
    )
    p.text(
        "x",
        "y",
        text="label",
        source=routes,
        # Above the car: lot labels sit beside their lots, so the two rarely cover each other.
        y_offset=-10,
        text_align="center",
        text_baseline="bottom",
        text_font_size="12px",
        text_color="colour",
        name="fleet-map-transfer-labels",
        **LABEL_BOX,
    )
    p.add_tools(
        HoverTool(renderers=[lots], tooltips=[("lot", "@code @name"), ("vehicles", "@counts")]),
        HoverTool(
            renderers=[cars],
            tooltips=[("vehicle", "@plate"), ("route", "@route"), ("ETA", "@eta"), ("", "@state")],
        ),
    )
    return p


def _read(conn: Connection) -> tuple[list[Location], list[dict[str, Any]], list[Transfer]]:
    return fleet.list_locations(conn), status.status_counts(conn), transfers.list_transfers(conn)


class FleetMap(View):
    """Every lot on a map with its vehicles by status; vehicles in transit on their routes."""

    title = "Fleet map"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._tiles = choose_tiles(ctx.settings.map_tiles)
        self._project: Project = to_mercator if self._tiles is not None else plain
        self._sites = ColumnDataSource(name="fleet-map-locations")
        self._routes = ColumnDataSource(name="fleet-map-transfers")
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            css_classes=["map-counts"],
        )
        self._moving = pn.pane.HTML("", css_classes=["map-transfers"], sizing_mode="stretch_width")
        self._locations: list[Location] = []
        self._transfers: list[Transfer] = []
        self._show(*ctx.read(_read))
        self._map = pn.pane.Bokeh(
            build_figure(self._sites, self._routes, self._tiles),
            sizing_mode="stretch_width",
            css_classes=["fleet-map"],
        )
        parts: list[Any] = []
        if self._tiles is None:
            parts.append(pn.pane.HTML(f"<p>{NO_TILES_NOTE}</p>", css_classes=["map-note"]))
        parts += [
            self._map,
            pn.pane.HTML(f"<p>{LEGEND}</p>", css_classes=["map-legend"]),
            pn.pane.HTML("<h3>Vehicles by location and status</h3>"),
            self._table,
            pn.pane.HTML("<h3>Transfers under way and leaving within a day</h3>"),
            self._moving,
        ]
        self._layout = pn.Column(*parts, sizing_mode="stretch_width")
        pn.state.add_periodic_callback(self._drift, period=DRIFT_MS)

    def _show(
        self, locations: list[Location], counts: list[dict[str, Any]], moves: list[Transfer]
    ) -> None:
        self._locations, self._transfers = locations, moves
        folded = by_location(counts)
        # Whole-source assignment: a few dozen lots and routes, so one message per refresh.
        self._sites.data = location_data(locations, folded, self._project)
        self._table.value = counts_table(locations, folded)
        self._drift()

    def _drift(self) -> None:
        """Move vehicles in transit along their routes as the clock runs (no database read)."""
        now = datetime.now(UTC)
        shown = on_the_map(self._transfers, now)
        self._routes.data = transfer_data(shown, self._locations, now, self._project)
        later = len(self._transfers) - len(shown)
        self._moving.object = transfers_html(shown, self._locations, now) + (
            f'<p>{later} more scheduled later: see <a href="/transfers">Transfers</a>.</p>'
            if later
            else ""
        )

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        if not any(str(m.get("kind", "")).startswith(RELEVANT) for m in messages):
            return
        # Counts are one GROUP BY and open transfers a handful of rows: re-read both whole.
        self._show(*await self.ctx.aread(_read))
        self.ctx.fresh()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout
