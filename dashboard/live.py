"""The live fleet board: counts per location and status, every vehicle, the latest changes."""

from __future__ import annotations

import html
import threading
from typing import Any

import pandas as pd
import panel as pn

from dashboard.components.table import LiveTable
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


def counts_rows(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """The counts table's rows, keyed by location, every count as a whole number."""
    table = counts_frame(rows)
    records = table.to_dict("records")
    return [(str(r["location"]), {c: str(r[c]) for c in table.columns}) for r in records]


# Changed vehicles, and the counts table's rows keyed by location.
Reads = tuple[list[status.VehicleStatus], list[tuple[str, dict[str, str]]]]


class SharedReads:
    """Vehicles and counts as of an event seq, read once per process however many boards ask.

    Twenty open boards each asking the database for the same changed vehicle was the
    server's share of the board's latency; now the first board to ask reads and the others
    reuse that row. A row read in a snapshot taken after event `seq` was published is good
    for any board asking about `seq` or earlier.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vehicles: dict[int, tuple[int, status.VehicleStatus]] = {}
        self._counts_seq = -1
        self._counts: list[tuple[str, dict[str, str]]] = []

    def cached(self, ids: list[int], seq: int) -> Reads | None:
        """The vehicles `ids` and the counts as of `seq` if already read, else None."""
        with self._lock:
            if self._counts_seq < seq or any(self._read_at(i) < seq for i in ids):
                return None
            return self._answer(ids)

    def get(self, conn: Any, ids: list[int], seq: int) -> Reads:
        """The vehicles `ids` and the counts, as of `seq` or later (reading what is missing)."""
        with self._lock:
            stale = [i for i in ids if self._read_at(i) < seq]
            if stale:
                for v in status.list_status(conn, vehicle_ids=stale, limit=len(stale)):
                    self._vehicles[v.vehicle_id] = (seq, v)
            if self._counts_seq < seq:
                # Shaped once here too: a pandas pivot per board per change was most of the
                # server's time per board.
                self._counts_seq, self._counts = seq, counts_rows(status.status_counts(conn))
            return self._answer(ids)

    def _read_at(self, vehicle_id: int) -> int:
        return self._vehicles.get(vehicle_id, (-1, None))[0]

    def _answer(self, ids: list[int]) -> Reads:
        return [self._vehicles[i][1] for i in ids if i in self._vehicles], self._counts


SHARED = SharedReads()


class LiveBoard(View):
    """Counts by location and status, every vehicle, and a feed of changes, by server push."""

    title = "Fleet board"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._counts = LiveTable(
            columns=[["location", "location"]] + [[_SHOWN.get(c, c)] * 2 for c in COUNT_COLUMNS],
            numeric_columns=[_SHOWN.get(c, c) for c in COUNT_COLUMNS],
            noun="locations",
            sizing_mode="stretch_width",
            css_classes=["counts"],
        )
        self._changes: list[str] = []
        self._feed = pn.pane.HTML("", css_classes=["changes"], sizing_mode="stretch_width")
        vehicles, counts = ctx.read(
            lambda c: (status.list_status(c, limit=MAX_VEHICLES), status.status_counts(c))
        )
        self._vehicles = VehicleTable(vehicles)
        self._counts.load(counts_rows(counts))  # this board's own first read

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
        # Most boards find the rows another board just read: no thread, no transaction.
        got = SHARED.cached(ids, seq)
        if got is None:
            got = await self.ctx.aread(lambda c: SHARED.get(c, ids, seq))
        changed, counts = got
        self._vehicles.apply(changed)
        self._show_counts(counts)

    def _show_counts(self, rows: list[tuple[str, dict[str, str]]]) -> None:
        self._counts.update(rows)
        self._counts.remove(set(self._counts.keys()) - {key for key, _ in rows})

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
