"""The audit page: the status log by vehicle, user, lot and period; a timeline; rollback; CSV."""

from __future__ import annotations

import csv
import html
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.plotting import figure

from dashboard.shell import PageContext, View
from dashboard.vehicles import BADGES
from db import audit, fleet, lookup
from db.errors import FleetError
from db.status import STATUSES
from db.timeutil import zone

PAGE_SIZE = 50
EXPORT_BATCH = 2_000
# A bigger file would travel to the browser through the page's websocket in one message.
EXPORT_MAX = 100_000
COLUMNS = ["#", "when", "plate", "change", "who", "source", "reason", "rolled back"]
CSV_COLUMNS = [
    "change_id",
    "changed_at_utc",
    "local_time",
    "time_zone",
    "plate",
    "old_status",
    "new_status",
    "old_location",
    "new_location",
    "changed_by",
    "source",
    "reason",
    "reverts_change",
    "rolled_back_by_change",
]
# Okabe-Ito colours: told apart with the common colour-vision deficiencies; words go with them.
COLOURS = {
    "available": "#009E73",
    "reserved": "#56B4E9",
    "rented": "#0072B2",
    "cleaning": "#F0E442",
    "maintenance": "#E69F00",
    "in_transit": "#CC79A7",
    "out_of_service": "#D55E00",
}
# Select shows no label for a None value, so "anyone" and "any lot" are 0 (ids start at 1).
ANY = 0
WHEN = "%a %d %b %Y %H:%M:%S %Z"
TOUCH_CSS = ".bk-input, .bk-btn { min-height: 44px; font-size: 16px; }"
NOTICE_CSS = """
.notice { padding: 10px 14px; border-radius: 6px; margin: 4px 0; font-size: 15px; }
.notice.error { background: #fde8ea; color: #7a0014; border: 1px solid #d9a0a8; }
.notice.success { background: #e6f4ea; color: #0a4b1f; border: 1px solid #9cc8a8; }
:host(.confirm) { padding: 12px 14px; border: 2px solid #8a4b00; border-radius: 8px;
  background: #fff7ea; font-size: 16px; }
.legend span.swatch { display: inline-block; width: 14px; height: 14px; margin: 0 4px -2px 10px;
  border: 1px solid #555; }
"""


def words(status: str | None) -> str:
    """Return a status as staff say it."""
    return BADGES.get(status or "", status or "(new)")


