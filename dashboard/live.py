"""The live fleet board: counts per location and status, every vehicle, the latest changes."""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import panel as pn
import param

from api.security import SESSION_COOKIE, user_from_cookie
from dashboard.vehicles import MAX_VEHICLES, VehicleTable
from db import status

_MAX_CHANGES = 12


class LiveBoard(pn.viewable.Viewer):
    """Counts by location and status and a feed of changes, updated by server push."""

    seq = param.Integer(default=0, doc="Newest event shown.")
    freshness = param.String(default="")

    def __init__(self, state: Any, **params: Any) -> None:
        super().__init__(**params)
        self._state = state
        self._user = user_from_cookie(state, pn.state.cookies.get(SESSION_COOKIE, ""))
        self._counts = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width"
        )
        self._changes: list[str] = []
        self._feed = pn.pane.HTML("", css_classes=["changes"], sizing_mode="stretch_width")
        self._indicator = pn.pane.HTML("", css_classes=["connection"])
        self._doc = pn.state.curdoc
        with state.engine.connect() as conn:
            self._vehicles = VehicleTable(status.list_status(conn, limit=MAX_VEHICLES))
        self._refresh_counts()
        broadcaster = state.broadcaster
        self.seq = broadcaster.last_seq
        broadcaster.listeners.add(self._on_events)
        pn.state.on_session_destroyed(lambda _ctx: broadcaster.listeners.discard(self._on_events))
        self._show_connection(broadcaster.connected)
        # Per session, never at import: the indicator follows the server's LISTEN connection.
        pn.state.add_periodic_callback(
            lambda: self._show_connection(broadcaster.connected), period=2000
        )

    def _refresh_counts(self) -> None:
        with self._state.engine.connect() as conn:
            rows = status.status_counts(conn)
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame = (
                frame.pivot_table(
                    index="location", columns="status", values="vehicles", fill_value=0
                )
                .astype(int)
                .reset_index()
                .rename_axis(None, axis=1)
            )
        self._counts.value = frame
        self.freshness = datetime.now(UTC).strftime("%H:%M:%S UTC")

    def _read_vehicles(self, ids: list[int]) -> list[status.VehicleStatus]:
        with self._state.engine.connect() as conn:
            return status.list_status(conn, vehicle_ids=ids, limit=len(ids))

    def _show_connection(self, live: bool) -> None:
        label, colour = ("live", "#0a7d32") if live else ("reconnecting", "#b35c00")
        self._indicator.object = (
            f'<span data-state="{label}" style="color:{colour};font-weight:600">● {label}</span>'
            f" · data as of {html.escape(self.freshness)}"
        )

    def _on_events(self, messages: list[dict[str, Any]]) -> None:
        # Called on the server's event loop; Bokeh models change only in the session's own tick.
        if self._doc is None or self._doc.session_context is None:
            return
        self._doc.add_next_tick_callback(lambda: self._apply(messages))

    async def _apply(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            data = m.get("data") or {}
            plate = html.escape(str(data.get("plate", "")))
            what = html.escape(m["kind"].replace("_", " "))
            new = html.escape(str(data.get("status", "")))
            self._changes.insert(
                0,
                f'<li data-seq="{m["seq"]}"><b>{plate}</b> {what}'
                + (f" → <span class='status'>{new}</span>" if new else "")
                + "</li>",
            )
        del self._changes[_MAX_CHANGES:]
        self._feed.object = "<ul>" + "".join(self._changes) + "</ul>"
        self.seq = messages[-1]["seq"]
        ids = sorted({m["vehicle_id"] for m in messages if m.get("vehicle_id")})
        if ids:
            changed = await asyncio.to_thread(self._read_vehicles, ids)
            self._vehicles.apply(changed)
        await asyncio.to_thread(self._refresh_counts)
        self._show_connection(self._state.broadcaster.connected)

    def __panel__(self) -> pn.viewable.Viewable:
        who = self._user.full_name if self._user else ""
        role = self._user.role if self._user else ""
        header = pn.Row(
            pn.pane.HTML(f"<h2>Fleet board</h2><p>{html.escape(who)} ({html.escape(role)})</p>"),
            pn.layout.HSpacer(),
            self._indicator,
        )
        return pn.Column(
            header,
            pn.pane.HTML("<h3>Vehicles by location and status</h3>"),
            self._counts,
            pn.pane.HTML("<h3>Vehicles</h3>"),
            self._vehicles.widget,
            pn.pane.HTML("<h3>Latest changes</h3>"),
            self._feed,
            sizing_mode="stretch_width",
        )
