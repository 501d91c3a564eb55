"""Ingest feed files from the inbox: parse with polars, load in bulk, apply through the engine.

Each file is one transaction: it is registered by content hash, its bad rows quarantined, its
good rows loaded and applied, its counts recorded, all or nothing. A file seen before (same
bytes) is a no-op. A file that cannot be read, or whose load fails for anything but a
passing database trouble, is registered as rejected with one reason instead: one bad file
never stops the others. Files in a local inbox move to `processed/<day>/` once done, or to
`rejected/<day>/`, so the inbox only holds what is new; a remote inbox (any fsspec URL) is
left as it is and the hash keeps replays harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec
import psycopg
from sqlalchemy import Engine, exc, text

from db import contracts, feeds
from db.errors import Locked
from fleet.settings import Settings, get_settings
from pipeline.feeds import FEEDS, FeedFileError, detect
from pipeline.feeds.base import MissingColumns, TimeWindow

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]

# Contracts first: a return or transfer in the same batch may name a contract just created.
FEED_ORDER = ("contracts", "transfers", "maintenance", "returns")
INGEST_LOCK = 7340036
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout
# SQLSTATE classes that say nothing about the file: the connection, a deadlock or
# serialization failure, resources, a lock or statement timeout, a shutting-down server.
# The flow's retry meets them again later; a file is never set aside for them.
TRANSIENT_SQLSTATE = ("08", "40", "53", "55", "57", "58")
_logger = logging.getLogger(__name__)


@dataclass
class FileResult:
    """What happened to one file."""

    name: str
    feed: str | None
    status: str  # loaded | duplicate | rejected (registered, set aside) | unreadable (no feed)
    file_id: int | None = None
    rows: int = 0
    applied: int = 0
    stale: int = 0
    rejected: int = 0
    conflicted: int = 0
    seconds: float = 0.0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None  # why a file was rejected, not a feed, or gave no rows


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
        aside = sum(f.status == "rejected" for f in self.files)
        bad = sum(f.status == "unreadable" for f in self.files)
        return (
            f"{len(self.files)} files ({loaded} loaded, {dup} already ingested, {aside} set"
            f" aside, {bad} not feeds): {self.total('rows')} rows, {self.total('applied')}"
            f" applied, {self.total('stale')} stale, {self.total('rejected')} rejected,"
            f" {self.total('conflicted')} conflicts"
        )

    def describe_set_aside(self) -> str | None:
        """Name the files set aside as rejected and why, or None when there are none."""
        aside = [f for f in self.files if f.status == "rejected"]
        if not aside:
            return None
        return "set aside in rejected/: " + "; ".join(
            f"{posixpath.basename(f.name)} ({f.note})" for f in aside
        )


def ingest_file(
    engine: Engine,
    *,
    name: str,
    data: bytes,
    now: datetime | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> FileResult:
    """Load one feed file in one transaction; see the module docstring.

    A file whose load fails for a reason of its own is registered as rejected with that
    reason (status `rejected`) rather than raising; only passing database trouble (a lost
    connection, a lock timeout, ...) raises, for the caller's retry.
    """
    started = time.perf_counter()
    base = posixpath.basename(name)
    try:
        feed, fmt = detect(base)
    except ValueError as e:
        # Not one of our feeds by name: nothing is registered (there is no feed to file it
        # under); the caller leaves it in the inbox and the log says why.
        return FileResult(name=name, feed=None, status="unreadable", note=str(e))
    settings = settings or get_settings()
    window = TimeWindow(
        back=timedelta(days=settings.feed_days_back), ahead=timedelta(days=settings.feed_days_ahead)
    )
    digest = hashlib.sha256(data).digest()
    try:
        result = _load(engine, name, feed, fmt, data, digest, window, now, log, progress)
    except Exception as e:
        if _transient(e):
            raise
        _logger.debug("loading %s failed", name, exc_info=True)  # for whoever fixes the code
        reason = (
            f"the file could not be loaded ({_first_line(e)}): it was set aside; fix it and"
            " send it again"
        )
        result = _reject_file(engine, name, feed, fmt, data, digest, reason)
    result.seconds = time.perf_counter() - started
    if result.status == "rejected":
        _say(log, f"{name}: rejected: {result.note}")
    elif result.status == "loaded":
        _say(
            log,
            f"{name}: {result.applied} applied, {result.stale} stale, {result.rejected} rejected,"
            f" {result.conflicted} conflicts in {result.seconds:.1f} s"
            + (f" ({result.note})" if result.note else ""),
        )
    return result


def _take_ingest_lock(conn: Any, name: str) -> None:
    """Wait for the feed loader's lock, at most the session's lock timeout, then say why not."""
    try:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
    except exc.OperationalError as e:
        if getattr(e.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise Locked(
            f"{name} waits for another ingest that still holds the feed lock (a run in progress,"
            " or a client that died mid-file whose session PostgreSQL has not ended yet)",
            hint="the file stays in the inbox; the run's retry (or the next run) loads it once"
            " the lock is free (FLEET_DB_LOCK_TIMEOUT_SECONDS sets the wait)",
        ) from None


def _load(engine, name, feed, fmt, data, digest, window, now, log, progress) -> FileResult:
    with engine.begin() as conn:
        file_id = feeds.register_file(
            conn, feed=feed, name=name, fmt=fmt, sha256=digest, size=len(data)
        )
        if file_id is None:
            return FileResult(name=name, feed=feed, status="duplicate")
        # One loader at a time: two runs must not apply the same contract version twice.
        _take_ingest_lock(conn, name)
        plates, codes = feeds.known_references(conn)
        clock = now or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        result = FileResult(name=name, feed=feed, status="loaded", file_id=file_id)
        try:
            parsed = FEEDS[feed].parse(
                data, fmt=fmt, known_plates=plates, known_locations=codes, now=clock, window=window
            )
        except FeedFileError as e:
            return _rejected(conn, result, _file_reason(e, feed))
        except Exception as e:  # polars raises several kinds for a file that is not CSV/JSON
            return _rejected(conn, result, f"the file could not be read as {fmt}: {_first_line(e)}")
        result.note = parsed.note
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
    return result


def _rejected(conn, result: FileResult, reason: str) -> FileResult:
    """Record the whole file as one reject with `reason`, in the transaction that registered it."""
    feeds.quarantine(conn, file_id=result.file_id, feed=result.feed, rejects=[(1, {}, reason)])
    feeds.finish_file(
        conn, file_id=result.file_id, total=0, applied=0, stale=0, rejected=1, conflicted=0
    )
    result.status, result.note, result.rejected = "rejected", reason, 1
    return result


def _reject_file(engine, name, feed, fmt, data, digest, reason: str) -> FileResult:
    # The failed load rolled back, registration included: register the file anew, rejected.
    with engine.begin() as conn:
        file_id = feeds.register_file(
            conn, feed=feed, name=name, fmt=fmt, sha256=digest, size=len(data)
        )
        if file_id is None:  # another run registered the same bytes meanwhile
            return FileResult(name=name, feed=feed, status="duplicate")
        result = FileResult(name=name, feed=feed, status="loaded", file_id=file_id)
        return _rejected(conn, result, reason)


def _file_reason(error: FeedFileError, feed: str) -> str:
    reason = str(error)
    if isinstance(error, MissingColumns):
        fits = [
            other
            for other, module in FEEDS.items()
            if other != feed and set(module.REQUIRED) <= set(error.columns)
        ]
        if fits:
            reason += f": these are the columns of a {fits[0]} file; name it {fits[0]}-....csv"
        else:
            reason += f": a {feed} file needs {', '.join(FEEDS[feed].REQUIRED)}"
    return reason


def _transient(error: BaseException) -> bool:
    """Whether a failure is the database's passing trouble rather than the file's fault."""
    if isinstance(error, Locked):  # another run (or a dead client's session) has the lock
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free
        return True
    cause = getattr(error, "orig", None) or error
    if isinstance(cause, psycopg.Error):
        if cause.sqlstate is None:  # no answer from the server at all
            return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
        return cause.sqlstate[:2] in TRANSIENT_SQLSTATE
    return isinstance(error, exc.OperationalError | exc.InterfaceError)


def _first_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    diag = getattr(cause, "diag", None)
    message = (diag and diag.message_primary) or str(cause) or type(cause).__name__
    return message.splitlines()[0][:300]


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
    """Ingest every file waiting in the inbox; move local ones to processed/ or rejected/.

    Each file is guarded on its own: one that cannot be read or loaded is set aside and the
    run goes on with the next. A file that is no feed by its name is noted once (until it
    changes), not in every run.
    """
    fs, names = inbox_files(settings.inbox_location)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    summary = IngestSummary()
    others: dict[str, tuple[int, str]] = {}
    for path in names:
        try:
            try:
                detect(posixpath.basename(path))
            except ValueError as e:
                others[path] = (int(fs.size(path) or 0), str(e))
                continue
            data = fs.cat_file(path)
        except FileNotFoundError:
            # Listed, then moved by another run (a manual run beside the schedule, a second
            # worker): that run has it, this one has nothing to do with it.
            _say(log, f"{path}: taken by another ingest run meanwhile")
            continue
        except OSError as e:  # not readable (permissions, a remote store's trouble)
            _say(log, f"{path}: could not be read from the inbox: {e}")
            continue
        result = ingest_file(
            engine, name=path, data=data, now=now, log=log, progress=progress, settings=settings
        )
        summary.files.append(result)
        if local and result.status in ("loaded", "duplicate", "rejected"):
            folder = "rejected" if result.status == "rejected" else "processed"
            moved = _move(fs, path, folder)
            if result.status == "rejected":
                _say(log, f"{path}: set aside in {moved}: {result.note}")
    _note_other_files(engine, others, summary, log)
    _say(log, summary.describe())
    return summary


def _move(fs: Any, path: str, folder: str) -> str:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    target = posixpath.join(posixpath.dirname(path), folder, day)
    fs.makedirs(target, exist_ok=True)
    # Another run may have moved it first; the content hash kept its rows loaded once.
    with contextlib.suppress(FileNotFoundError):
        fs.mv(path, posixpath.join(target, posixpath.basename(path)))
    return f"{folder}/{day}/"


def _note_other_files(
    engine: Engine,
    others: dict[str, tuple[int, str]],
    summary: IngestSummary,
    log: Log | None,
) -> None:
    """Report files that are no feed once each (again only when one changes size)."""
    sizes = {path: size for path, (size, _) in others.items()}
    with engine.begin() as conn:
        noted = feeds.noted_inbox_files(conn)
        if noted == sizes:
            return
        for path, (size, why) in others.items():
            if noted.get(path) != size:
                summary.files.append(
                    FileResult(name=path, feed=None, status="unreadable", note=why)
                )
                _say(log, f"{path}: left in the inbox, not loaded: {why}")
        feeds.set_noted_inbox_files(conn, sizes)