def csv_cell(value: Any) -> str:
    """Return a CSV cell a spreadsheet will show as text, never run as a formula."""
    text = "" if value is None else str(value)
    # A reason typed as "=HYPERLINK(...)" would otherwise be a live formula in Excel.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class AuditView(View):
    """Who changed what and when: filter the log, see a vehicle's timeline, undo mistakes."""

    title = "Audit and history"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        locations, authors = ctx.read(lambda c: (fleet.list_locations(c), audit.authors(c)))
        self._zones = {loc.code: loc.time_zone for loc in locations}
        self._locations = {loc.id: loc for loc in locations}
        home = self._locations.get(ctx.user.home_location_id or 0)
        self._home_zone = home.time_zone if home else "UTC"
        self._entries: list[audit.LogEntry] = []
        self._page = 0
        self._total = 0
        self._pending: audit.LogEntry | None = None
        self._selected_id: int | None = None
        self._vehicle: tuple[int, str] | None = None  # the timeline's vehicle
        self._exporting = False
        self._generation = 0  # the latest reload; an older one finishing late is dropped

        touch = [TOUCH_CSS]
        self.plate = pn.widgets.TextInput(
            label="Plate",
            placeholder="part of a plate",
            css_classes=["audit-plate"],
            width=170,
            stylesheets=touch,
        )
        self.user = pn.widgets.Select(
            label="Changed by",
            options={"anyone": ANY, **{f"{a.full_name} ({a.role})": a.id for a in authors}},
            css_classes=["audit-user"],
            width=220,
            stylesheets=touch,
        )
        self.location = pn.widgets.Select(
            label="Lot",
            options={"any lot": ANY, **{f"{loc.code} {loc.name}": loc.id for loc in locations}},
            css_classes=["audit-location"],
            width=200,
            stylesheets=touch,
        )
        self.since = pn.widgets.DatePicker(
            label="From (lot day)", css_classes=["audit-from"], width=150, stylesheets=touch
        )
        self.until = pn.widgets.DatePicker(
            label="To (lot day)", css_classes=["audit-to"], width=150, stylesheets=touch
        )
        self.clear = pn.widgets.Button(
            label="Clear filters",
            css_classes=["audit-clear"],
            height=44,
            stylesheets=touch,
            align="end",
        )
        self._hint = pn.pane.HTML("", css_classes=["audit-hint"], sizing_mode="stretch_width")
        self._pager = pn.pane.HTML("", css_classes=["audit-pager"], align="center")
        self.newer = pn.widgets.Button(
            label="Newer", css_classes=["audit-newer"], height=44, stylesheets=touch
        )
        self.older = pn.widgets.Button(
            label="Older", css_classes=["audit-older"], height=44, stylesheets=touch
        )
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=COLUMNS),
            disabled=True,
            selectable=1,
            show_index=False,
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            css_classes=["audit-log"],
        )
        self.rollback = pn.widgets.Button(
            label="Roll back selected change",
            color="warning",
            disabled=True,
            height=44,
            stylesheets=touch,
            css_classes=["audit-rollback"],
        )
        self._confirm_text = pn.pane.HTML("", css_classes=["audit-confirm-text"])
        self.reason = pn.widgets.TextInput(
            label="Why (kept in the log)",
            value="incorrect change",
            max_length=150,
            css_classes=["audit-reason"],
            width=320,
            stylesheets=touch,
        )
        self.confirm = pn.widgets.Button(
            label="Confirm roll back",
            color="danger",
            height=44,
            stylesheets=touch,
            css_classes=["audit-confirm"],
        )
        self.cancel = pn.widgets.Button(
            label="Cancel", height=44, stylesheets=touch, css_classes=["audit-cancel"]
        )
        self._confirm_box = pn.Column(
            self._confirm_text,
            pn.FlexBox(self.reason, self.confirm, self.cancel, align_items="flex-end"),
            css_classes=["confirm", "audit-confirm-box"],
            stylesheets=[NOTICE_CSS],
            visible=False,
            sizing_mode="stretch_width",
        )
        self._notice = pn.pane.HTML(
            "",
            css_classes=["audit-notice"],
            stylesheets=[NOTICE_CSS],
            sizing_mode="stretch_width",
        )
        self.export = pn.widgets.Button(
            label="Export CSV",
            color="primary",
            height=44,
            stylesheets=touch,
            css_classes=["audit-export"],
        )
        self.progress = pn.indicators.Progress(
            value=0,
            max=100,
            visible=False,
            width=260,
            css_classes=["audit-progress"],
            align="center",
        )
        self._export_status = pn.pane.HTML("", css_classes=["audit-export-status"], align="center")
        self.download = pn.widgets.FileDownload(
            filename="audit.csv",
            label="Download CSV",
            visible=False,
            height=44,
            stylesheets=touch,
            color="success",
            css_classes=["audit-download"],
        )
        self._timeline_title = pn.pane.HTML("", css_classes=["audit-timeline-title"])
        self._legend = pn.pane.HTML("", css_classes=["audit-legend"], stylesheets=[NOTICE_CSS])
        # A fresh pane per figure: a Bokeh pane first laid out hidden keeps a zero height.
        self._plot = pn.Column(sizing_mode="stretch_width", css_classes=["audit-timeline"])

        self._prefill(ctx.query)
        for widget in (self.plate, self.user, self.location, self.since, self.until):
            widget.param.watch(self._on_filter, "value")
        self.clear.on_click(self._on_clear)
        self.newer.on_click(self._on_newer)
        self.older.on_click(self._on_older)
        self.table.param.watch(self._on_select, "selection")
        self.rollback.on_click(self._on_rollback)
        self.confirm.on_click(self._on_confirm)
        self.cancel.on_click(self._on_cancel)
        self.export.on_click(self._on_export)
        try:
            first = self.filters()
            self._show(*ctx.read(lambda c: self._load(c, first)))
        except FleetError as exc:  # e.g. a link with a malformed plate: say so, show nothing
            ctx.toast("warning", str(exc))

    # -- filters -------------------------------------------------------------------------

    def _prefill(self, query: dict[str, str]) -> None:
        """Fill the filters from the link (?plate=&user=&location=&from=&to=): pages link here."""
        self.plate.value = query.get("plate", "").strip()[:20]
        user = query.get("user", "")
        if user.isdigit() and int(user) in self.user.options.values():
            self.user.value = int(user)
        code = query.get("location", "").upper()
        found = [loc.id for loc in self._locations.values() if loc.code == code]
        if found:
            self.location.value = found[0]
        for key, widget in (("from", self.since), ("to", self.until)):
            try:
                widget.value = date.fromisoformat(query[key]) if query.get(key) else None
            except ValueError:
                self.ctx.toast("warning", f"ignored {key}={query[key]!r}: use YYYY-MM-DD")

    @property
    def page_zone(self) -> str:
        """The zone the day pickers mean: the chosen lot's, else the user's home lot's."""
        loc = self._locations.get(self.location.value or 0)
        return loc.time_zone if loc else self._home_zone

    def filters(self) -> audit.LogFilter:
        """Return the filters as the engine takes them; lot days become instants."""
        tz = zone(self.page_zone)
        since = until = None
        if self.since.value:
            since = datetime.combine(self.since.value, time.min, tz)
        if self.until.value:
            # Through the end of the chosen day in the lot: up to the next local midnight.
            until = datetime.combine(self.until.value + timedelta(days=1), time.min, tz)
        return audit.LogFilter(
            plate=self.plate.value.strip() or None,
            user_id=self.user.value or None,
            location_id=self.location.value or None,
            since=since,
            until=until,
        )

    async def _on_filter(self, *_events: Any) -> None:
        if self.since.value and self.until.value and self.until.value < self.since.value:
            self.ctx.toast("warning", "the period ends before it starts: pick a later 'To' day")
            return
        self._page = 0
        self._selected_id = None
        await self.reload(timeline=True)

    def _on_clear(self, _event: Any) -> None:
        # Each reset starts a re-read; only the last one to start is shown (see `reload`).
        self.since.value = self.until.value = None
        self.user.value = self.location.value = ANY
        self.plate.value = ""

    async def _on_newer(self, _event: Any) -> None:
        if self._page > 0:
            self._page -= 1
            await self.reload()

    async def _on_older(self, _event: Any) -> None:
        if (self._page + 1) * PAGE_SIZE < self._total:
            self._page += 1
            await self.reload()

    # -- reading and showing -------------------------------------------------------------

    def _load(
        self, conn: Any, filters: audit.LogFilter, *, timeline: bool = True
    ) -> tuple[Any, ...]:
        """Read the page, the count and (if asked) the timeline in one snapshot."""
        entries = audit.history_page(
            conn, filters=filters, offset=self._page * PAGE_SIZE, limit=PAGE_SIZE
        )
        total = audit.count_history(conn, filters=filters)
        vehicle = self._vehicle
        if timeline:
            vehicle = self._timeline_vehicle(conn, filters, entries)
        spans = self._spans(conn, vehicle, filters) if vehicle else None
        return entries, total, vehicle, spans

    def _timeline_vehicle(
        self, conn: Any, filters: audit.LogFilter, entries: list[audit.LogEntry]
    ) -> tuple[int, str] | None:
        """The vehicle to draw: the selected change's, the plate typed exactly, or the only one."""
        chosen = [e for e in entries if e.id == self._selected_id]
        if chosen:
            return chosen[0].vehicle_id, chosen[0].plate
        if filters.plate and len(lookup.plate_key(filters.plate)) >= 2:
            exact = [m for m in lookup.find_by_plate(conn, query=filters.plate) if m.exact]
            if exact:
                return exact[0].vehicle_id, exact[0].plate
        shown = {(e.vehicle_id, e.plate) for e in entries}
        return shown.pop() if len(shown) == 1 else None

    @staticmethod
    def _spans(
        conn: Any, vehicle: tuple[int, str], filters: audit.LogFilter
    ) -> list[audit.StatusSpan]:
        return audit.timeline(conn, vehicle_id=vehicle[0], since=filters.since, until=filters.until)

    async def reload(self, *, timeline: bool = False) -> None:
        """Re-read the page shown (and the timeline) off the event loop, then show it."""
        self._generation += 1
        generation = self._generation
        filters = self.filters()  # read the widgets here, not in the worker thread
        try:
            result = await self.ctx.aread(lambda c: self._load(c, filters, timeline=timeline))
        except FleetError as exc:
            self.ctx.toast("warning", str(exc))
            return
        if generation != self._generation:
            return  # the filters changed while this read ran; a newer read shows the page
        self._show(*result)
        self.ctx.fresh()

    def _show(
        self,
        entries: list[audit.LogEntry],
        total: int,
        vehicle: tuple[int, str] | None,
        spans: list[audit.StatusSpan] | None,
    ) -> None:
        self._entries, self._total = entries, total
        # The page is at most PAGE_SIZE rows and offsets shift as changes arrive, so the
        # whole page is replaced rather than patched.
        self.table.value = pd.DataFrame([self._row(e) for e in entries], columns=COLUMNS)
        at = [i for i, e in enumerate(entries) if e.id == self._selected_id]
        self.table.selection = at
        if not at:
            self._selected_id = None
        self.rollback.disabled = not self._can_roll_back()
        pages = max(1, -(-total // PAGE_SIZE))
        self._pager.object = (
            f"<b>{total:,}</b> change{'s' if total != 1 else ''}"
            f" &middot; page {self._page + 1} of {pages}"
        )
        self.newer.disabled = self._page == 0
        self.older.disabled = (self._page + 1) * PAGE_SIZE >= total
        f = self.filters()
        period = "the last 90 days" if f.since is None else "the chosen days"
        self._hint.object = (
            f"Showing {period}; days are counted in {html.escape(self.page_zone)} time."
            " Times in the table are each lot's local time."
        )
        self._vehicle = vehicle
        self._draw(vehicle, spans or [], f)

    def _local(self, moment: datetime, code: str | None) -> datetime:
        return moment.astimezone(zone(self._zones.get(code or "", "") or self.page_zone))

    def _row(self, e: audit.LogEntry) -> dict[str, Any]:
        lot = e.new_location_code or e.old_location_code
        return {
            "#": e.id,
            "when": self._local(e.changed_at, lot).strftime(WHEN),
            "plate": e.plate,
            "change": f"{words(e.old_status)} -> {words(e.new_status)}",
            "who": e.changed_by_name,
            "source": e.source,
            "reason": e.change_reason,
            "rolled back": f"yes, by #{e.reverted_by_log_id}" if e.reverted_by_log_id else "no",
        }

    # -- timeline ------------------------------------------------------------------------

    def _draw(
        self,
        vehicle: tuple[int, str] | None,
        spans: list[audit.StatusSpan],
        f: audit.LogFilter,
    ) -> None:
        if vehicle is None or not spans:
            self._timeline_title.object = (
                "<h3>Timeline</h3><p>Type a vehicle's plate or select a change to see the"
                " vehicle's statuses over the period.</p>"
            )
            self._legend.object = ""
            self._plot.objects = []
            return
        tz_name = spans[-1].time_zone or self.page_zone
        self._timeline_title.object = (
            f"<h3>Timeline of {html.escape(vehicle[1])}</h3>"
            f"<p>Times in {html.escape(tz_name)} (the vehicle's lot).</p>"
        )
        present = [s for s in STATUSES if any(sp.status == s for sp in spans)]
        self._legend.object = (
            "<div class='legend'>Legend:"
            + "".join(
                f"<span class='swatch' style='background:{COLOURS.get(s, '#999')}'></span>"
                f"<span class='status'>{html.escape(words(s))}</span>"
                for s in present
            )
            + "</div>"
        )
        figure = timeline_figure(spans, tz_name=tz_name, since=f.since, until=f.until)
        self._plot.objects = [pn.pane.Bokeh(figure, sizing_mode="stretch_width")]

    # -- rollback ------------------------------------------------------------------------

    def _selected(self) -> audit.LogEntry | None:
        return next((e for e in self._entries if e.id == self._selected_id), None)

    def _can_roll_back(self) -> bool:
        e = self._selected()
        return self.ctx.can_supervise and e is not None and e.reverted_by_log_id is None

    async def _on_select(self, event: Any) -> None:
        rows = event.new or []
        picked = self._entries[rows[0]] if rows and rows[0] < len(self._entries) else None
        self._selected_id = picked.id if picked else None
        self.rollback.disabled = not self._can_roll_back()
        if picked and (self._vehicle is None or self._vehicle[0] != picked.vehicle_id):
            vehicle = self._vehicle = (picked.vehicle_id, picked.plate)
            f = self.filters()
            spans = await self.ctx.aread(lambda c: self._spans(c, vehicle, f))
            self._draw(vehicle, spans, f)

    def _on_rollback(self, _event: Any) -> None:
        e = self._selected()
        if e is None or not self.ctx.can_supervise:
            return
        self._pending = e
        moved = ""
        if e.old_location_code != e.new_location_code and e.old_location_code:
            moved = (
                f" It is placed back at lot {html.escape(e.old_location_code)}"
                f" (now {html.escape(e.new_location_code or 'no lot')})."
            )
        self._confirm_text.object = (
            f"<p><b>{html.escape(e.plate)}</b> goes back from <b>{html.escape(words(e.new_status))}"
            f"</b> to <b>{html.escape(words(e.old_status))}</b>; this is recorded as a new change"
            f" by you ({html.escape(self.ctx.user.full_name)}), linked to change #{e.id}"
            f" ({html.escape(e.changed_by_name)}: &ldquo;{html.escape(e.change_reason)}&rdquo;)."
            f"{moved} Nothing is deleted from the log.</p>"
        )
        self._notice.object = ""
        self._confirm_box.visible = True

    def _on_cancel(self, _event: Any) -> None:
        self._pending = None
        self._confirm_box.visible = False

    async def _on_confirm(self, _event: Any) -> None:
        e, self._pending = self._pending, None
        self._confirm_box.visible = False
        if e is None:
            return
        refusal: list[str] = []
        reason = self.reason.value.strip() or "incorrect change"

        def undo(conn: Any) -> Any:
            try:
                return audit.rollback_change(
                    conn, log_id=e.id, rolled_back_by=self.ctx.user.id, reason=reason
                )
            except FleetError as exc:
                refusal.append(str(exc))  # kept on the page too: a toast fades
                raise

        done = self.ctx.act(
            undo,
            done=f"{e.plate} is {words(e.old_status)} again (change #{e.id} rolled back)",
            allowed=self.ctx.can_supervise,
        )
        if done is not None:
            self._notice.object = (
                f"<div class='notice success'>Rolled back change #{e.id}: {html.escape(e.plate)}"
                f" is {html.escape(words(done.status.status))} again (new change"
                f" #{done.log_id}).</div>"
            )
            self._selected_id = done.log_id
        elif refusal:
            self._notice.object = (
                f"<div class='notice error'>Not rolled back: {html.escape(refusal[0])}</div>"
            )
        await self.reload(timeline=True)

    # -- export --------------------------------------------------------------------------

    async def _on_export(self, _event: Any) -> None:
        if self._exporting:
            return
        self._exporting = True
        self.export.disabled = True
        self.download.visible = False
        self.progress.value = 0
        self.progress.visible = True
        try:
            await self._export()
        except FleetError as exc:
            self.ctx.toast("error", str(exc))
            self._export_status.object = "Export failed."
        finally:
            self._exporting = False
            self.export.disabled = False

    async def _export(self) -> None:
        """Read the filtered log in batches, each off the event loop, updating the progress."""
        started = datetime.now(UTC)
        f = self.filters()
        # Changes made while the export runs are left out, so the count and the rows agree.
        f = f.model_copy(update={"until": min(f.until or started, started)})
        total = await self.ctx.aread(lambda c: audit.count_history(c, filters=f))
        wanted = min(total, EXPORT_MAX)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        written = 0
        cursor: tuple[datetime, int] | None = None
        while written < wanted:
            size = min(EXPORT_BATCH, wanted - written)
            batch = await self.ctx.aread(
                lambda c, at=cursor, n=size: audit.history_batch(
                    c, filters=f, older_than=at, limit=n
                )
            )
            if not batch:
                break
            writer.writerows(self._csv_row(e) for e in batch)
            written += len(batch)
            cursor = (batch[-1].changed_at, batch[-1].id)
            self.progress.value = written * 100 // wanted
            self._export_status.object = f"Read {written:,} of {wanted:,} changes&hellip;"
        self.progress.value = 100
        note = (
            f" (the first {EXPORT_MAX:,} of {total:,}: narrow the filters)"
            if total > wanted
            else ""
        )
        self._export_status.object = (
            f"Exported {written:,} change{'s' if written != 1 else ''}{note}."
        )
        self.download.filename = f"audit-{started.strftime('%Y%m%d-%H%M%S')}.csv"
        self.download.file = io.BytesIO(out.getvalue().encode("utf-8"))
        self.download.label = f"Download CSV ({written:,} changes)"
        self.download.visible = True

    def _csv_row(self, e: audit.LogEntry) -> list[str]:
        lot = e.new_location_code or e.old_location_code
        local = self._local(e.changed_at, lot)
        return [
            csv_cell(v)
            for v in (
                e.id,
                e.changed_at.astimezone(UTC).isoformat(),
                local.isoformat(),
                local.tzinfo,
                e.plate,
                e.old_status,
                e.new_status,
                e.old_location_code,
                e.new_location_code,
                e.changed_by_name,
                e.source,
                e.change_reason,
                e.reverts_log_id,
                e.reverted_by_log_id,
            )
        ]

    # -- live ----------------------------------------------------------------------------

    def _matches(self, m: dict[str, Any], f: audit.LogFilter) -> bool:
        """Could this pushed change belong on the page? (The re-read applies the filters.)"""
        if m.get("kind") != "status_changed":
            return False
        # A rollback of a shown change flips its "rolled back" cell, whoever made the rollback.
        if any(e.vehicle_id == m.get("vehicle_id") for e in self._entries):
            return True
        if f.until is not None and f.until <= datetime.now(UTC):
            return False
        if f.user_id is not None and m.get("actor_id") != f.user_id:
            return False
        plate = str((m.get("data") or {}).get("plate", ""))
        return not f.plate or lookup.plate_key(f.plate) in lookup.plate_key(plate)

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        try:
            f = self.filters()
        except FleetError:
            return
        if any(self._matches(m, f) for m in messages):
            await self.reload()
            return
        vehicle = self._vehicle
        if vehicle and any(m.get("vehicle_id") == vehicle[0] for m in messages):
            spans = await self.ctx.aread(lambda c: self._spans(c, vehicle, f))
            self._draw(vehicle, spans, f)
            self.ctx.fresh()

    def __panel__(self) -> pn.viewable.Viewable:
        filters = pn.FlexBox(
            self.plate,
            self.user,
            self.location,
            self.since,
            self.until,
            self.clear,
            align_items="flex-end",
            sizing_mode="stretch_width",
        )
        # Only managers and admins get the button at all; the server checks again on confirm.
        rollback = [self.rollback] if self.ctx.can_supervise else []
        actions = pn.FlexBox(
            self._pager,
            self.newer,
            self.older,
            *rollback,
            self.export,
            align_items="center",
            sizing_mode="stretch_width",
        )
        export = pn.FlexBox(
            self.progress,
            self._export_status,
            self.download,
            align_items="center",
            sizing_mode="stretch_width",
        )
        return pn.Column(
            filters,
            self._hint,
            actions,
            self._confirm_box,
            self._notice,
            export,
            self.table,
            self._timeline_title,
            self._legend,
            self._plot,
            sizing_mode="stretch_width",
        )


def timeline_figure(
    spans: list[audit.StatusSpan],
    *,
    tz_name: str,
    since: datetime | None,
    until: datetime | None,
) -> Any:
    """Draw a vehicle's statuses as coloured horizontal bars, one per span, with hover."""
    tz = zone(tz_name)
    now = datetime.now(UTC)
    start = since or now - audit.HISTORY_WINDOW
    end = min(until or now, now)

    def wall(moment: datetime) -> datetime:
        # Bokeh draws datetimes as UTC; wall-clock times make the axis read as lot time.
        return moment.astimezone(tz).replace(tzinfo=None)

    def label(moment: datetime | None) -> str:
        return "now" if moment is None else moment.astimezone(tz).strftime(WHEN)

    data: dict[str, list[Any]] = {
        k: [] for k in ("status", "left", "right", "colour", "from", "to", "who", "reason")
    }
    for s in spans:
        left = max(s.started_at, start)
        right = min(s.ended_at or end, end)
        if right < left:
            right = left
        data["status"].append(words(s.status))
        data["left"].append(wall(left))
        data["right"].append(wall(right))
        data["colour"].append(COLOURS.get(s.status, "#999999"))
        data["from"].append(label(s.started_at))
        data["to"].append(label(s.ended_at))
        data["who"].append(s.changed_by_name)
        data["reason"].append(s.change_reason)
    present = [words(s) for s in STATUSES if any(sp.status == s for sp in spans)]
    fig = figure(
        y_range=FactorRange(factors=list(reversed(present))),
        x_axis_type="datetime",
        height=90 + 42 * len(present),
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,reset",
        toolbar_location="above",
    )
    fig.hbar(
        y="status",
        left="left",
        right="right",
        height=0.6,
        fill_color="colour",
        line_color="#333333",
        source=ColumnDataSource(data),
    )
    fig.add_tools(
        HoverTool(
            tooltips=[
                ("status", "@status"),
                ("from", "@from"),
                ("to", "@to"),
                ("who", "@who"),
                ("why", "@reason"),
            ]
        )
    )
    fig.xaxis.axis_label = f"time in {tz_name}"
    fig.ygrid.grid_line_color = None
    return fig
