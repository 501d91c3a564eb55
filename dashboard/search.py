"""Availability search: find a free car for a period, hold it while booking, and book it."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import HTMLTemplateFormatter, NumberFormatter
from sqlalchemy import Connection

from dashboard.shell import PageContext, View
from dashboard.vehicles import BADGES
from db import availability, holds, lookup, rentals, saved_searches, suggestions
from db.availability import Alternatives, SearchHit
from db.blocks import Block, get_block
from db.errors import FleetError
from db.fleet import Category, Location, list_categories, list_locations
from db.overdue import late_fee
from db.suggestions import CategoryPreference
from db.timeutil import zone

HOLD_TTL = holds.DEFAULT_TTL
SEARCH_LIMIT = 50
# With a plate/model filter the engine's best 50 might all miss it: ask for more, filter here.
TEXT_LIMIT = 1000
QUARTER = timedelta(minutes=15)
DAY_FMT = "%a %d %b %H:%M"
SORT_FMT = "%Y-%m-%d %H:%M"

# Shown as text, sorted by the plain value; the hidden `_<column>` twin holds the HTML with
# the matched terms marked, so sorting never compares markup.
MARKED = ("plate", "vehicle", "category", "features", "free from", "free until")
COLUMNS = ["plate", "vehicle", "category", "features", "status", "free from", "free until"]
COLUMNS += ["km", "price"]
WIDTHS = {"plate": 110, "vehicle": 230, "category": 95, "features": 200, "status": 110}
WIDTHS |= {"free from": 150, "free until": 150, "km": 90, "price": 90}
HIDDEN = [f"_{c.replace(' ', '_')}" for c in MARKED]
# Pushed kinds that never change which cars are free (alerts about people and paperwork).
ALERT_KINDS = frozenset(
    {
        "overdue_escalated",
        "overdue_resolved",
        "overdue_contacted",
        "conflict_detected",
        "conflict_cleared",
        "conflict_escalated",
    }
)
_LOOK_ALIKE = {c: lookup.plate_key(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}

# Each HTML pane renders in its own shadow root, so each carries these rules itself.
PANE_CSS = """
:host { font-size: 15px; }
p { margin: 6px 0; }
.live { font-size: 18px; font-weight: 700; color: #0a4f8a; }
.ended { font-weight: 700; color: #9d0019; }
.booked { font-weight: 700; color: #0a6b2c; }
h3 { margin: 10px 0 4px; } h4 { margin: 8px 0 2px; } ul { margin: 2px 0; }
"""


@dataclass(frozen=True)
class Criteria:
    """One search as run: the period is aware, in the pickup lot's zone."""

    location_id: int
    start: datetime
    end: datetime
    category_id: int | None = None
    features: tuple[str, ...] = ()
    text: str = ""


@dataclass
class Found:
    """What a search found, and what to offer instead when nothing fits."""

    hits: list[SearchHit]
    unfiltered: int = 0
    alternatives: Alternatives | None = None
    usual_here: list[CategoryPreference] = field(default_factory=list)


def round_up(moment: datetime, step: timedelta = QUARTER) -> datetime:
    """Return the next whole step (quarter hour) at or after a naive local time."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour + -(-(moment - hour) // step) * step


def quick_period(which: str, now_local: datetime) -> tuple[datetime, datetime]:
    """Return the naive local pick-up and return of a quick filter (now, tomorrow, weekend).

    Wall-clock arithmetic on purpose: "tomorrow 9:00" stays 9:00 across a DST change.
    """
    soon = round_up(now_local)
    if which == "tomorrow":
        start = (now_local + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=3)
    if which == "weekend":
        day = now_local.date()
        weekday = now_local.weekday()
        if weekday >= 5 or (weekday == 4 and now_local.hour >= 17):
            monday = day + timedelta(days=7 - weekday)
            return soon, datetime.combine(monday, datetime.min.time()).replace(hour=9)
        friday = datetime.combine(day + timedelta(days=4 - weekday), datetime.min.time())
        return friday.replace(hour=17), friday + timedelta(days=3, hours=9)
    return soon, soon + timedelta(days=1)


def mark(text: str, patterns: list[re.Pattern[str]]) -> str:
    """Escape text for HTML and wrap every stretch any pattern matches in <mark>."""
    spans = sorted(m.span() for p in patterns for m in p.finditer(text) if m.end() > m.start())
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, at = [], 0
    for a, b in merged:
        out += [html.escape(text[at:a]), "<mark>", html.escape(text[a:b]), "</mark>"]
        at = b
    return "".join(out) + html.escape(text[at:])


def plate_pattern(typed: str) -> re.Pattern[str] | None:
    """Match typed plate characters in a plate, ignoring spaces and look-alike characters."""
    key = lookup.plate_key(typed)
    if not key:
        return None
    classes = [
        "[" + "".join(re.escape(c) for c, k in _LOOK_ALIKE.items() if k == ch) + "]" for ch in key
    ]
    return re.compile(r"[ -]*".join(classes), re.IGNORECASE)


def word_pattern(word: str) -> re.Pattern[str]:
    """Match a word anywhere, case-insensitively."""
    return re.compile(re.escape(word), re.IGNORECASE)


def matches_text(hit: SearchHit, typed: str) -> bool:
    """Tell whether the plate (look-alikes folded) or make and model contain the typed text."""
    key = lookup.plate_key(typed)
    in_plate = bool(key) and key in lookup.plate_key(hit.plate)
    return in_plate or typed.strip().lower() in f"{hit.make} {hit.model}".lower()


def price(length: timedelta, category: Category | None) -> float:
    """Estimate the rental price: the tariff late fees use (started hours, capped per day)."""
    if category is None:
        return 0.0
    return float(
        late_fee(
            length,
            hourly_rate=category.hourly_rate,
            daily_rate=category.daily_rate,
            grace_period=timedelta(0),
        )
    )


def _local(value: datetime | None, tz_name: str, fmt: str = DAY_FMT) -> str:
    return "" if value is None else value.astimezone(zone(tz_name)).strftime(fmt)


def _duration(length: timedelta) -> str:
    hours, minutes = divmod(round(length.total_seconds() / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def results_frame(
    hits: list[SearchHit],
    crit: Criteria,
    *,
    tz_name: str,
    categories: dict[str, Category],
    now: datetime | None = None,
) -> pd.DataFrame:
    """The results table, indexed by vehicle id, with the matched terms marked."""
    clock = now or datetime.now(UTC)
    text_marks = [p for p in (plate_pattern(crit.text),) if p] if crit.text else []
    word_marks = [word_pattern(crit.text.strip())] if crit.text.strip() else []
    codes = {c.id: c.code for c in categories.values()}
    cat_marks = [word_pattern(codes[crit.category_id])] if crit.category_id in codes else []
    feature_marks = [re.compile(rf"\b{re.escape(f)}\b", re.IGNORECASE) for f in crit.features]
    rows = {}
    for h in hits:
        idle = h.free_since is None or h.free_since <= clock
        shown = {
            "plate": (h.plate, text_marks),
            "vehicle": (
                ", ".join(filter(None, (f"{h.make} {h.model} {h.year}", h.colour))),
                word_marks,
            ),
            "category": (h.category_code, cat_marks),
            "features": (", ".join(h.features), feature_marks),
            "free from": ("now" if idle else _local(h.free_since, tz_name), []),
            "free until": (_local(h.free_until, tz_name) or "open end", []),
        }
        row: dict[str, Any] = {c: value for c, (value, _) in shown.items()}
        # Times sort by their local ISO form ("" = free now, first); words only show.
        row["free from"] = "" if idle else _local(h.free_since, tz_name, SORT_FMT)
        row["free until"] = _local(h.free_until, tz_name, SORT_FMT) or "9999"
        for c, (value, patterns) in shown.items():
            row[f"_{c.replace(' ', '_')}"] = mark(value, patterns)
        row["status"] = BADGES.get(h.status, h.status)
        row["km"] = h.odometer_km
        row["price"] = price(crit.end - crit.start, categories.get(h.category_code))
        rows[h.vehicle_id] = row
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[*COLUMNS, *HIDDEN])
    table.index.name = "vehicle_id"
    return table


def _named(code: str, name: str) -> str:
    return code if name.strip().upper() == code.upper() else f"{code} · {name}"


def _button(label: str, css: str, **kwargs: Any) -> pn.widgets.Button:
    return pn.widgets.Button(label=label, css_classes=[css], height=44, margin=(4, 6), **kwargs)


def _html(text: str = "", css: str = "") -> pn.pane.HTML:
    return pn.pane.HTML(
        text, css_classes=[css] if css else [], sizing_mode="stretch_width", stylesheets=[PANE_CSS]
    )


class SearchView(View):
    """Search by period, lot, category and features; hold and book what is free."""

    title = "Availability search"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._locations, self._categories, known, saved, mine = ctx.read(
            lambda c: (
                list_locations(c),
                list_categories(c),
                lookup.known_features(c),
                saved_searches.list_saved(c, user_id=ctx.user.id),
                holds.list_holds(c, held_by=ctx.user.id),
            )
        )
        self._by_code = {c.code: c for c in self._categories}
        self._searched: Criteria | None = None
        self._hits: dict[int, SearchHit] = {}
        self._hold: Block | None = None
        self._timer: Any = None
        self._generation = 0
        self._alt_key: tuple[str, list[int], str] | None = None
        self._url = pn.state.location if ctx.doc is not None else None
        self._build_form(known)
        self._build_results()
        self._build_actions()
        self._build_saved(saved)
        self._location.param.watch(lambda _e: self._label_pickers(), "value")
        self._label_pickers()
        if mine:  # a reload must not lose the car this clerk is holding
            self._set_hold(mine[-1])
        if not self._apply_query(ctx.query):
            self._set_period(*quick_period("now", self._now_local()))
        self._show(self._searched_now(), quiet=True)

    # Building the page

    def _build_form(self, known: list[str]) -> None:
        home = self.ctx.user.home_location_id
        ids = [loc.id for loc in self._locations]
        self._location = pn.widgets.Select(
            label="Location",
            options={_named(loc.code, loc.name): loc.id for loc in self._locations},
            value=home if home in ids else (ids[0] if ids else None),
            width=230,
            css_classes=["location"],
        )
        picker = dict(enable_seconds=False, military_time=True, allow_input=True, width=230)
        self._start = pn.widgets.DatetimePicker(label="Pick-up", css_classes=["start"], **picker)
        self._end = pn.widgets.DatetimePicker(label="Return", css_classes=["end"], **picker)
        self._category = pn.widgets.Select(
            label="Category",
            options={"Any category": 0, **{_named(c.code, c.name): c.id for c in self._categories}},
            width=200,
            css_classes=["category"],
        )
        self._features = pn.widgets.MultiChoice(
            label="Features", options=known, width=280, css_classes=["features"]
        )
        self._text = pn.widgets.TextInput(
            label="Plate or model",
            placeholder="e.g. AP 10 or Golf",
            width=200,
            css_classes=["text"],
        )
        self._search_btn = _button("Search", "run-search", color="primary", width=120)
        self._search_btn.on_click(self._on_search)
        self._quick = []
        for label, which, category in (
            ("Now, 1 day", "now", None),
            ("Tomorrow 9:00, 3 days", "tomorrow", None),
            ("This weekend", "weekend", None),
            ("SUV now", "now", "SUV"),
        ):
            if category is not None and category not in self._by_code:
                continue  # no such category in this fleet: no button that finds nothing
            button = _button(label, "quick", color="primary", variant="outline")
            button.on_click(partial(self._on_quick, which, category))
            self._quick.append(button)

    def _build_results(self) -> None:
        self._summary = _html(css="result-summary")
        self._table = pn.widgets.Tabulator(
            results_frame(
                [], Criteria(0, datetime.now(UTC), datetime.now(UTC)), tz_name="UTC", categories={}
            ),
            show_index=False,
            disabled=True,
            selectable=1,
            hidden_columns=HIDDEN,
            formatters={
                c: HTMLTemplateFormatter(template=f"<%= _{c.replace(' ', '_')} %>") for c in MARKED
            }
            | {"price": NumberFormatter(format="0,0.00"), "km": NumberFormatter(format="0,0")},
            pagination="local",
            page_size=25,
            # Widths up front: the first render has no rows to measure.
            widths=WIDTHS,
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            css_classes=["results"],
        )
        self._table.param.watch(lambda _e: self._sync_actions(), "selection")
        self._alternatives = pn.Column(
            css_classes=["alternatives"], sizing_mode="stretch_width", visible=False
        )
        self._suggestions = pn.Column(
            css_classes=["suggestions"], sizing_mode="stretch_width", visible=False
        )

    def _build_actions(self) -> None:
        self._customer_q = pn.widgets.TextInput(
            label="Customer", placeholder="Type a name", width=220, css_classes=["customer-query"]
        )
        self._customer = pn.widgets.Select(
            label="Customer found",
            options={"(type a name first)": 0},
            width=300,
            css_classes=["customer"],
        )
        self._customer_q.param.watch(self._on_customer_typed, "value_input")
        self._customer.param.watch(self._on_customer, "value")
        self._hold_btn = _button("Hold", "hold", color="primary", width=110)
        self._book_btn = _button("Book", "book", color="success", width=110)
        self._release_btn = _button("Release", "release", color="warning", width=110)
        self._hold_btn.on_click(self._on_hold)
        self._book_btn.on_click(self._on_book)
        self._release_btn.on_click(self._on_release)
        self._picked = _html(css="picked")
        self._hold_state = _html(css="hold-state")

    def _build_saved(self, saved: list[saved_searches.SavedSearch]) -> None:
        self._saved_criteria = {s.name: s.criteria for s in saved}
        self._saved = pn.widgets.Select(
            label="Saved searches",
            options=list(self._saved_criteria),
            width=220,
            css_classes=["saved"],
        )
        self._save_name = pn.widgets.TextInput(
            label="Save as", placeholder="e.g. Morning SUVs", width=200, css_classes=["save-name"]
        )
        self._save_btn = _button("Save search", "save-search", width=130)
        self._load_btn = _button("Load", "load-search", width=90)
        self._delete_btn = _button("Delete", "delete-search", color="danger", width=90)
        self._save_btn.on_click(self._on_save)
        self._load_btn.on_click(self._on_load)
        self._delete_btn.on_click(self._on_delete)

    def __panel__(self) -> pn.viewable.Viewable:
        wrap = dict(flex_wrap="wrap", align_items="flex-end", sizing_mode="stretch_width")
        actions = [self._customer_q, self._customer]
        if self.ctx.can_write:  # analysts read only: no buttons that would be refused anyway
            actions += [self._hold_btn, self._book_btn, self._release_btn]
        return pn.Column(
            pn.FlexBox(
                self._location,
                self._start,
                self._end,
                self._category,
                self._features,
                self._text,
                self._search_btn,
                css_classes=["search-form"],
                **wrap,
            ),
            pn.FlexBox(*self._quick, css_classes=["quick-filters"], **wrap),
            pn.FlexBox(
                self._saved,
                self._load_btn,
                self._delete_btn,
                self._save_name,
                self._save_btn,
                css_classes=["saved-searches"],
                **wrap,
            ),
            self._summary,
            self._table,
            self._alternatives,
            pn.FlexBox(*actions, css_classes=["actions"], **wrap),
            self._picked,
            self._hold_state,
            self._suggestions,
            sizing_mode="stretch_width",
        )

    # The form

    def _tz(self, location_id: int | None = None) -> str:
        wanted = location_id if location_id is not None else self._location.value
        return next((loc.time_zone for loc in self._locations if loc.id == wanted), "UTC")

    def _loc(self, location_id: int) -> Location | None:
        return next((loc for loc in self._locations if loc.id == location_id), None)

    def _now_local(self) -> datetime:
        return datetime.now(zone(self._tz())).replace(tzinfo=None)

    def _label_pickers(self) -> None:
        tz = self._tz()
        self._start.label = f"Pick-up ({tz})"
        self._end.label = f"Return ({tz})"

    def _set_period(self, start: datetime, end: datetime) -> None:
        self._start.value, self._end.value = start, end

    def _criteria(self) -> Criteria | None:
        """Read the form; the pickers' wall-clock times are the selected lot's local time."""
        if self._location.value is None:
            self.ctx.toast("warning", "choose a location first")
            return None
        if self._start.value is None or self._end.value is None:
            self.ctx.toast("warning", "choose the pick-up and return times")
            return None
        tz = zone(self._tz())
        # A time in a DST gap or overlap resolves as zoneinfo does (fold=0): the earlier one.
        return Criteria(
            location_id=self._location.value,
            start=self._start.value.replace(tzinfo=tz),
            end=self._end.value.replace(tzinfo=tz),
            category_id=self._category.value or None,
            features=tuple(self._features.value),
            text=self._text.value.strip(),
        )

    def _set_form(self, crit: dict[str, Any]) -> None:
        """Fill the form from saved or URL criteria (codes, not ids, so links stay readable)."""
        locs = {loc.code: loc.id for loc in self._locations}
        if crit.get("location") in locs:
            self._location.value = locs[crit["location"]]
        cat = self._by_code.get(crit.get("category") or "")
        self._category.value = cat.id if cat else 0
        features = [f for f in crit.get("features") or [] if f]
        self._features.options = sorted({*self._features.options, *features})
        self._features.value = features
        self._text.value = crit.get("plate") or ""

    def _apply_query(self, query: dict[str, str]) -> bool:
        """Fill the form from the URL (a reload keeps the search); tell whether it had one."""
        if not query:
            return False
        self._set_form(
            {
                "location": query.get("location"),
                "category": query.get("category"),
                "features": (query.get("features") or "").split(","),
                "plate": query.get("plate"),
            }
        )
        try:
            start = datetime.fromisoformat(query["start"]).replace(tzinfo=None)
            end = datetime.fromisoformat(query["end"]).replace(tzinfo=None)
        except (KeyError, ValueError):
            return False
        self._set_period(start, end)
        return True

    def _query_of(self, crit: Criteria) -> dict[str, str]:
        loc = self._loc(crit.location_id)
        tz = self._tz(crit.location_id)
        query = {
            "location": loc.code if loc else "",
            "start": crit.start.astimezone(zone(tz)).strftime("%Y-%m-%dT%H:%M"),
            "end": crit.end.astimezone(zone(tz)).strftime("%Y-%m-%dT%H:%M"),
        }
        cat = next((c.code for c in self._categories if c.id == crit.category_id), None)
        if cat:
            query["category"] = cat
        if crit.features:
            query["features"] = ",".join(crit.features)
        if crit.text:
            query["plate"] = crit.text
        return query

    # Searching

    def _searched_now(self) -> Found | None:
        crit = self._criteria()
        if crit is None:
            return None
        try:
            found = self.ctx.read(lambda c: self._find(c, crit))
        except FleetError as exc:
            self.ctx.toast("error", str(exc))
            return None
        self._searched = crit
        return found

    def _find(self, conn: Connection, crit: Criteria) -> Found:
        hits = availability.search(
            conn,
            start=crit.start,
            end=crit.end,
            location_id=crit.location_id,
            category_id=crit.category_id,
            features=list(crit.features),
            limit=TEXT_LIMIT if crit.text else SEARCH_LIMIT,
        )
        unfiltered = len(hits)
        if crit.text:
            hits = [h for h in hits if matches_text(h, crit.text)][:SEARCH_LIMIT]
        if hits:
            return Found(hits, unfiltered)
        return Found(
            hits,
            unfiltered,
            alternatives=self._alternatives_for(conn, crit),
            usual_here=suggestions.for_location(
                conn, location_id=crit.location_id, start=crit.start, end=crit.end
            ),
        )

    def _alternatives_for(self, conn: Connection, crit: Criteria) -> Alternatives:
        """Alternatives for the chosen category; for "any", other lots and windows of each."""
        ask = dict(start=crit.start, end=crit.end, location_id=crit.location_id)
        if crit.category_id is not None:
            return availability.alternatives(
                conn, category_id=crit.category_id, features=list(crit.features), **ask
            )
        merged = Alternatives(upgrades=[], other_locations=[], nearest_windows=[])
        for cat in self._categories:
            alt = availability.alternatives(
                conn, category_id=cat.id, features=list(crit.features), **ask
            )
            merged.other_locations += alt.other_locations
            merged.nearest_windows += alt.nearest_windows
        merged.other_locations = sorted(merged.other_locations, key=lambda o: o.transfer_time)[:5]
        merged.nearest_windows = sorted(merged.nearest_windows, key=lambda w: w.start)[:5]
        return merged

    async def _run(self, crit: Criteria | None, *, quiet: bool = False) -> None:
        """Search off the event loop; only the latest of overlapping searches is shown."""
        if crit is None:
            return
        self._generation += 1
        mine = self._generation
        try:
            found = await self.ctx.aread(lambda c: self._find(c, crit))
        except FleetError as exc:
            if not quiet:
                self.ctx.toast("error", str(exc))
            return
        if mine != self._generation:
            return
        self._searched = crit
        self._show(found, quiet=quiet)
        self.ctx.fresh()
        if not quiet and self._url is not None:
            self._url.search = "?" + urlencode(self._query_of(crit))

    def _show(self, found: Found | None, *, quiet: bool) -> None:
        crit = self._searched
        if found is None or crit is None:
            return
        tz = self._tz(crit.location_id)
        before = self._selected_hit()
        self._hits = {h.vehicle_id: h for h in found.hits}
        frame = results_frame(found.hits, crit, tz_name=tz, categories=self._by_code)
        # A quiet re-run that changed nothing leaves the table (and a half-read page) alone.
        if not frame.equals(self._table.value):
            self._table.value = frame
        keep = before is not None and before.vehicle_id in self._hits
        self._table.selection = [list(frame.index).index(before.vehicle_id)] if keep else []
        if quiet and before is not None and not keep and not self._holding(before.vehicle_id):
            self.ctx.toast("warning", f"{before.plate} was just taken; pick another car")
        loc = self._loc(crit.location_id)
        where = html.escape(loc.code if loc else "?")
        period = f"{_local(crit.start, tz)} to {_local(crit.end, tz)} ({html.escape(tz)})"
        n = len(found.hits)
        words = f"{n} car{'s' if n != 1 else ''} free" if n else "Nothing fits"
        extra = ""
        if crit.text and not n and found.unfiltered:
            extra = (
                f"; {found.unfiltered} other car(s) fit the period but not"
                f" &ldquo;{html.escape(crit.text)}&rdquo;"
            )
        self._summary.object = f"<p><b>{words}</b> at {where}, {period}{extra}</p>"
        self._show_alternatives(found, tz)
        self._sync_actions()

    def _show_alternatives(self, found: Found, tz: str) -> None:
        alt = found.alternatives
        # Rebuilt only when they changed: a button replaced under the clerk's finger is lost.
        key = (alt.model_dump_json() if alt else "", [p.category_id for p in found.usual_here], tz)
        if key == self._alt_key:
            return
        self._alt_key = key
        if alt is None:
            self._alternatives.visible = False
            self._alternatives.objects = []
            return
        parts = ["<h3>Alternatives</h3>"]

        def section(title: str, items: list[str], css: str) -> None:
            body = "".join(f"<li>{i}</li>" for i in items) or "<li>none</li>"
            parts.append(f"<h4>{title}</h4><ul class='{css}'>{body}</ul>")

        def car(h: SearchHit) -> str:
            return html.escape(f"{h.plate}: {h.make} {h.model} ({h.category_code})")

        section("Upgrades at this lot", [car(h) for h in alt.upgrades], "upgrades")
        section(
            "Other lots (brought over by transfer)",
            [
                f"{car(o.vehicle)} from {html.escape(o.location_code)},"
                f" {_duration(o.transfer_time)} by transfer,"
                f" must leave by {html.escape(_local(o.depart_by, tz))}"
                for o in alt.other_locations
            ],
            "other-lots",
        )
        section(
            "Nearest free periods",
            [
                html.escape(f"{w.plate}: {_local(w.start, tz)} to {_local(w.end, tz)}")
                for w in alt.nearest_windows
            ],
            "windows",
        )
        if found.usual_here:
            usual = ", ".join(html.escape(p.category_code) for p in found.usual_here)
            parts.append(f"<p class='usual'>Usually booked here for such a period: {usual}</p>")
        buttons = []
        for w in alt.nearest_windows[:3]:
            b = _button(
                f"Try {w.plate} {_local(w.start, tz)}",
                "try-window",
                color="primary",
                variant="outline",
            )
            b.on_click(partial(self._try_window, w.start, w.end))
            buttons.append(b)
        for code in dict.fromkeys(h.category_code for h in alt.upgrades):
            b = _button(f"Search {code}", "try-upgrade", color="primary", variant="outline")
            b.on_click(partial(self._try_category, code))
            buttons.append(b)
        self._alternatives.objects = [
            _html("".join(parts)),
            pn.FlexBox(*buttons, flex_wrap="wrap", sizing_mode="stretch_width"),
        ]
        self._alternatives.visible = True

    async def _on_search(self, _event: Any = None) -> None:
        await self._run(self._criteria())

    async def _on_quick(self, which: str, category: str | None, _event: Any = None) -> None:
        self._set_period(*quick_period(which, self._now_local()))
        if category is not None:
            self._category.value = self._by_code[category].id
        await self._run(self._criteria())

    async def _try_window(self, start: datetime, end: datetime, _event: Any = None) -> None:
        tz = zone(self._tz())
        self._set_period(
            start.astimezone(tz).replace(tzinfo=None), end.astimezone(tz).replace(tzinfo=None)
        )
        await self._run(self._criteria())

    async def _try_category(self, code: str, _event: Any = None) -> None:
        self._category.value = self._by_code[code].id
        await self._run(self._criteria())

    # Live: a car someone just took never stays on offer

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        crit = self._searched
        rerun = False
        for m in messages:
            kind = m.get("kind", "")
            if kind in ALERT_KINDS:
                continue
            await self._follow_hold(kind, m.get("data") or {})
            vid = m.get("vehicle_id")
            freeing = kind == "status_changed" or kind.endswith(
                ("_cancelled", "_completed", "_expired", "_released", "registered")
            )
            if crit and (
                vid in self._hits or (freeing and m.get("location_id") == crit.location_id)
            ):
                rerun = True
        if rerun and crit is not None:
            await self._run(crit, quiet=True)

    async def _follow_hold(self, kind: str, data: dict[str, Any]) -> None:
        """Keep the hold bar true to what happened to this clerk's hold elsewhere."""
        hold = self._hold
        if hold is None or data.get("id") != hold.id or kind == "hold_created":
            return
        now = await self.ctx.aread(lambda c, i=hold.id: get_block(c, block_id=i))
        if now.kind == "reservation":  # booked from another of this clerk's pages
            self._end_hold(f"The hold on {now.plate} became reservation #{now.id}.")
        elif kind == "hold_released" and now.state != "active":
            # A manager freed it: say who and why, or the clerk is left guessing.
            by = (data.get("released_by") or {}).get("full_name") or "A manager"
            why = data.get("reason") or "no reason given"
            self.ctx.toast("warning", f"{by} released your hold on {now.plate}: {why}")
            self._end_hold(f"{by} released the hold on {now.plate}: {why}.")
        elif now.state != "active":
            self._end_hold(f"The hold on {now.plate} was {now.state}.")
        elif now.expires_at != hold.expires_at:  # extended from another of this clerk's pages
            self._hold = now
            self._count_down()

    # Holding and booking

    def _selected_hit(self) -> SearchHit | None:
        rows = self._table.selection
        if not rows or rows[0] >= len(self._table.value):
            return None
        return self._hits.get(int(self._table.value.index[rows[0]]))

    def _holding(self, vehicle_id: int) -> bool:
        return self._hold is not None and self._hold.vehicle_id == vehicle_id

    def _sync_actions(self) -> None:
        """Enable what can be done now and say what Book will do, in words."""
        hit = self._selected_hit()
        customer = self._customer.value or None
        who = self._customer_label()
        self._hold_btn.disabled = hit is None or self._hold is not None
        self._release_btn.disabled = self._hold is None
        self._book_btn.disabled = customer is None or (self._hold is None and hit is None)
        if self._hold is not None:
            h = self._hold
            what = f"Book turns the hold on {h.plate} into a reservation"
        elif hit is not None:
            what = f"Selected {hit.plate} ({hit.make} {hit.model}); Book reserves it directly"
        else:
            what = "Select a car in the results to hold or book it"
        if not self.ctx.can_write:
            what = "Your role can search but not hold or book"
        elif self._hold or hit:
            what += f" for {who}" if customer else "; choose the customer first"
        self._picked.object = f"<p>{html.escape(what)}.</p>"

    def _customer_label(self) -> str:
        return next((k for k, v in self._customer.options.items() if v == self._customer.value), "")

    def _on_hold(self, _event: Any = None) -> None:
        hit, crit = self._selected_hit(), self._searched
        if hit is None or crit is None:
            self.ctx.toast("warning", "select a car in the results first")
            return
        block = self.ctx.act(
            lambda c: holds.place_hold(
                c,
                vehicle_id=hit.vehicle_id,
                start=crit.start,
                end=crit.end,
                location_id=crit.location_id,
                held_by=self.ctx.user.id,
                ttl=HOLD_TTL,
            ),
            done=f"{hit.plate} is held for you",
            allowed=self.ctx.can_write,
        )
        if block is not None:
            self._table.selection = []
            self._set_hold(block)

    def _set_hold(self, block: Block) -> None:
        self._hold = block
        self._count_down()
        # Only a browser session has a clock to tick on; a view built elsewhere ticks by hand.
        if self._timer is None and self.ctx.doc is not None:
            self._timer = pn.state.add_periodic_callback(self._tick, period=1000)
        self._sync_actions()

    async def _tick(self) -> None:
        """Count down each second; once the hold ran out its car is free again: search anew."""
        if self._count_down() and self._searched is not None:
            await self._run(self._searched, quiet=True)

    def _count_down(self) -> bool:
        """Show the time the hold has left; tell whether it has just run out."""
        hold = self._hold
        if hold is None or hold.expires_at is None:
            self._stop_timer()
            return False
        # The server's clock against the expiry the database set: the same host's time.
        left = int((hold.expires_at - datetime.now(UTC)).total_seconds())
        if left <= 0:
            self._end_hold(f"The hold on {hold.plate} expired. Search again to hold a car.")
            return True
        tz = hold.time_zone
        self._hold_state.object = (
            f"<p class='live'>Hold #{hold.id} on {html.escape(hold.plate)}"
            f" ({html.escape(_local(hold.start, tz))} to {html.escape(_local(hold.end, tz))})"
            f" expires in <span class='left'>{left // 60}:{left % 60:02d}</span></p>"
        )
        return False

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _end_hold(self, message: str) -> None:
        self._hold = None
        self._stop_timer()
        self._hold_state.object = f"<p class='ended'>{html.escape(message)}</p>"
        self._sync_actions()

    def _on_book(self, _event: Any = None) -> None:
        customer = self._customer.value or None
        if customer is None:
            self.ctx.toast("warning", "choose the customer first")
            return
        user, hold, hit, crit = self.ctx.user.id, self._hold, self._selected_hit(), self._searched
        if hold is not None:
            book = lambda c: holds.convert_hold(  # noqa: E731
                c, hold_id=hold.id, customer_id=customer, converted_by=user
            )
        elif hit is not None and crit is not None:
            book = lambda c: rentals.reserve(  # noqa: E731
                c,
                vehicle_id=hit.vehicle_id,
                start=crit.start,
                end=crit.end,
                pickup_location_id=crit.location_id,
                customer_id=customer,
                booked_by=user,
            )
        else:
            self.ctx.toast("warning", "select a car or hold one first")
            return
        made = self.ctx.act(book, allowed=self.ctx.can_write)
        if made is None:
            return
        tz = made.time_zone
        text = (
            f"Reservation #{made.id}: {made.plate} for {made.customer_name},"
            f" {_local(made.start, tz)} to {_local(made.end, tz)} ({tz})"
        )
        self.ctx.toast("success", text)
        self._hold = None
        self._stop_timer()
        self._table.selection = []
        self._hold_state.object = f"<p class='booked'>{html.escape(text)}</p>"
        self._sync_actions()

    def _on_release(self, _event: Any = None) -> None:
        hold = self._hold
        if hold is None:
            return
        user = self.ctx.user.id
        done = self.ctx.act(
            lambda c: holds.release_hold(c, hold_id=hold.id, released_by=user),
            done=f"hold on {hold.plate} released",
            allowed=self.ctx.can_write,
        )
        if done is not None:
            self._end_hold(f"The hold on {hold.plate} was released.")

    # Customers: who a booking is for, and what they usually rent

    async def _on_customer_typed(self, event: Any) -> None:
        typed = (event.new or "").strip()
        if len(typed) < 2:
            return
        found = await self.ctx.aread(lambda c: lookup.find_customers(c, name=typed, limit=10))
        if typed != (self._customer_q.value_input or "").strip():
            return  # the clerk typed on; a newer lookup answers
        options = {
            " · ".join(p for p in (m.name, m.phone, m.email) if p): m.customer_id for m in found
        }
        if len(options) == 1:
            self._customer.options = options
        else:
            label = "(choose the customer)" if options else f"(no customer like {typed!r})"
            self._customer.options = {label: 0, **options}
        self._customer.value = next(iter(options.values())) if len(options) == 1 else 0
        self._sync_actions()

    async def _on_customer(self, event: Any) -> None:
        self._sync_actions()
        customer = event.new or None
        if customer is None:
            self._suggestions.visible = False
            return
        usual = await self.ctx.aread(
            lambda c: suggestions.for_customer(c, customer_id=customer, limit=3)
        )
        if not usual:
            self._suggestions.objects = [
                _html("<h3>Suggested for this customer</h3><p>No earlier rentals.</p>")
            ]
            self._suggestions.visible = True
            return
        items = "".join(
            f"<li>{html.escape(_named(p.category_code, p.category_name))}:"
            f" {p.rentals} rental{'s' if p.rentals != 1 else ''}"
            + (
                f", usually with {html.escape(', '.join(p.common_features))}"
                if p.common_features
                else ""
            )
            + "</li>"
            for p in usual
        )
        buttons = []
        for p in usual:
            b = _button(
                f"Search {p.category_code}", "try-suggestion", color="primary", variant="outline"
            )
            b.on_click(partial(self._try_preference, p))
            buttons.append(b)
        self._suggestions.objects = [
            _html(f"<h3>Suggested for this customer</h3><ul>{items}</ul>"),
            pn.FlexBox(*buttons, flex_wrap="wrap", sizing_mode="stretch_width"),
        ]
        self._suggestions.visible = True

    async def _try_preference(self, pref: CategoryPreference, _event: Any = None) -> None:
        self._category.value = pref.category_id
        self._features.options = sorted({*self._features.options, *pref.common_features})
        self._features.value = list(pref.common_features)
        await self._run(self._criteria())

    # Saved searches: the period is kept relative (hours ahead, length) so it works tomorrow

    def _to_saved(self, crit: Criteria) -> dict[str, Any]:
        query = self._query_of(crit)
        lead = (crit.start - datetime.now(UTC)).total_seconds() / 3600
        saved: dict[str, Any] = {
            "location": query["location"],
            "lead_hours": round(max(lead, 0.0), 2),
            "duration_hours": round((crit.end - crit.start).total_seconds() / 3600, 2),
        }
        if "category" in query:
            saved["category"] = query["category"]
        if crit.features:
            saved["features"] = list(crit.features)
        if crit.text:
            saved["plate"] = crit.text  # the API's name for this filter
        return saved

    def _refresh_saved(self, selected: str | None = None) -> None:
        saved = self.ctx.read(lambda c: saved_searches.list_saved(c, user_id=self.ctx.user.id))
        self._saved_criteria = {s.name: s.criteria for s in saved}
        self._saved.options = list(self._saved_criteria)
        if selected in self._saved_criteria:
            self._saved.value = selected

    def _on_save(self, _event: Any = None) -> None:
        crit = self._criteria()
        name = self._save_name.value.strip()
        if crit is None:
            return
        if not name:
            self.ctx.toast("warning", "give the search a name to save it under")
            return
        saved = self.ctx.act(
            lambda c: saved_searches.save(
                c, user_id=self.ctx.user.id, name=name, criteria=self._to_saved(crit)
            ),
            done=f"search saved as {name!r}",
        )
        if saved is not None:
            self._save_name.value = ""
            self._refresh_saved(saved.name)

    async def _on_load(self, _event: Any = None) -> None:
        criteria = self._saved_criteria.get(self._saved.value or "")
        if criteria is None:
            self.ctx.toast("warning", "choose a saved search first")
            return
        self._set_form(criteria)
        now = self._now_local()
        start = round_up(now + timedelta(hours=float(criteria.get("lead_hours") or 0)))
        self._set_period(
            start, start + timedelta(hours=float(criteria.get("duration_hours") or 24))
        )
        await self._run(self._criteria())

    def _on_delete(self, _event: Any = None) -> None:
        name = self._saved.value
        if not name:
            self.ctx.toast("warning", "choose a saved search first")
            return
        self.ctx.act(
            lambda c: saved_searches.delete(c, user_id=self.ctx.user.id, name=name),
            done=f"saved search {name!r} deleted",
        )
        self._refresh_saved()
