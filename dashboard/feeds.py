"""Feeds: import a feed file by hand with progress, see what came in and what was quarantined.

The pipeline ingests the inbox every minute; this page is for the file someone e-mails a
manager ("the maintenance system was down, here is today's list"). It goes through the same
loader as the pipeline (one transaction, duplicates ignored by content hash, bad rows
quarantined with the reason), so nothing the page does bypasses the checks.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import pandas as pd
import panel as pn

from dashboard.shell import PageContext, View
from db import feeds, fleet
from db.timeutil import zone
from pipeline.ingest import FileResult, ingest_file

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
STAGES = {"staging": "reading rows", "applying": "applying contracts"}


def files_frame(files: list[feeds.FeedFile], tz_name: str) -> pd.DataFrame:
    """Recent files in the viewer's zone, newest first."""
    tz = zone(tz_name)
    rows = [
        {
            "id": f.id,
            "file": f.name,
            "feed": f.feed,
            "received": f.received_at.astimezone(tz).strftime("%d %b %H:%M %Z"),
            "rows": f.rows_total,
            "applied": f.rows_applied,
            "stale": f.rows_stale,
            "rejected": f.rows_rejected,
            "conflicts": f.rows_conflicted,
        }
        for f in files
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "id",
            "file",
            "feed",
            "received",
            "rows",
            "applied",
            "stale",
            "rejected",
            "conflicts",
        ],
    )


def describe(result: FileResult) -> str:
    """What happened to an imported file, in a sentence staff understand."""
    if result.status == "duplicate":
        return f"{result.name}: this exact file was imported before; nothing changed."
    if result.status == "unreadable":
        return f"{result.name}: not imported. {result.note or 'The file could not be read.'}"
    return (
        f"{result.name}: {result.rows} rows, {result.applied} applied, {result.stale} already"
        f" newer, {result.rejected} quarantined, {result.conflicted} conflicts"
        f" ({result.seconds:.1f} s)."
    )


class FeedsView(View):
    """Upload a feed file (managers), watch it load, and browse files and quarantined rows."""

    title = "Feeds and imports"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._tz = "UTC"
        if ctx.user.home_location_id is not None:
            self._tz = ctx.read(
                lambda c: fleet.get_location(c, id=ctx.user.home_location_id)
            ).time_zone
        self._upload = pn.widgets.FileInput(
            accept=".csv,.ndjson,.jsonl", multiple=False, css_classes=["feed-upload"]
        )
        self._import = pn.widgets.Button(
            label="Import file", color="primary", css_classes=["feed-import"], height=44
        )
        self._import.on_click(self._on_import)
        self._progress = pn.indicators.Progress(
            value=0,
            max=100,
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["feed-progress"],
        )
        self._stage = pn.pane.HTML("", css_classes=["feed-stage"])
        self._result = pn.pane.HTML("", css_classes=["feed-result"])
        self._files = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            selectable=1,
            sizing_mode="stretch_width",
            pagination="local",
            page_size=15,
            css_classes=["feed-files"],
        )
        self._files.param.watch(self._on_select, "selection")
        self._rejects = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            sizing_mode="stretch_width",
            pagination="local",
            page_size=15,
            css_classes=["feed-rejects"],
        )
        self._refresh = pn.widgets.Button(label="Refresh", height=44)
        self._refresh.on_click(lambda _e: self._load_files())
        self._load_files()

    def _load_files(self) -> None:
        files = self.ctx.read(lambda c: feeds.list_files(c, limit=100))
        self._files.value = files_frame(files, self._tz)
        self.ctx.fresh()

    def _on_select(self, event: Any) -> None:
        if not event.new:
            self._rejects.value = pd.DataFrame()
            return
        file_id = int(self._files.value.iloc[event.new[0]]["id"])
        rejects = self.ctx.read(lambda c: feeds.list_rejects(c, file_id=file_id, limit=1000))
        self._rejects.value = pd.DataFrame(
            [
                {
                    "line": r.line,
                    "reason": r.reason,
                    "values": ", ".join(f"{k}={v}" for k, v in r.raw.items()),
                }
                for r in rejects
            ],
            columns=["line", "reason", "values"],
        )

    async def _on_import(self, _event: Any) -> None:
        if not self.ctx.can_supervise:
            self.ctx.toast("error", f"your role ({self.ctx.user.role}) cannot import feed files")
            return
        data, name = self._upload.value, self._upload.filename
        if not data or not name:
            self.ctx.toast("error", "choose a feed file first (contracts-, maintenance-, ...)")
            return
        if len(data) > MAX_UPLOAD_BYTES:
            self.ctx.toast("error", "the file is larger than 50 MB: put it in the inbox instead")
            return
        if not await asyncio.to_thread(self.ctx.still_signed_in):
            return
        self._import.disabled = True
        self._progress.value, self._progress.visible = 0, True
        self._stage.object = f"<p>Importing {html.escape(name)}…</p>"
        doc = self.ctx.doc

        def progress(stage: str, done: int, total: int) -> None:
            # Called from the loader's thread: hand the numbers to the session's own tick.
            percent = int(100 * done / total) if total else 100
            words = STAGES.get(stage, f"applying {stage} records")
            doc.add_next_tick_callback(lambda: self._show(percent, words, done, total))

        try:
            result = await asyncio.to_thread(
                ingest_file, self.ctx.state.engine, name=name, data=data, progress=progress
            )
        except Exception:  # the loader rolled back: say so, never show a traceback
            self.ctx.toast("error", f"{name}: import failed and nothing was written")
            self._stage.object = ""
            self._progress.visible = False
        else:
            self._progress.value = 100
            self._stage.object = "<p>Done.</p>"
            self._result.object = f"<p>{html.escape(describe(result))}</p>"
            level = "success" if result.status == "loaded" and not result.rejected else "warning"
            self.ctx.toast(level, describe(result))
            self._load_files()
        finally:
            self._import.disabled = False

    def _show(self, percent: int, words: str, done: int, total: int) -> None:
        self._progress.value = max(self._progress.value, min(percent, 99))
        self._stage.object = f"<p>{html.escape(words)}: {done:,} of {total:,}</p>"

    def __panel__(self) -> pn.viewable.Viewable:
        parts: list[Any] = []
        if self.ctx.can_supervise:
            parts += [
                pn.pane.HTML(
                    "<h3>Import a feed file</h3><p>Name it like the inbox files:"
                    " <code>contracts-…</code>, <code>maintenance-…</code>, <code>returns-…</code>"
                    " or <code>transfers-…</code>, ending in .csv, .ndjson or .jsonl"
                    " (formats: docs/feeds.md). The same file twice changes nothing.</p>"
                ),
                pn.Row(self._upload, self._import, sizing_mode="stretch_width"),
                self._progress,
                self._stage,
                self._result,
            ]
        parts += [
            pn.Row(pn.pane.HTML("<h3>Received files</h3>"), self._refresh),
            self._files,
            pn.pane.HTML("<h3>Quarantined rows of the selected file</h3>"),
            self._rejects,
        ]
        return pn.Column(*parts, sizing_mode="stretch_width")
