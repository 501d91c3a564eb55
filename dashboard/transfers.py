"""The transfers page: vehicles moving between lots, with departure, ETA and lateness."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import panel as pn
from sqlalchemy import Connection

from dashboard.conflicts import duration_words, local_time
from dashboard.shell import PageContext, View
from db import status, transfers
from db.fleet import Location, list_locations
from db.status import VehicleStatus
from db.timeutil import zone
from db.transfers import Transfer

COLUMNS = ["plate", "route", "departure", "eta", "status", "lateness"]
ACTIONS = ["dispatch", "arrive"]
TITLES = {
    "plate": "Plate",
    "route": "From → to",
    "departure": "Departure (origin time)",
    "eta": "ETA (destination time)",
    "status": "Status",
    "lateness": "Lateness",
    "dispatch": "",
    "arrive": "",
}
# The action cells hold a fixed button, never data, so the HTML formatter is safe here.
BUTTON = {
    "dispatch": "<button class='row-action dispatch'>Dispatch</button>",
    "arrive": "<button class='row-action arrive'>Arrived</button>",
}
TABLE_CSS = """
.tabulator-cell button.row-action {
  min-height: 40px; padding: 0 14px; font-size: 15px; cursor: pointer;
  border: 1px solid #0072b5; border-radius: 4px; background: #0072b5; color: #fff;
}
.tabulator-cell button.arrive { background: #fff; color: #0072b5; }
.tabulator-row .tabulator-cell { font-size: 15px; }
"""
# Pushed events that change what this page shows: transfers, and the status a departure
# or arrival sets (also the vehicle list of the form).
RELOAD_KINDS = ("transfer", "status_changed", "block_started_early", "vehicle_registered")
# Arrivals stay listed this long, so the lot sees them come in.
ARRIVED_SHOWN = timedelta(hours=6)
TICK_MS = 60_000
MAX_VEHICLES = 5_000


def transfer_row(
    t: Transfer, zones: dict[str, str], now: datetime, *, can_write: bool = False
) -> dict[str, str]:
    """The table row for one transfer: origin and destination times in their own zones."""
    origin, destination = zones.get(t.from_code), zones.get(t.to_code)
    if t.arrived_at is not None:
        state = "arrived"
        late = t.arrived_at - t.eta
        on_time = late < timedelta(minutes=1)
        lateness = "arrived on time" if on_time else f"arrived {duration_words(late)} late"
    else:
        state = "in transit" if t.departed_at is not None else "scheduled"
        late = now - t.eta
        lateness = f"late {duration_words(late)}" if late >= timedelta(minutes=1) else "on time"
    left = t.departed_at or t.departs_at
    row = {
        "plate": t.plate,
        "route": f"{t.from_code} → {t.to_code}",
        "departure": ("left " if t.departed_at else "") + local_time(left, origin),
        "eta": local_time(t.eta, destination),
        "status": state,
        "lateness": lateness,
    }
    if can_write:
        open_ = t.state == "active"
        row["dispatch"] = BUTTON["dispatch"] if open_ and t.departed_at is None else ""
        # Before it was due to leave, an arrival is a slip of the finger, not a fact.
        gone = t.departed_at is not None or t.departs_at <= now
        row["arrive"] = BUTTON["arrive"] if open_ and gone else ""
    return row


def transfers_frame(
    found: list[Transfer], zones: dict[str, str], now: datetime, *, can_write: bool = False
) -> pd.DataFrame:
    """The whole table, indexed by the transfer's id (its block)."""
    columns = COLUMNS + (ACTIONS if can_write else [])
    rows = {t.block_id: transfer_row(t, zones, now, can_write=can_write) for t in found}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "transfer_id"
    return table


def read_transfers(conn: Connection, *, now: datetime | None = None) -> list[Transfer]:
    """Read the open transfers and those that arrived lately."""
    since = (now or datetime.now(UTC)) - ARRIVED_SHOWN
    return transfers.list_transfers(conn, include_done_since=since)


def vehicle_options(vehicles: list[VehicleStatus]) -> dict[str, int]:
    """The form's vehicle choices, by plate, saying where each one is now."""
    return {
        f"{v.plate} ({v.location_code or v.whereabouts})": v.vehicle_id
        for v in sorted(vehicles, key=lambda v: v.plate)
    }


class TransfersView(View):
    """Transfers scheduled and under way, with dispatch, arrival and a form to book one."""

    title = "Transfers"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        locations: list[Location]
        locations, found, vehicles = ctx.read(
            lambda c: (
                list_locations(c),
                read_transfers(c),
                status.list_status(c, limit=MAX_VEHICLES) if ctx.can_write else [],
            )
        )
        self._zones = {loc.code: loc.time_zone for loc in locations}
        self._zones_by_id = {loc.id: loc.time_zone for loc in locations}
        self._transfers = found
        self._table = pn.widgets.Tabulator(
            transfers_frame(found, self._zones, datetime.now(UTC), can_write=ctx.can_write),
            show_index=False,
            disabled=True,
            titles=TITLES,
            formatters={a: {"type": "html"} for a in ACTIONS},
            sortable={a: False for a in ACTIONS},
            stylesheets=[TABLE_CSS],
            sizing_mode="stretch_width",
            css_classes=["transfers"],
        )
        self._summary = pn.pane.HTML("", css_classes=["summary"], sizing_mode="stretch_width")
        self._summarize()
        self._table.on_click(self._on_dispatch, column="dispatch")
        self._table.on_click(self._on_arrive, column="arrive")
        self._generation = 0
        self._vehicles = {v.vehicle_id: v for v in vehicles}
        self._form = self._build_form(locations) if ctx.can_write else None
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self._tick, period=TICK_MS)

    def _build_form(self, locations: list[Location]) -> pn.viewable.Viewable:
        self._vehicle = pn.widgets.Select(
            label="Vehicle",
            options=vehicle_options(list(self._vehicles.values())),
            width=260,
            css_classes=["transfer-vehicle"],
        )
        home = self.ctx.user.home_location_id
        self._destination = pn.widgets.Select(
            label="To",
            options={f"{loc.code} {loc.name}": loc.id for loc in locations},
            # Cars mostly leave the user's own lot: start on another one.
            value=next((loc.id for loc in locations if loc.id != home), None),
            width=260,
            css_classes=["transfer-destination"],
        )
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        self._depart = pn.widgets.DatetimePicker(
            label="Departure (local time at the vehicle's lot)",
            value=start.astimezone(zone(self._home_zone())).replace(tzinfo=None),
            width=260,
            css_classes=["transfer-departure"],
        )
        self._schedule = pn.widgets.Button(
            label="Schedule transfer",
            color="primary",
            height=44,
            align="end",
            stylesheets=[".bk-btn { font-size: 15px; padding: 0 14px; }"],
            css_classes=["schedule-transfer"],
        )
        self._schedule.on_click(self._on_schedule)
        return pn.Column(
            pn.pane.HTML("<h3>Schedule a transfer</h3>", margin=(0, 10)),
            pn.FlexBox(
                self._vehicle, self._destination, self._depart, self._schedule, flex_wrap="wrap"
            ),
            sizing_mode="stretch_width",
            css_classes=["schedule-form"],
        )

    def _home_zone(self) -> str:
        """The zone of the user's own lot: the clock for a vehicle that is on no lot now."""
        return self._zones_by_id.get(self.ctx.user.home_location_id or 0, "UTC")

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        relevant = [m for m in messages if str(m.get("kind", "")).startswith(RELOAD_KINDS)]
        if not relevant:
            return
        changed = sorted({m["vehicle_id"] for m in relevant if m.get("vehicle_id")})
        await self.reload(changed if self._form is not None else [])

    async def reload(self, vehicle_ids: list[int] | None = None) -> None:
        """Read the transfers (and these vehicles, for the form) again and show them."""
        self._generation += 1
        mine = self._generation
        ids = vehicle_ids or []
        found, vehicles = await self.ctx.aread(
            lambda c: (
                read_transfers(c),
                status.list_status(c, vehicle_ids=ids, limit=len(ids)) if ids else [],
            )
        )
        if mine != self._generation:
            return
        self._transfers = found
        self._show(datetime.now(UTC))
        if vehicles and self._form is not None:
            self._vehicles.update({v.vehicle_id: v for v in vehicles})
            options = vehicle_options(list(self._vehicles.values()))
            if options != self._vehicle.options:
                self._vehicle.options = options
        self.ctx.fresh()

    def _show(self, now: datetime) -> None:
        new = transfers_frame(self._transfers, self._zones, now, can_write=self.ctx.can_write)
        old = self._table.value
        if list(new.index) == list(old.index):
            # Same transfers in the same order: send only the cells that changed.
            patch = {
                column: [
                    (i, new.iat[i, j]) for i in range(len(new)) if new.iat[i, j] != old.iat[i, j]
                ]
                for j, column in enumerate(new.columns)
            }
            patch = {c: changes for c, changes in patch.items() if changes}
            if patch:
                self._table.patch(patch, as_index=False)
        else:
            self._table.value = new
        self._summarize()

    def _summarize(self) -> None:
        frame = self._table.value
        counts = frame["status"].value_counts() if not frame.empty else {}
        late = int(frame["lateness"].str.startswith("late").sum()) if not frame.empty else 0
        parts = [f"{counts.get(s, 0)} {s}" for s in ("in transit", "scheduled", "arrived")]
        text = ", ".join(parts) + f"; {late} late."
        if frame.empty:
            text = "No transfers scheduled or under way."
        self._summary.object = f"<p class='count' style='font-size:15px'>{html.escape(text)}</p>"

    def _tick(self) -> None:
        # Lateness grows with the clock, not with events: recompute it from the known ETAs.
        self._show(datetime.now(UTC))

    def _transfer_at(self, row: int) -> Transfer | None:
        transfer_id = int(self._table.value.index[row])
        return next((t for t in self._transfers if t.block_id == transfer_id), None)

    async def _on_dispatch(self, event: Any) -> None:
        t = self._transfer_at(event.row)
        if t is None or t.state != "active" or t.departed_at is not None:
            return
        self.ctx.act(
            lambda c: transfers.dispatch(c, block_id=t.block_id, changed_by=self.ctx.user.id),
            done=f"{t.plate} left {t.from_code} for {t.to_code}",
            allowed=self.ctx.can_write,
        )
        await self.reload([t.vehicle_id])

    async def _on_arrive(self, event: Any) -> None:
        t = self._transfer_at(event.row)
        if t is None or t.state != "active":
            return
        self.ctx.act(
            lambda c: transfers.arrive(c, block_id=t.block_id, changed_by=self.ctx.user.id),
            done=f"{t.plate} arrived at {t.to_code}",
            allowed=self.ctx.can_write,
        )
        await self.reload([t.vehicle_id])

    async def _on_schedule(self, _event: Any) -> None:
        vehicle = self._vehicles.get(self._vehicle.value)
        destination = self._destination.value
        when = self._depart.value
        if vehicle is None or destination is None or when is None:
            self.ctx.toast("warning", "choose a vehicle, a destination and a departure time")
            return
        # The picker gives a wall-clock time; it is read on the clock of the vehicle's lot.
        depart_at = when.replace(tzinfo=zone(vehicle.time_zone or self._home_zone()))
        self.ctx.act(
            lambda c: transfers.schedule_transfer(
                c,
                vehicle_id=vehicle.vehicle_id,
                to_location_id=destination,
                depart_at=depart_at,
                created_by=self.ctx.user.id,
            ),
            done=f"Transfer of {vehicle.plate} scheduled",
            allowed=self.ctx.can_write,
        )
        await self.reload([vehicle.vehicle_id])

    def __panel__(self) -> pn.viewable.Viewable:
        parts: list[Any] = [self._summary, self._table]
        if self._form is not None:
            parts.append(self._form)
        return pn.Column(*parts, sizing_mode="stretch_width")
