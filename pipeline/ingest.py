"""Ingest feed files from the inbox: parse with polars, load in bulk, apply through the engine.

Each file is one transaction: it is registered by content hash, its bad rows quarantined, its
good rows loaded and applied, its counts recorded, all or nothing. A file seen before (same
bytes) is a no-op. Files in a local inbox move to `processed/<day>/` once done, so the inbox
only holds what is new; a remote inbox (any fsspec URL) is left as it is and the hash keeps
replays harmless.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fsspec
from sqlalchemy import Engine, text

from db import contracts, feeds
from fleet.settings import Settings
from pipeline.feeds import FEEDS, detect

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]

# Contracts first: a return or transfer in the same batch may name a contract just created.
FEED_ORDER = ("contracts", "transfers", "maintenance", "returns")
INGEST_LOCK = 7340036


@dataclass
class FileResult:
    """What happened to one file."""

    name: str
    feed: str | None
    status: str  # loaded | duplicate | unreadable
    file_id: int | None = None
    rows: int = 0
    applied: int = 0
    stale: int = 0
    rejected: int = 0
    conflicted: int = 0
    seconds: float = 0.0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None  # why a file was not loaded


@dataclass
class IngestSummary:
    """Every file of one run."""

    files: list[FileResult] = field(default_factory=list)

    def total(self, name: str) -> int:
        """Sum one count over the files."""
        return sum(getattr(f, name) for f in self.files)

    def describe(self) -> str:
        """One line for logs."""
        loaded = sum(f.status == "loaded" for f in self.files)
        dup = sum(f.status == "duplicate" for f in self.files)
        bad = sum(f.status == "unreadable" for f in self.files)
        return (
            f"{len(self.files)} files ({loaded} loaded, {dup} already ingested, {bad} unreadable):"
            f" {self.total('rows')} rows, {self.total('applied')} applied,"
            f" {self.total('stale')} stale, {self.total('rejected')} rejected,"
            f" {self.total('conflicted')} conflicts"
        )


def ingest_file(
    engine: Engine,
    *,
    name: str,
    data: bytes,
    now: datetime | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
) -> FileResult:
    """Load one feed file in one transaction; see the module docstring."""
    started = time.perf_counter()
    base = posixpath.basename(name)
    try:
        feed, fmt = detect(base)
    except ValueError as exc:
        # Not one of our feeds by name: nothing is registered (there is no feed to file it
        # under); the caller leaves it in the inbox and the log says why.
        return FileResult(name=name, feed=None, status="unreadable", note=str(exc))
    digest = hashlib.sha256(data).digest()
    with engine.begin() as conn:
        file_id = feeds.register_file(
            conn, feed=feed, name=name, fmt=fmt, sha256=digest, size=len(data)
        )
        if file_id is None:
            return FileResult(name=name, feed=feed, status="duplicate")
        # One loader at a time: two runs must not apply the same contract version twice.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
        plates, codes = feeds.known_references(conn)
        clock = now or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        result = FileResult(name=name, feed=feed, status="loaded", file_id=file_id)
        try:
            parsed = FEEDS[feed].parse(
                data, fmt=fmt, known_plates=plates, known_locations=codes, now=clock
            )
        except Exception as exc:  # polars raises several kinds for a file that is not CSV/JSON
            reason = f"the file could not be read as {fmt}: {str(exc).splitlines()[0][:300]}"
            feeds.quarantine(conn, file_id=file_id, feed=feed, rejects=[(1, {}, reason)])
            feeds.finish_file(
                conn, file_id=file_id, total=0, applied=0, stale=0, rejected=1, conflicted=0
            )
            return FileResult(name=name, feed=feed, status="unreadable", file_id=file_id)
        result.rows = parsed.rows.height + len(parsed.rejects)
        result.rejected = feeds.quarantine(
            conn,
            file_id=file_id,
            feed=feed,
            rejects=((r.line, r.raw, r.reason) for r in parsed.rejects),
        )
        _say(log, f"{name}: {result.rows} rows, {result.rejected} rejected by validation")
        if feed == "contracts":
            _load_contracts(conn, parsed.rows, result, clock, log, progress)
        else:
            _load_records(conn, feed, parsed.rows, result, clock, progress)
        feeds.finish_file(
            conn,
            file_id=file_id,
            total=result.rows,
            applied=result.applied,
            stale=result.stale,
            rejected=result.rejected,
            conflicted=result.conflicted,
        )
    result.seconds = time.perf_counter() - started
    _say(
        log,
        f"{name}: {result.applied} applied, {result.stale} stale, {result.rejected} rejected,"
        f" {result.conflicted} conflicts in {result.seconds:.1f} s",
    )
    return result


def _load_contracts(conn, rows, result: FileResult, clock, log, progress) -> None:
    file_id = result.file_id
    contracts.stage(conn, rows, progress=_stage(progress, "staging"))
    upserted = contracts.upsert_staged(conn, file_id=file_id, now=clock)
    changed, result.stale = upserted.changed, upserted.stale
    _say(
        log,
        f"{result.name}: {changed} contract versions are new, {result.stale} stale;"
        f" {upserted.reserved} new contracts reserved in bulk",
    )
    applied = contracts.apply_pending(conn, now=clock, progress=_stage(progress, "applying"))
    refused = [
        (r["line"], r["raw"], r["reason"]) for r in applied.refused if r.get("file_id") == file_id
    ]
    result.rejected += feeds.quarantine(conn, file_id=file_id, feed="contracts", rejects=refused)
    result.conflicted = len(applied.conflicts)
    result.conflicts = applied.conflicts
    result.applied = max(0, changed - result.conflicted - len(applied.refused))


def _load_records(conn, feed: str, rows, result: FileResult, clock, progress) -> None:
    file_id = result.file_id
    records = rows.to_dicts()
    _changed, result.stale = feeds.upsert_records(conn, feed=feed, file_id=file_id, records=records)
    applied = feeds.apply_records(conn, feed=feed, now=clock, progress=_stage(progress, feed))
    refused = [
        (r["line"], r["raw"], r["reason"]) for r in applied.refused if r.get("file_id") == file_id
    ]
    result.rejected += feeds.quarantine(conn, file_id=file_id, feed=feed, rejects=refused)
    result.conflicted = len(applied.conflicts)
    result.conflicts = applied.conflicts
    result.applied = applied.applied


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def _say(log: Log | None, message: str) -> None:
    if log:
        log(message)


def inbox_files(location: str) -> tuple[Any, list[str]]:
    """Return the inbox's filesystem and its feed files, in the order they should load."""
    fs, root = fsspec.core.url_to_fs(location)
    if not fs.exists(root):
        fs.makedirs(root, exist_ok=True)
    names = [
        p
        for p in fs.ls(root, detail=False)
        if fs.isfile(p) and not posixpath.basename(p).startswith((".", "~"))
    ]

    def order(path: str) -> tuple[int, str]:
        base = posixpath.basename(path)
        try:
            return FEED_ORDER.index(detect(base)[0]), base
        except ValueError:
            return len(FEED_ORDER), base

    return fs, sorted(names, key=order)


def ingest_inbox(
    engine: Engine,
    settings: Settings,
    *,
    log: Log | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> IngestSummary:
    """Ingest every file waiting in the inbox; move local ones to processed/ when done."""
    fs, names = inbox_files(settings.inbox_location)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    summary = IngestSummary()
    for path in names:
        data = fs.cat_file(path)
        result = ingest_file(engine, name=path, data=data, now=now, log=log, progress=progress)
        summary.files.append(result)
        if result.feed is None:
            _say(log, f"{path}: left in the inbox: {result.note}")
            continue
        if local:
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            target = posixpath.join(posixpath.dirname(path), "processed", day)
            fs.makedirs(target, exist_ok=True)
            fs.mv(path, posixpath.join(target, posixpath.basename(path)))
    _say(log, summary.describe())
    return summary
