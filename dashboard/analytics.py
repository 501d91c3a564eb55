"""Analytics: utilization and availability over time, from DuckDB over the history and archive."""

from __future__ import annotations

import asyncio
import html
import io
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import HoverTool, Legend, NumeralTickFormatter
from bokeh.models.widgets.tables import NumberFormatter
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from dashboard.shell import PageContext, View
from dashboard.vehicles import BADGES
from db import fleet
from db.errors import FleetError, InvalidInput
from db.status import STATUSES
from db.timeutil import zone
from pipeline import analytics
from pipeline.analytics import UsageQuery

log = logging.getLogger("fleet.dashboard.analytics")

PERIODS = {"Last 7 days": 7, "Last 30 days": 30, "Last 90 days": 90, "Date range": 0}
ALL = 0  # the Select value meaning "all locations" / "all categories"
# Status colours for the stacked bars; the legend and the table name each status in words.
STATUS_COLOURS = {
    "available": "#2e7d32",
    "reserved": "#1565c0",
    "rented": "#6a1b9a",
    "cleaning": "#00838f",
    "maintenance": "#ef6c00",
    "in_transit": "#8d6e63",
    "out_of_service": "#616161",
}
HOUR_COLUMNS = {f"{s}_hours": f"{BADGES[s]} h" for s in STATUSES}


@dataclass(frozen=True)
class Request:
    """The controls as they were when Run was pressed; Refresh asks the same again."""

    period: str
    custom: tuple[date, date] | None
    location_id: int | None
    category_id: int | None
    granularity: str
    by: str

    def query(self, today: date) -> UsageQuery:
        """Turn the request into local days; "last N days" ends with today (so far)."""
        days = PERIODS[self.period]
        if days:
            first, last = today - timedelta(days=days - 1), today
        elif self.custom is None:
            raise InvalidInput("choose the first and last day of the date range", field="period")
        else:
            first, last = self.custom
        return UsageQuery(
            first_day=first,
            last_day=last,
            granularity=self.granularity,  # type: ignore[arg-type]
            by=self.by,  # type: ignore[arg-type]
            location_id=self.location_id,
            category_id=self.category_id,
        )


def display_table(hours: pd.DataFrame, *, by: str, granularity: str) -> pd.DataFrame:
    """The numbers as the page shows them (and the CSV carries): hours and percentages."""
    table = analytics.usage_table(hours)
    shown = pd.DataFrame(
        {
            "day" if granularity == "day" else "week of": [p.isoformat() for p in table["period"]],
            by: table["group"].astype(str),
            "utilization %": (table["utilization"] * 100).round(1),
            "availability %": (table["availability"] * 100).round(1),
            "vehicle h": table["vehicle_hours"].round(1),
        }
    )
    for column, label in HOUR_COLUMNS.items():
        shown[label] = table[column].round(1)
    return shown


def utilization_chart(hours: pd.DataFrame, *, by: str) -> figure:
    """One line per location or category: the share of its vehicle-time that was rented."""
    table = analytics.usage_table(hours)
    p = figure(
        title=f"Utilization: share of vehicle-time rented, per {by}",
        x_axis_type="datetime",
        height=320,
        sizing_mode="stretch_width",
        tools="pan,box_zoom,reset,save",
        y_range=(0, 1.05),
    )
    p.yaxis.formatter = NumeralTickFormatter(format="0%")
    p.yaxis.axis_label = "rented"
    items = []
    for i, (group, rows) in enumerate(table.groupby("group", sort=True)):
        colour = Category10_10[i % len(Category10_10)]
        source = {
            "x": pd.to_datetime(rows["period"]),
            "y": rows["utilization"],
            "group": [str(group)] * len(rows),
            "period": [d.isoformat() for d in rows["period"]],
        }
        line = p.line("x", "y", source=source, line_width=3, color=colour)
        dots = p.scatter("x", "y", source=source, size=9, color=colour)
        items.append((str(group), [line, dots]))
    p.add_tools(
        HoverTool(tooltips=[(by, "@group"), ("from", "@period"), ("utilization", "@y{0.0%}")])
    )
    p.add_layout(Legend(items=items, click_policy="hide", title=by), "right")
    return p


