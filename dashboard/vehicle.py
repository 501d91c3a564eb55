"""The vehicle page: find one car (plate, customer, QR label) and see everything about it.

Reached from the top bar's quick find (`/vehicle?q=...`), a plate (`?plate=...`), an id
(`?id=N`, what the QR labels encode) or the page's own search box. The detail shows the
status in words and colour, where the car is, who has it and when it is due back (in the
lot's local time), what is booked next, open alerts, and the last status changes; writers
change the status here. Pushed events for this car re-read the detail.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import panel as pn
from sqlalchemy import Connection

from dashboard.labels import qr_svg, vehicle_url
from dashboard.shell import PageContext, View
from dashboard.vehicles import BADGES, lateness
from db import audit, blocks, conflicts, fleet, lookup, overdue, status
from db.errors import FleetError, InvalidInput
from db.timeutil import zone

# A plate containing what was typed scores 0.9, an exact (folded) plate 1.0; a name containing
# the typed text scores 0.9 too. Anything weaker is a guess and is listed, never opened.
STRONG = 0.9
# Rentals and transfers go through their own flows (they need a customer or a destination).
FORM_EXCLUDED = frozenset({"rented", "in_transit"})
HISTORY_ROWS = 8
COLOURS = {
    "available": "#1b7f3b",
    "reserved": "#1f5fbf",
    "rented": "#6b3fa0",
    "overdue": "#c62828",
    "cleaning": "#00796b",
    "maintenance": "#b85c00",
    "in_transit": "#3949ab",
    "out_of_service": "#555555",
}

# Inputs and selects as tall as the buttons: thumbs on a lot tablet, not a mouse.
TOUCH = ".bk-input { min-height: 40px; }"
CSS = """
.vd-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr));
  gap: 12px; }
