"""The fleet board's vehicle table: one row per vehicle, patched in place as changes arrive."""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd
import panel as pn

from db.status import VehicleStatus
from db.timeutil import zone

COLUMNS = ["plate", "vehicle", "status", "where", "customer", "contact", "expected back", "return"]
# Words, not symbols: a lot tablet may have no emoji font (headless Chromium here has none).
BADGES = {
    "available": "available",
    "reserved": "reserved",
    "rented": "rented",
    "cleaning": "cleaning",
    "maintenance": "maintenance",
    "in_transit": "in transit",
    "out_of_service": "out of service",
}
MAX_VEHICLES = 20_000
HIGHLIGHT_MS = 2_500
# Colour as well as the word, readable on a wall screen: one class per status.
BADGE_CSS = """
.badge { display: inline-block; padding: 2px 8px; border-radius: 10px; font-weight: 600; }
.badge.available { background: #d7f0dd; color: #0a5b24; }
.badge.reserved { background: #e3e8f8; color: #22397a; }
.badge.rented { background: #dbe9f6; color: #0b4a7d; }
.badge.overdue { background: #9d0019; color: #fff; }
.badge.cleaning { background: #fff1c9; color: #6b4e00; }
.badge.maintenance { background: #f3ddd0; color: #7a3300; }
.badge.in_transit { background: #e8ddf5; color: #4a2378; }
.badge.out_of_service { background: #ddd; color: #333; }
.tabulator-row.tabulator-selected { background: #fff3a0 !important; transition: background 0.6s; }
"""


def badge(status: str, overdue: bool = False) -> str:
    """A status badge: the word plus a colour class (both from our own fixed set)."""
    key = "overdue" if overdue else status
    word = "OVERDUE" if overdue else BADGES.get(status, status)
    return f'<span class="badge {html.escape(key)}">{html.escape(word)}</span>'


def lateness(v: VehicleStatus, now: datetime) -> str:
    """Actual vs scheduled return, in the words staff use."""
    if v.status != "rented" or v.expected_available_at is None:
        return ""
    delta = now - v.expected_available_at
    if delta.total_seconds() <= 0:
        return "on time"
    hours, rest = divmod(int(delta.total_seconds()) // 60, 60)
    return f"late {hours} h {rest} min" if hours else f"late {rest} min"


def row(v: VehicleStatus, now: datetime) -> dict[str, str]:
    """The table row for one vehicle; times in the vehicle's lot's zone."""
    expected = ""
    if v.expected_available_at is not None:
        tz = zone(v.time_zone or "UTC")
        expected = v.expected_available_at.astimezone(tz).strftime("%a %d %b %H:%M %Z")
    contact = " · ".join(p for p in (v.customer_phone, v.customer_email) if p)
    return {
        "plate": v.plate,
        "vehicle": f"{v.make} {v.model} ({v.category_code})",
        "status": badge(v.status, v.overdue),
        "where": v.whereabouts,
        "customer": v.customer_name or "",
        "contact": contact if v.status == "rented" else "",
        "expected back": expected,
        "return": lateness(v, now),
    }


def frame(vehicles: Iterable[VehicleStatus], now: datetime | None = None) -> pd.DataFrame:
    """The whole table, indexed by vehicle id."""
    clock = now or datetime.now(UTC)
    rows = {v.vehicle_id: row(v, clock) for v in vehicles}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)
    table.index.name = "vehicle_id"
    return table


class VehicleTable:
    """A Tabulator of every vehicle; changed rows are patched and briefly selected (lit up)."""

    def __init__(self, vehicles: list[VehicleStatus]) -> None:
        self.widget = pn.widgets.Tabulator(
            frame(vehicles),
            show_index=False,
            disabled=True,
            pagination="remote",
            page_size=50,
            header_filters={"plate": {"type": "input", "func": "like"}},
            formatters={"status": {"type": "html"}},
            stylesheets=[BADGE_CSS],
            sizing_mode="stretch_width",
            css_classes=["vehicles"],
        )
        self._doc = pn.state.curdoc

    def apply(self, vehicles: list[VehicleStatus]) -> None:
        """Patch the rows of these vehicles (append new ones); only those cells travel."""
        if not vehicles:
            return
        clock = datetime.now(UTC)
        current = self.widget.value
        positions = {vid: i for i, vid in enumerate(current.index)}
        patch: dict[str, list[tuple[int, str]]] = {c: [] for c in COLUMNS}
        new = []
        for v in vehicles:
            values = row(v, clock)
            at = positions.get(v.vehicle_id)
            if at is None:
                new.append(v)
                continue
            for column in COLUMNS:
                if current.iat[at, current.columns.get_loc(column)] != values[column]:
                    patch[column].append((at, values[column]))
        patch = {c: changes for c, changes in patch.items() if changes}
        if patch:
            self.widget.patch(patch, as_index=False)
        if new:
            self.widget.stream(frame(new, clock), follow=False)
        self.flash([positions[v.vehicle_id] for v in vehicles if v.vehicle_id in positions])

    def flash(self, positions: list[int]) -> None:
        """Light the changed rows up for a moment: selection is Tabulator's own highlight."""
        if not positions:
            return
        self.widget.selection = positions
        if self._doc is not None:
            self._doc.add_timeout_callback(self._clear, HIGHLIGHT_MS)

    def _clear(self) -> None:
        self.widget.selection = []