def availability_chart(hours: pd.DataFrame, *, granularity: str) -> figure:
    """Stacked bars: each period's vehicle-hours by status, named in words."""
    wide = analytics.hours_by_status(hours)
    step = timedelta(days=1 if granularity == "day" else 7)
    words = [BADGES[s] for s in STATUSES]
    # Columns are named by the words, so the hover's @$name finds the hovered status's hours.
    source: dict[str, Any] = {BADGES[s]: wide[s].astype(float) for s in STATUSES}
    source["x"] = pd.to_datetime(wide["period"]) + step / 2  # a bar spans its day or week
    source["period"] = [d.isoformat() for d in wide["period"]]
    p = figure(
        title="Availability: vehicle-hours by status",
        x_axis_type="datetime",
        height=320,
        sizing_mode="stretch_width",
        tools="pan,box_zoom,reset,save",
    )
    p.yaxis.axis_label = "vehicle hours"
    bars = p.vbar_stack(
        words,
        x="x",
        width=(step * 0.8).total_seconds() * 1000,
        source=source,
        color=[STATUS_COLOURS[s] for s in STATUSES],
        name=words,
    )
    p.y_range.start = 0
    p.add_tools(
        HoverTool(tooltips=[("status", "$name"), ("from", "@period"), ("hours", "@$name{0.0}")])
    )
    p.add_layout(Legend(items=[(w, [b]) for w, b in zip(words, bars, strict=True)]), "right")
    return p