.vd-card { border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; background: #fff; }
.vd-card h3 { margin: 0 0 8px; font-size: 1.05em; }
.vd-head { display: flex; flex-wrap: wrap; gap: 16px; align-items: center;
  justify-content: space-between; }
.vd-plate { font-size: 2em; font-weight: 700; letter-spacing: 0.04em; }
.badge { display: inline-block; color: #fff; border-radius: 6px; padding: 4px 10px;
  font-weight: 600; margin-left: 8px; vertical-align: middle; }
.vd-qr { text-align: center; font-size: 0.8em; }
.vd-qr svg { width: 120px; height: 120px; }
.late { color: #c62828; font-weight: 600; }
.ontime { color: #1b7f3b; font-weight: 600; }
table.vd { border-collapse: collapse; width: 100%; font-size: 0.92em; }
table.vd th, table.vd td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #eee;
  vertical-align: top; }
a.contact { display: inline-block; min-height: 40px; line-height: 40px; padding: 0 10px;
  margin: 2px 6px 2px 0; border: 1px solid #1f5fbf; border-radius: 6px; text-decoration: none; }
ul.matches { padding-left: 0; list-style: none; margin: 0; }
ul.matches li { min-height: 40px; line-height: 40px; }
ul.matches a { font-weight: 600; font-size: 1.1em; }
.muted { color: #666; }
.error { color: #c62828; font-weight: 600; }
"""


@dataclass
class Detail:
    """Everything the page shows about one vehicle, read in one snapshot."""

    status: status.VehicleStatus
    vehicle: fleet.Vehicle
    category: fleet.Category
    locations: dict[int, fleet.Location]
    blocks: list[blocks.Block]
    overdue: overdue.OverdueRental | None
    conflicts: list[conflicts.Conflict]
    changes: list[audit.LogEntry]
    now: datetime

    @property
    def time_zone(self) -> str:
        """The zone staff read this car's times in: its lot, else its home lot."""
        home = self.locations.get(self.vehicle.home_location_id)
        return self.status.time_zone or (home.time_zone if home else "UTC")


def load_detail(
    conn: Connection, vehicle_id: int, thresholds: Sequence[int] = overdue.DEFAULT_THRESHOLDS
) -> Detail:
    """Read one vehicle's detail through the engine (raises NotFound for an unknown id)."""
    now = datetime.now(UTC)
    current = status.get_status(conn, vehicle_id=vehicle_id)
    vehicle = fleet.get_vehicle(conn, id=vehicle_id)
    return Detail(
        status=current,
        vehicle=vehicle,
        category=fleet.get_category(conn, id=vehicle.category_id),
        locations={loc.id: loc for loc in fleet.list_locations(conn)},
        blocks=[
            b
            for b in blocks.vehicle_blocks(conn, vehicle_id=vehicle_id, since=now)
            if b.state == "active"
        ],
        overdue=next(
            (
                o
                for o in overdue.list_overdue(conn, thresholds=thresholds)
                if o.vehicle_id == vehicle_id
            ),
            None,
        ),
        conflicts=[
            c
            for c in conflicts.list_conflicts(conn, with_suggestions=False)
            if c.vehicle_id == vehicle_id
        ],
        changes=audit.history(conn, vehicle_id=vehicle_id, limit=HISTORY_ROWS),
        now=now,
    )


@dataclass
class Matches:
    """What a search found: plates and customers' rentals, and the one to open if clear."""

    plates: list[lookup.PlateMatch]
    rentals: list[lookup.RentalMatch]
    problem: str = ""

    @property
    def opens(self) -> int | None:
        """Return the vehicle to open straight away: one exact plate, else one strong match."""
        exact = {p.vehicle_id for p in self.plates if p.exact}
        if len(exact) == 1:
            return exact.pop()
        strong = {p.vehicle_id for p in self.plates if p.score >= STRONG}
        strong |= {r.vehicle_id for r in self.rentals if r.score >= STRONG}
        everything = {p.vehicle_id for p in self.plates} | {r.vehicle_id for r in self.rentals}
        return strong.pop() if len(strong) == 1 and len(everything) == 1 else None


def find(conn: Connection, text_: str, *, plates_only: bool = False) -> Matches:
    """Search plates (fuzzy) and, unless `plates_only`, current rentals by customer name."""
    problems: list[str] = []
    plates: list[lookup.PlateMatch] = []
    rentals: list[lookup.RentalMatch] = []
    try:
        plates = lookup.find_by_plate(conn, query=text_)
    except InvalidInput as exc:  # a name with an apostrophe is no plate: not worth a word
        problems.append(str(exc))
    if not plates_only:
        try:
            rentals = lookup.find_rentals_by_customer(conn, name=text_)
        except InvalidInput as exc:
            problems.append(str(exc))
    # Only when nothing could be searched at all is the reason worth showing.
    problem = problems[0] if problems and len(problems) == (1 if plates_only else 2) else ""
    return Matches(plates=plates, rentals=rentals, problem=problem)


def find_and_load(
    conn: Connection,
    text_: str,
    *,
    plates_only: bool = False,
    thresholds: Sequence[int] = overdue.DEFAULT_THRESHOLDS,
) -> tuple[Matches, Detail | None]:
    """Search, and read the detail of the one clear match in the same snapshot."""
    found = find(conn, text_, plates_only=plates_only)
    target = found.opens
    return found, (load_detail(conn, target, thresholds) if target is not None else None)


def _local(value: datetime | None, tz_name: str) -> str:
    if value is None:
        return ""
    return value.astimezone(zone(tz_name)).strftime("%a %d %b %H:%M %Z")


def _e(value: Any) -> str:
    return html.escape(str(value)) if value is not None else ""


def badge(current: status.VehicleStatus) -> str:
    """The status as a coloured badge that also says it in words."""
    key = "overdue" if current.overdue else current.status
    words = "OVERDUE" if current.overdue else BADGES.get(current.status, current.status)
    colour = COLOURS.get(key, "#555555")
    return (
        f"<span class='badge status' data-status='{_e(key)}'"
        f" style='background:{colour}'>{_e(words)}</span>"
    )


def contact_links(phone: str | None, email: str | None) -> str:
    """Tap-to-call and tap-to-mail links, large enough for a thumb."""
    out = []
    if phone:
        tel = "".join(ch for ch in phone if ch.isdigit() or ch == "+")
        out.append(f"<a class='contact' href='tel:{_e(tel)}'>Call {_e(phone)}</a>")
    if email:
        out.append(f"<a class='contact' href='mailto:{_e(email)}'>Mail {_e(email)}</a>")
    return "".join(out)


def render_matches(found: Matches, *, opened: int | None) -> str:
    """List what the search found, each a link to its vehicle."""
    items = []
    for p in found.plates:
        if p.vehicle_id == opened:
            continue
        how = "exact" if p.exact else ("contains" if p.score >= STRONG else "similar")
        where = f" at {_e(p.location_code)}" if p.location_code else ""
        items.append(
            f"<li class='plate-match'><a href='/vehicle?id={p.vehicle_id}'>{_e(p.plate)}</a>"
            f" {_e(p.make)} {_e(p.model)} ({_e(p.category_code)}) ·"
            f" {_e(BADGES.get(p.status, p.status))}{where}"
            f" <span class='muted'>plate {how}</span></li>"
        )
    for r in found.rentals:
        if r.vehicle_id == opened:
            continue
        what = "rented by" if r.kind == "rental" else "reserved for"
        items.append(
            f"<li class='customer-match'><a href='/vehicle?id={r.vehicle_id}'>{_e(r.plate)}</a>"
            f" {what} {_e(r.customer_name)} · {_e(r.pickup_code)} to {_e(r.return_code)}</li>"
        )
    if not items:
        if opened is not None:
            return ""
        return f"<p class='no-match'>{_e(found.problem or 'No vehicle or customer matches.')}</p>"
    heading = "Other matches" if opened is not None else "Matches"
    return f"<h3>{heading}</h3><ul class='matches'>{''.join(items)}</ul>"


def render_head(d: Detail, base: str) -> str:
    """The top card: plate, status, whereabouts, who has the car and when it is back."""
    s, tz = d.status, d.time_zone
    lines = [f"<div><b>Where:</b> <span class='whereabouts'>{_e(s.whereabouts)}</span></div>"]
    if s.status == "rented" and s.customer_name:
        lines.append(f"<div><b>Customer:</b> <span class='customer'>{_e(s.customer_name)}</span>")
        lines.append(f"<div>{contact_links(s.customer_phone, s.customer_email)}</div></div>")
    if s.expected_available_at is not None:
        label = "Expected back" if s.status == "rented" else "Expected available"
        lines.append(
            f"<div><b>{label}:</b> <span class='expected'>"
            f"{_e(_local(s.expected_available_at, tz))}</span></div>"
        )
    late = lateness(s, d.now)
    if late:
        cls = "ontime" if late == "on time" else "late"
        lines.append(f"<div><b>Return:</b> <span class='return {cls}'>{_e(late)}</span></div>")
    if s.updated_by_name:
        lines.append(
            f"<div class='muted'>Status set {_e(_local(s.last_updated, tz))}"
            f" by {_e(s.updated_by_name)}</div>"
        )
    url = vehicle_url(base, s.vehicle_id)
    return (
        "<div class='vd-card vd-head'><div>"
        f"<div><span class='vd-plate'>{_e(s.plate)}</span>{badge(s)}</div>"
        f"{''.join(lines)}</div>"
        f"<div class='vd-qr' data-url='{_e(url)}'>{qr_svg(url)}<div>This page</div></div></div>"
    )


def _typed(widget: pn.widgets.TextInput) -> str:
    # value_input follows each keystroke; value only Enter or leaving the box (or the URL).
    return widget.value_input or widget.value or ""


def _card(title: str, body: str, css: str) -> str:
    return f"<div class='vd-card {css}'><h3>{title}</h3>{body}</div>"


def render_vehicle(d: Detail) -> str:
    """Model, category and features."""
    v, home = d.vehicle, d.locations.get(d.vehicle.home_location_id)
    features = ", ".join(v.features) or "none listed"
    rows = [
        ("Model", f"{v.make} {v.model} ({', '.join(x for x in (str(v.year), v.colour) if x)})"),
        ("Category", f"{d.category.name} ({d.category.code}), {d.category.seats} seats"),
        ("Features", features),
        ("Home lot", home.code if home else ""),
        ("Odometer", f"{v.odometer_km:,} km"),
        ("VIN", v.vin),
    ]
    if not v.active:
        rows.insert(0, ("Retired", "yes: no longer offered for rental"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(val)}</td></tr>" for k, val in rows)
    return _card("Vehicle", f"<table class='vd'>{body}</table>", "vd-vehicle")


def render_blocks(d: Detail) -> str:
    """What the car is booked for from now on, in each lot's local time."""
    if not d.blocks:
        return _card("Coming up", "<p class='muted'>Nothing booked.</p>", "vd-blocks")
    rows = []
    for b in d.blocks:
        end_loc = d.locations.get(b.end_location_id)
        start_loc = d.locations.get(b.start_location_id)
        route = _e(start_loc.code if start_loc else "")
        if end_loc and b.end_location_id != b.start_location_id:
            route += f" to {_e(end_loc.code)}"
        who = _e(b.customer_name or b.reference or "")
        rows.append(
            f"<tr data-block-id='{b.id}'><td>{_e(b.kind)}</td>"
            f"<td>{_e(_local(b.start, b.time_zone))}</td>"
            f"<td>{_e(_local(b.end, end_loc.time_zone if end_loc else b.time_zone))}</td>"
            f"<td>{route}</td><td>{who}</td></tr>"
        )
    table = (
        "<table class='vd'><tr><th>Kind</th><th>From</th><th>To</th><th>Where</th>"
        f"<th>For</th></tr>{''.join(rows)}</table>"
    )
    return _card("Coming up", table, "vd-blocks")


def render_alerts(d: Detail) -> str:
    """The open overdue alert and any conflicts about this car."""
    parts = []
    if d.overdue is not None:
        o = d.overdue
        hours, rest = divmod(int(o.overdue_by.total_seconds()) // 60, 60)
        parts.append(
            "<div class='overdue-alert'><b class='late'>Overdue</b>"
            f" by {hours} h {rest} min, level {o.escalation_level},"
            f" estimated late fee {_e(o.estimated_late_fee)}; due back"
            f" {_e(_local(o.expected_return, o.time_zone))} at {_e(o.location_code)}."
            f"<div>{contact_links(o.customer_phone, o.customer_email)}</div>"
            "<a href='/overdue'>Overdue list</a></div>"
        )
    for c in d.conflicts:
        parts.append(
            f"<div class='conflict' data-block-id='{c.block_id}'>"
            f"<b class='late'>Conflict ({_e(c.severity)})</b>: {_e(c.block_kind)} for"
            f" {_e(c.customer_name or 'a customer')} at {_e(c.location_code)} from"
            f" {_e(_local(c.starts, c.time_zone))}: {_e(c.cause)}."
            " <a href='/conflicts'>Resolve on the conflicts page</a></div>"
        )
    body = "".join(parts) or "<p class='muted'>No open alerts.</p>"
    return _card("Alerts", body, "vd-alerts")


def render_changes(d: Detail) -> str:
    """The last status changes, with a link to the full audit trail."""
    tz = d.time_zone
    rows = "".join(
        f"<tr><td>{_e(_local(g.changed_at, tz))}</td>"
        f"<td>{_e(BADGES.get(g.old_status, g.old_status) if g.old_status else '(new)')} to"
        f" {_e(BADGES.get(g.new_status, g.new_status))}</td>"
        f"<td>{_e(g.changed_by_name)}</td><td>{_e(g.change_reason)}</td></tr>"
        for g in d.changes
    )
    audit_link = f"/audit?plate={quote(d.status.plate)}"
    body = (
        "<table class='vd'><tr><th>When</th><th>Change</th><th>By</th><th>Why</th></tr>"
        f"{rows}</table>"
        if rows
        else "<p class='muted'>No changes in the last 90 days.</p>"
    )
    link = f"<p><a class='audit-link' href='{_e(audit_link)}'>Full history in the audit</a></p>"
    return _card("Last status changes", body + link, "vd-changes")


class VehicleView(View):
    """One vehicle, found by plate, customer or QR code; writers change its status here."""

    title = "Vehicle"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        # The one overdue rule (FLEET_OVERDUE_THRESHOLDS_MINUTES), as on every other surface.
        self._thresholds = overdue.configured_thresholds(ctx.settings)
        self._vehicle_id: int | None = None
        self._detail: Detail | None = None
        self._base = self._base_url()
        self._query = pn.widgets.TextInput(
            label="Find a vehicle",
            placeholder="Plate (even misread) or customer name",
            value=ctx.query.get("q") or ctx.query.get("plate") or "",
            width=360,
            css_classes=["vehicle-query"],
            stylesheets=[TOUCH],
        )
        self._find = pn.widgets.Button(
            label="Find", color="primary", height=44, width=100, css_classes=["find-btn"]
        )
        self._find.on_click(self._on_find)
        self._query.param.watch(self._on_find, "enter_pressed")
        self._matches = pn.pane.HTML(
            "", sizing_mode="stretch_width", css_classes=["matches"], stylesheets=[CSS]
        )
        self._head = pn.pane.HTML(
            "", sizing_mode="stretch_width", css_classes=["vehicle-head"], stylesheets=[CSS]
        )
        self._body = pn.pane.HTML(
            "", sizing_mode="stretch_width", css_classes=["vehicle-detail"], stylesheets=[CSS]
        )
        self._form = self._build_form()
        self._labels = self._build_labels()
        self._start()

    # -- building ---------------------------------------------------------------------------

    def _base_url(self) -> str:
        # The address the browser used to reach this page is the one a phone should open too.
        loc = pn.state.location
        if loc is not None and loc.protocol and loc.hostname:
            port = f":{loc.port}" if loc.port else ""
            return f"{loc.protocol}//{loc.hostname}{port}"
        host = (pn.state.headers or {}).get("Host", "localhost")
        return f"http://{host}"

    def _build_form(self) -> pn.viewable.Viewable:
        if not self.ctx.can_write:
            self._new_status = None
            return pn.pane.HTML(
                f"<p class='muted read-only'>Read only: your role ({_e(self.ctx.user.role)})"
                " cannot change statuses.</p>",
                sizing_mode="stretch_width",
                stylesheets=[CSS],
            )
        self._new_status = pn.widgets.Select(
            label="New status",
            options={},
            width=200,
            css_classes=["new-status"],
            stylesheets=[TOUCH],
        )
        self._reason = pn.widgets.TextInput(
            label="Reason",
            placeholder="why (required, shown in the audit)",
            width=340,
            max_length=200,
            css_classes=["status-reason"],
            stylesheets=[TOUCH],
        )
        self._change = pn.widgets.Button(
            label="Change status",
            color="warning",
            height=44,
            width=160,
            align="end",
            css_classes=["change-status"],
        )
        self._change.on_click(lambda _e: self.change_status())
        self._form_msg = pn.pane.HTML(
            "", css_classes=["form-message"], sizing_mode="stretch_width", stylesheets=[CSS]
        )
        return pn.Column(
            pn.pane.HTML("<h3>Change status</h3>", margin=(0, 10)),
            pn.FlexBox(
                self._new_status, self._reason, self._change, flex_wrap="wrap", align_items="end"
            ),
            self._form_msg,
            css_classes=["status-form"],
            sizing_mode="stretch_width",
            styles={"border": "1px solid #ddd", "border-radius": "8px", "padding": "4px 8px"},
        )

    def _build_labels(self) -> pn.viewable.Viewable:
        locations = self.ctx.read(fleet.list_locations)
        home = self.ctx.user.home_location_id
        default = next((loc.code for loc in locations if loc.id == home), None)
        self._label_location = pn.widgets.Select(
            label="QR label sheet for",
            options={f"{loc.code} · {loc.name}": loc.code for loc in locations},
            value=default or (locations[0].code if locations else None),
            width=260,
            css_classes=["label-location"],
            stylesheets=[TOUCH],
        )
        self._label_link = pn.pane.HTML(
            "", css_classes=["label-link"], align="end", stylesheets=[CSS]
        )
        self._label_location.param.watch(lambda _e: self._show_label_link(), "value")
        self._show_label_link()
        return pn.FlexBox(self._label_location, self._label_link, flex_wrap="wrap")

    def _show_label_link(self) -> None:
        code = self._label_location.value
        if not code:
            self._label_link.object = ""
            return
        self._label_link.object = (
            f"<a class='contact labels-link' href='/labels?location={quote(code)}'"
            f" target='_blank'>Print QR labels for {_e(code)}</a>"
        )

    # -- finding ----------------------------------------------------------------------------

    def _start(self) -> None:
        q = self.ctx.query
        if q.get("id"):
            try:
                self.open(int(q["id"]))
            except ValueError:
                self._matches.object = f"<p class='error'>Not a vehicle id: {_e(q['id'])}</p>"
        elif q.get("plate"):
            self.search(q["plate"], plates_only=True)
        elif q.get("q"):
            self.search(q["q"])
        else:
            self._matches.object = (
                "<p class='muted'>Type a plate (part of it, or misread) or a customer's name,"
                " or scan the QR label on a vehicle.</p>"
            )
        self._refresh_form()

    def search(self, text_: str, *, plates_only: bool = False) -> None:
        """Find vehicles for the text (when the page opens); open the one clear match."""
        text_ = text_.strip()
        if text_:
            self._show(
                *self.ctx.read(
                    lambda c: find_and_load(
                        c, text_, plates_only=plates_only, thresholds=self._thresholds
                    )
                )
            )

    async def _on_find(self, _event: Any) -> None:
        await self.asearch(_typed(self._query))

    async def asearch(self, text_: str) -> None:
        """The page's search box: the same, off the event loop, and the address bar follows."""
        text_ = text_.strip()
        if not text_:
            return
        found, detail = await self.ctx.aread(
            lambda c: find_and_load(c, text_, thresholds=self._thresholds)
        )
        self._show(found, detail)
        if detail is not None:
            self._remember(detail.status.vehicle_id)

    def open(self, vehicle_id: int) -> None:
        """Show one vehicle's detail (or say that no such vehicle exists)."""
        try:
            detail = self.ctx.read(lambda c: load_detail(c, vehicle_id, self._thresholds))
        except FleetError:
            self._clear()
            self._matches.object = f"<p class='error'>No vehicle with id {int(vehicle_id)}.</p>"
            return
        self._show(None, detail)

    def _show(self, found: Matches | None, detail: Detail | None) -> None:
        if detail is None:
            self._clear()
        else:
            self._vehicle_id = detail.status.vehicle_id
            self._render(detail)
        opened = detail.status.vehicle_id if detail is not None else None
        self._matches.object = render_matches(found, opened=opened) if found else ""
        self.ctx.fresh()

    def _remember(self, vehicle_id: int) -> None:
        # Keep the address bar on the car shown, so a reload or a shared link opens it again.
        loc = pn.state.location
        if loc is not None:
            loc.search = f"?id={int(vehicle_id)}"

    def _clear(self) -> None:
        self._vehicle_id = None
        self._detail = None
        self._head.object = ""
        self._body.object = ""
        self._refresh_form()

    def _render(self, detail: Detail) -> None:
        self._detail = detail
        self._head.object = render_head(detail, self._base)
        self._body.object = (
            "<div class='vd-grid'>"
            + render_vehicle(detail)
            + render_blocks(detail)
            + render_alerts(detail)
            + render_changes(detail)
            + "</div>"
        )
        self._refresh_form()

    def _refresh_form(self) -> None:
        shown = self._detail is not None
        self._form.visible = shown
        if self._new_status is None or self._detail is None:
            return
        current = self._detail.status.status
        allowed = sorted(status.TRANSITIONS[current] - FORM_EXCLUDED)
        self._new_status.options = {BADGES.get(s, s): s for s in allowed}
        if self._new_status.value not in allowed:
            self._new_status.value = allowed[0] if allowed else None

    # -- changing ---------------------------------------------------------------------------

    def change_status(self) -> None:
        """Change the shown vehicle's status through the engine; show its refusal if any."""
        if self._detail is None or self._new_status is None:
            return
        current = self._detail.status
        new = self._new_status.value
        reason = _typed(self._reason)
        refused: list[str] = []

        def run(conn: Connection) -> status.StatusChange:
            try:
                return status.change_status(
                    conn,
                    vehicle_id=current.vehicle_id,
                    new_status=new,
                    changed_by=self.ctx.user.id,
                    reason=reason,
                    # Decided on what this page showed: a change made meanwhile is refused.
                    expected_version=current.version,
                )
            except FleetError as exc:
                refused.append(str(exc))
                raise

        done = self.ctx.act(
            run,
            done=f"{current.plate} is now {BADGES.get(new, new)}",
            allowed=self.ctx.can_write,
        )
        if done is None:
            reason_text = refused[0] if refused else "not allowed for your role"
            self._form_msg.object = (
                f"<p class='error' role='alert'>Not changed: {_e(reason_text)}</p>"
            )
            return
        self._form_msg.object = (
            f"<p class='ok'>Changed from {_e(BADGES.get(done.old_status, done.old_status))} to"
            f" {_e(BADGES.get(new, new))}.</p>"
        )
        self._reason.value = ""
        self._reason.value_input = ""
        self.open(current.vehicle_id)

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        vid = self._vehicle_id
        mine = [m for m in messages if vid is not None and m.get("vehicle_id") == vid]
        if not mine or all(self._already_shown(m) for m in mine):
            return
        try:
            detail = await self.ctx.aread(lambda c: load_detail(c, vid, self._thresholds))
        except FleetError:
            return
        if vid == self._vehicle_id:  # the user may have opened another car meanwhile
            self._render(detail)
            self.ctx.fresh()

    def _already_shown(self, message: dict[str, Any]) -> bool:
        # This page's own change comes back as an event: its version is on screen already.
        shown = self._detail.status.version if self._detail is not None else None
        data = message.get("data") or {}
        return message.get("kind") == "status_changed" and data.get("version") == shown

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.FlexBox(self._query, self._find, flex_wrap="wrap", align_items="end"),
            self._matches,
            self._head,
            self._form,
            self._body,
            self._labels,
            sizing_mode="stretch_width",
        )
