"""`fleet feeds`: ingest feed files now, list received files, and the rejects report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from db import feeds
from fleet.cli import common
from fleet.cli.common import (
    JsonFlag,
    console,
    plain,
    print_json,
    reporting,
    table,
)
from fleet.settings import get_settings
from pipeline import ingest

app = typer.Typer(
    help="Feed files from the contract, maintenance, return and transfer systems.",
    no_args_is_help=True,
)


def _print_table(title: str, headers: list[str], rows: list[list], wrap: tuple = ()) -> None:
    out = table(title, headers, wrap=wrap)
    for row in rows:
        out.add_row(*(str(v) for v in row))
    console().print(out)


@app.command("ingest")
def ingest_command(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Files to ingest (default: everything waiting in the inbox)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ingest feed files now: the inbox (FLEET_INBOX, default .data/inbox) or the given files."""
    settings = get_settings()
    bar, progress = common.progress_bar(as_json)
    with reporting(as_json=as_json):
        engine = common.engine()
        with bar:
            if files:
                results = []
                for path in files:
                    if not path.is_file():
                        raise typer.BadParameter(f"{path} is not a file", param_hint="FILES")
                    results.append(
                        ingest.ingest_file(
                            engine, name=str(path), data=path.read_bytes(), progress=progress
                        )
                    )
                summary = ingest.IngestSummary(files=results)
            else:
                summary = ingest.ingest_inbox(engine, settings, progress=progress)
    if as_json:
        print_json({"files": [plain(f) for f in summary.files]})
        return
    rows = [
        [
            Path(f.name).name,
            f.feed or "?",
            f.status,
            f.rows,
            f.applied,
            f.stale,
            f.rejected,
            f.conflicted,
            f"{f.seconds:.1f} s",
        ]
        for f in summary.files
    ]
    headers = [
        "file",
        "feed",
        "status",
        "rows",
        "applied",
        "stale",
        "rejected",
        "conflicts",
        "took",
    ]
    _print_table("ingested", headers, rows)
    console().print(summary.describe())
    for f in summary.files:
        if f.note:
            console().print(f"[yellow]{Path(f.name).name}: {f.note}[/yellow]")
        for c in f.conflicts:
            console().print(f"[yellow]{Path(f.name).name}: {c.get('reason')}[/yellow]")
    if any(f.rejected for f in summary.files):
        console().print("see the rows set aside and why: fleet feeds rejects")


@app.command("files")
def files_command(
    feed: Annotated[str | None, typer.Option(help="Only this feed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """List received feed files, newest first, with what became of their rows."""
    with common.transaction(as_json=as_json) as conn:
        if feed:
            feeds.require_feed(feed)
        found = feeds.list_files(conn, feed=feed, limit=limit)
    if as_json:
        print_json([f.model_dump(mode="json") for f in found])
        return
    rows = [
        [
            f.id,
            f.feed,
            Path(f.name).name,
            common.local(f.received_at, "UTC"),
            f.rows_total,
            f.rows_applied,
            f.rows_stale,
            f.rows_rejected,
            f.rows_conflicted,
        ]
        for f in found
    ]
    headers = [
        "id",
        "feed",
        "file",
        "received",
        "rows",
        "applied",
        "stale",
        "rejected",
        "conflicts",
    ]
    _print_table("feed files", headers, rows)


@app.command("rejects")
def rejects_command(
    file: Annotated[int | None, typer.Option("--file", help="Only this file id.")] = None,
    feed: Annotated[str | None, typer.Option(help="Only this feed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 200,
    as_json: JsonFlag = False,
) -> None:
    """The rejects report: every quarantined row with its file, line, raw values and reason."""
    with common.transaction(as_json=as_json) as conn:
        if feed:
            feeds.require_feed(feed)
        found = feeds.list_rejects(conn, file_id=file, feed=feed, limit=limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in found])
        return
    if not found:
        console().print("no rejected rows")
        return
    rows = [
        [
            Path(r.file_name).name,
            r.line,
            r.reason,
            ", ".join(f"{k}={v}" for k, v in r.raw.items() if v not in (None, ""))[:80],
        ]
        for r in found
    ]
    _print_table("rejected rows", ["file", "line", "reason", "raw"], rows, wrap=("reason", "raw"))


@app.command("demo")
def demo_command(
    inbox: Annotated[
        Path | None, typer.Option(help="Folder to write into (default: the inbox).")
    ] = None,
    seed: Annotated[int, typer.Option()] = 7,
    once: Annotated[
        bool,
        typer.Option("--once", help="Only when no feed file was ever received (for make run)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write realistic feed files for the current fleet into the inbox (for demos and trials)."""
    from pipeline.feeds.demo import write_demo_feeds

    target = inbox or Path(get_settings().inbox_location)
    with common.transaction(as_json=as_json) as conn:
        if once and (feeds.list_files(conn, limit=1) or any(target.glob("*.*"))):
            written = []
        else:
            written = write_demo_feeds(conn, target, seed=seed)
    if as_json:
        print_json([str(p) for p in written])
        return
    for path in written:
        console().print(f"wrote {path}")