class AnalyticsView(View):
    """Utilization and availability over a period, per lot or category, with the numbers."""

    title = "Analytics"
    live = False  # figures come from the query the user runs

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._locations, categories = ctx.read(
            lambda c: (fleet.list_locations(c), fleet.list_categories(c))
        )
        self._location_names = {x.id: f"{x.code} {x.name}" for x in self._locations}
        self._category_names = {x.id: f"{x.code} {x.name}" for x in categories}
        home = next((x for x in self._locations if x.id == ctx.user.home_location_id), None)
        # "Today" is the user's own lot's day; each lot still counts its own local days.
        self._tz_name = home.time_zone if home else "UTC"
        self._period = pn.widgets.Select(
            label="Period",
            options=list(PERIODS),
            value="Last 30 days",
            width=170,
            css_classes=["period"],
        )
        today = self._today()
        self._range = pn.widgets.DateRangePicker(
            label="Days (each lot's local days)",
            value=(today - timedelta(days=29), today),
            visible=False,
            width=260,
            css_classes=["date-range"],
        )
        self._location = pn.widgets.Select(
            label="Location",
            options={"All locations": ALL} | {n: i for i, n in self._location_names.items()},
            value=ALL,
            width=220,
            css_classes=["location"],
        )
        self._category = pn.widgets.Select(
            label="Category",
            options={"All categories": ALL} | {n: i for i, n in self._category_names.items()},
            value=ALL,
            width=200,
            css_classes=["category"],
        )
        self._granularity = pn.widgets.RadioButtonGroup(
            label="Granularity", options={"Day": "day", "Week": "week"}, value="day", height=40
        )
        self._by = pn.widgets.RadioButtonGroup(
            label="Lines per",
            options={"Location": "location", "Category": "category"},
            value="location",
            height=40,
        )
        self._run = pn.widgets.Button(
            label="Run", color="primary", height=44, width=110, css_classes=["run"]
        )
        self._refresh = pn.widgets.Button(
            label="Refresh", height=44, width=110, disabled=True, css_classes=["refresh"]
        )
        # The spinner draws itself with its own css_classes; its box carries the page's name.
        self._spinner = pn.Column(
            pn.indicators.LoadingSpinner(value=True, size=32),
            visible=False,
            css_classes=["analytics-spinner"],
        )
        self._progress = pn.pane.HTML(
            "<span>Choose a period and press Run.</span>",
            css_classes=["analytics-progress"],
            sizing_mode="stretch_width",
        )
        self._summary = pn.pane.HTML(
            "",
            css_classes=["analytics-summary"],
            sizing_mode="stretch_width",
            visible=False,
            stylesheets=[":host { font-size: 1.15em; }"],
        )
        self._utilization = pn.pane.Bokeh(
            None, sizing_mode="stretch_width", css_classes=["utilization-chart"], visible=False
        )
        self._availability = pn.pane.Bokeh(
            None, sizing_mode="stretch_width", css_classes=["availability-chart"], visible=False
        )
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            pagination="local",
            page_size=25,
            sizing_mode="stretch_width",
            css_classes=["analytics-table"],
            visible=False,
        )
        self._csv = pn.widgets.FileDownload(
            callback=self._csv_file,
            filename="fleet-utilization.csv",
            label="Download CSV",
            color="default",
            height=44,
            width=170,
            css_classes=["analytics-csv"],
            visible=False,
        )
        self._last: Request | None = None
        self._running = False
        self._period.param.watch(self._period_changed, "value")
        self._run.on_click(self._on_run)
        self._refresh.on_click(self._on_refresh)

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.FlexBox(
            self._period,
            self._range,
            self._location,
            self._category,
            pn.Column(pn.pane.HTML("Granularity", margin=(0, 10)), self._granularity),
            pn.Column(pn.pane.HTML("Lines per", margin=(0, 10)), self._by),
            self._run,
            self._refresh,
            align_items="end",
            sizing_mode="stretch_width",
            css_classes=["analytics-controls"],
        )
        return pn.Column(
            controls,
            pn.Row(self._spinner, self._progress, sizing_mode="stretch_width"),
            self._summary,
            self._utilization,
            self._availability,
            pn.Row(self._csv, sizing_mode="stretch_width"),
            self._table,
            sizing_mode="stretch_width",
        )

    def _today(self) -> date:
        return datetime.now(zone(self._tz_name)).date()

    def _period_changed(self, event: Any) -> None:
        self._range.visible = event.new == "Date range"

    def _request(self) -> Request:
        custom = tuple(self._range.value) if self._range.value else None
        return Request(
            period=self._period.value,
            custom=custom,  # type: ignore[arg-type]
            location_id=self._location.value or None,
            category_id=self._category.value or None,
            granularity=self._granularity.value,
            by=self._by.value,
        )

    async def _on_run(self, _event: Any = None) -> None:
        await self.run(self._request())

    async def _on_refresh(self, _event: Any = None) -> None:
        if self._last is not None:
            await self.run(self._last)

    async def run(self, request: Request) -> None:
        """Answer the request off the event loop, showing progress, and show the figures."""
        if self._running:
            return
        try:
            query = request.query(self._today())
        except FleetError as exc:
            self.ctx.toast("error", str(exc))
            return
        self._busy(True, query)
        now = datetime.now(UTC)
        try:
            hours = await asyncio.to_thread(
                analytics.fetch_status_hours,
                query,
                postgres_url=self.ctx.state.engine.url.render_as_string(hide_password=False),
                settings=self.ctx.settings,
                now=now,
            )
            self._last = request
            self._show(hours, query, now)
        except FleetError as exc:
            self._failed(str(exc))
        except Exception as exc:  # DuckDB, the attachment, the archive: say so, no traceback
            log.exception("analytics query failed")
            text = str(exc).strip()
            self._failed(text.splitlines()[0][:200] if text else type(exc).__name__)
        else:
            self.ctx.fresh()
        finally:
            self._busy(False)

    def _failed(self, reason: str) -> None:
        self.ctx.toast("error", f"The analytics query failed: {reason}")
        self._progress.object = (
            f"<span>The query did not run: {html.escape(reason)}. Press Run to try again.</span>"
        )

    def _busy(self, running: bool, query: UsageQuery | None = None) -> None:
        self._running = running
        self._run.disabled = running
        self._refresh.disabled = running or self._last is None
        self._spinner.visible = running
        if running and query is not None:
            self._progress.object = (
                f"<span>Running the query for {query.first_day:%d %b %Y} to"
                f" {query.last_day:%d %b %Y}&hellip;</span>"
            )

    def _show(self, hours: pd.DataFrame, query: UsageQuery, now: datetime) -> None:
        where = self._location_names.get(query.location_id or ALL, "All locations")
        what = self._category_names.get(query.category_id or ALL, "All categories")
        span = f"{query.first_day:%d %b %Y} to {query.last_day:%d %b %Y}"
        as_of = now.astimezone(zone(self._tz_name)).strftime("%d %b %H:%M %Z")
        self._progress.object = (
            f"<span>{html.escape(where)}, {html.escape(what)}, {span} (each lot's local days);"
            f" figures as of {html.escape(as_of)}.</span>"
        )
        has_data = not hours.empty
        for pane in (self._summary, self._utilization, self._availability, self._table, self._csv):
            pane.visible = has_data
        if not has_data:
            self._progress.object += " <b>No vehicle history in this period.</b>"
            self._table.value = pd.DataFrame()
            return
        total = hours["hours"].sum()
        rented = hours.loc[hours["status"] == "rented", "hours"].sum()
        available = hours.loc[hours["status"] == "available", "hours"].sum()
        self._summary.object = (
            f"Utilization <b>{rented / total:.1%}</b> &middot; availability"
            f" <b>{available / total:.1%}</b> &middot; {total:,.0f} vehicle hours,"
            f" {rented:,.0f} rented, {available:,.0f} available"
        )
        self._utilization.object = utilization_chart(hours, by=query.by)
        self._availability.object = availability_chart(hours, granularity=query.granularity)
        table = display_table(hours, by=query.by, granularity=query.granularity)
        self._table.formatters = {c: NumberFormatter(format="0.0") for c in table.columns[2:]}
        self._table.value = table
        self._csv.filename = f"fleet-utilization-{query.first_day}-{query.last_day}.csv"

    def _csv_file(self) -> io.BytesIO:
        return io.BytesIO(self._table.value.to_csv(index=False).encode())
