"""The live fleet board: counts per location and status, every vehicle, the latest changes."""

from __future__ import annotations

import html
import threading
from typing import Any

import pandas as pd
import panel as pn

from dashboard.shell import PageContext, View
from dashboard.vehicles import MAX_VEHICLES, VehicleTable
from db import status

_MAX_CHANGES = 12
COUNT_COLUMNS = [
    "available",
    "reserved",
    "rented",
    "overdue",
    "cleaning",
    "maintenance",
    "in_transit",
    "out_of_service",
]

_SHOWN = {"in_transit": "in transit", "out_of_service": "out of service"}


def counts_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per location, one whole-number column per status (overdue counted apart)."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["location", *COUNT_COLUMNS]).rename(columns=_SHOWN)
    # Vehicles on the road between lots have no location: they get a row of their own.
    frame["location"] = frame["location"].fillna("(between lots)")
    pivot = (
        frame.pivot_table(index="location", columns="status", values="vehicles", fill_value=0)
        .astype(int)
        .reindex(columns=COUNT_COLUMNS, fill_value=0)
        .reset_index()
        .rename_axis(None, axis=1)
    )
    return pivot.rename(columns=_SHOWN)


class SharedCounts:
    """Counts as of an event seq, read once per process however many boards are open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = -1
        self._rows: list[dict[str, Any]] = []

    def get(self, conn: Any, seq: int) -> list[dict[str, Any]]:
        """The counts as of `seq` or later; the first board to ask reads, the rest reuse."""
        with self._lock:
            if self._seq >= seq:
                return self._rows
            rows = status.status_counts(conn)
            self._seq, self._rows = seq, rows
            return rows


SHARED_COUNTS = SharedCounts()


class LiveBoard(View):
    """Counts by location and status, every vehicle, and a feed of changes, by server push."""

    title = "Fleet board"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._counts = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            css_classes=["counts"],
        )
        self._changes: list[str] = []
        self._feed = pn.pane.HTML("", css_classes=["changes"], sizing_mode="stretch_width")
        vehicles, counts = ctx.read(
            lambda c: (status.list_status(c, limit=MAX_VEHICLES), status.status_counts(c))
        )
        self._vehicles = VehicleTable(vehicles)
        self._counts.value = counts_frame(counts)

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            data = m.get("data") or {}
            plate = html.escape(str(data.get("plate", "")))
            what = html.escape(m["kind"].replace("_", " "))
            new = html.escape(str(data.get("status", "")))
            self._changes.insert(
                0,
                f'<li data-seq="{int(m["seq"])}"><b>{plate}</b> {what}'
                + (f" → <span class='status'>{new}</span>" if new else "")
                + "</li>",
            )
        del self._changes[_MAX_CHANGES:]
        self._feed.object = "<ul>" + "".join(self._changes) + "</ul>"
        ids = sorted({m["vehicle_id"] for m in messages if m.get("vehicle_id")})
        seq = int(messages[-1]["seq"])
        changed, counts = await self.ctx.aread(lambda c: self._read_in(c, ids, seq))
        self._vehicles.apply(changed)
        self._counts.value = counts_frame(counts)

    @staticmethod
    def _read_in(conn: Any, ids: list[int], seq: int) -> tuple[list, list[dict[str, Any]]]:
        changed = status.list_status(conn, vehicle_ids=ids, limit=len(ids)) if ids else []
        return changed, SHARED_COUNTS.get(conn, seq)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.HTML("<h3>Vehicles by location and status</h3>"),
            self._counts,
            pn.pane.HTML("<h3>Vehicles</h3>"),
            self._vehicles.widget,
            pn.pane.HTML("<h3>Latest changes</h3>"),
            self._feed,
            sizing_mode="stretch_width",
        )
