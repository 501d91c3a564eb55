"""The fleet board's vehicle table: one row per vehicle, patched in place as changes arrive."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from dashboard.components.table import LiveTable
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
PAGE_SIZE = 50


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


class VehicleTable:
    """Every vehicle, a page at a time; pushed changes travel as the changed cells only."""

    def __init__(self, vehicles: list[VehicleStatus]) -> None:
        # Expected return sorts by the instant, not by its text in some lot's zone.
        self._expected: dict[int, float] = {}
        self.widget = LiveTable(
            columns=[[c, c] for c in COLUMNS],
            html_columns=["status"],
            page_size=PAGE_SIZE,
            noun="vehicles",
            filter_field="plate",
            sort_keys={"expected back": lambda vid: self._expected.get(vid, float("inf"))},
            sizing_mode="stretch_width",
            css_classes=["vehicles"],
        )
        self.widget.load(self._rows(vehicles))

    def _rows(self, vehicles: list[VehicleStatus]) -> list[tuple[int, dict[str, str]]]:
        clock = datetime.now(UTC)
        out = []
        for v in vehicles:
            at = v.expected_available_at
            self._expected[v.vehicle_id] = at.timestamp() if at else float("inf")
            out.append((v.vehicle_id, row(v, clock)))
        return out

    def apply(self, vehicles: list[VehicleStatus]) -> list[int]:
        """Patch these vehicles' changed cells (append new ones); return the ids changed."""
        if not vehicles:
            return []
        return self.widget.update(self._rows(vehicles))
