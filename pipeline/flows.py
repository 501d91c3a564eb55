"""Prefect flows: thin, scheduled wrappers over the pipeline's plain, tested functions.

Each flow reads the settings when it starts, gets this process's engine for the configured
database (the embedded one under FLEET_DATA_DIR when FLEET_DATABASE_URL is unset), calls one
plain function and logs what it did. Retries cover the transient failures a scheduled job
meets (the database restarting, a lock timeout); every function called is safe to run twice
at once, so a retry or an overlapping run never does the work twice (see docs/architecture.md,
"Pipeline").

The ingest, notification and archive functions are imported inside their flows: importing
this module (the CLI, `prefect deploy`) needs none of their dependencies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefect import Flow, Task, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from pydantic import BaseModel
from sqlalchemy import Connection, Engine

from db.conflicts import ConflictRefresh, refresh_conflicts
from db.database import make_engine, resolve_url, session_options
from db.errors import InvalidInput
from db.feeds import finish_prep
from db.overdue import RefreshSummary, configured_thresholds, refresh_overdue
from fleet.settings import Settings
from pipeline.materialize import MaterializeSummary, materialize_incremental

# Schedules, as `Flow.to_deployment` takes them; prefect.yaml repeats them for workers
# (tests/pipeline/test_flows.py keeps the two in step).
SCHEDULES: dict[str, dict[str, Any]] = {
    "ingest-feeds": {"interval": timedelta(minutes=1)},
    "materialize-availability": {"interval": timedelta(minutes=5)},
    "refresh-overdue": {"interval": timedelta(minutes=1)},
    "deliver-notifications": {"interval": timedelta(minutes=1)},
    "archive-history": {"cron": "0 3 * * *"},
}


def schedule_text(name: str) -> str:
    """Say when a flow runs: "every 1 min", "cron 0 3 * * * (UTC)"."""
    schedule = SCHEDULES[name]
    if "cron" in schedule:
        return f"cron {schedule['cron']} (UTC)"
    minutes = int(schedule["interval"].total_seconds() // 60)
    return f"every {minutes} min"


# A failed run is tried again twice, a little later: long enough for a restarting database.
RETRIES = 2
RETRY_DELAY_SECONDS = 20

_engines: dict[str, Engine] = {}


def current_settings() -> Settings:
    """Return the settings from the environment as they are when a run starts."""
    return Settings()


def engine_for(settings: Settings) -> Engine:
    """Return this process's engine for the configured database (one per URL, reused)."""
    url = resolve_url(settings.database_url, settings.data_dir)
    if url not in _engines:
        # A flow runs one statement at a time; a handful of connections is plenty. A flow that
        # meets a lock fails within a minute, saying so (its retry then finds it free); one
        # stuck statement, or a session idle in its transaction, ends (a client died).
        options = session_options(
            lock_timeout_s=settings.db_lock_timeout_seconds,
            statement_timeout_s=settings.db_statement_timeout_seconds,
            idle_in_transaction_s=settings.db_idle_in_transaction_seconds,
        )
        _engines[url] = make_engine(url, pool_size=2, max_overflow=3, options=options)
    return _engines[url]


Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class _Direct:
    """Where a run outside Prefect (`fleet pipeline run` with no server) reports to."""

    log: Callable[[str], None]
    progress: Progress | None


_direct: ContextVar[_Direct | None] = ContextVar("fleet_direct_run", default=None)


class _DirectLogger(logging.LoggerAdapter[logging.Logger]):
    """A run logger for runs outside Prefect: each line goes to the caller's log callback."""

    def __init__(self, direct: _Direct) -> None:
        super().__init__(logging.getLogger("pipeline.flows"))
        self.direct = direct

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        self.direct.log(text if level < logging.WARNING else f"warning: {text}")


def _logger() -> Any:
    """The run's logger: Prefect's in a flow run, the caller's callback in a direct run."""
    direct = _direct.get()
    if direct is not None and FlowRunContext.get() is None:
        return _DirectLogger(direct)
    return get_run_logger()


def _log() -> Callable[[str], None]:
    return _logger().info


def _run(step: Task[..., Any], *args: Any) -> Any:
    """Call a task: as a Prefect task run inside a flow run, as the plain function outside.

    A direct run (no Prefect server) must not create task runs: Prefect would start its
    temporary server for them, the 15-60 s this path exists to avoid.
    """
    if FlowRunContext.get() is None:
        return step.fn(*args)
    return step(*args)


def _describe(summary: Any) -> str:
    # Every summary says itself what happened in a sentence; never a repr in the log.
    if summary is None:
        return "nothing to do"
    describe = getattr(summary, "describe", None)
    return describe() if callable(describe) else str(summary)


# --- ingest-feeds ---------------------------------------------------------------------------


@task(name="ingest-inbox", cache_policy=NO_CACHE)
def ingest_inbox_task(settings: Settings) -> Any:
    """Load every new file in the inbox (a file already seen, by content hash, is skipped)."""
    from pipeline.ingest import ingest_inbox

    log = _log()
    direct = _direct.get()

    def progress(stage: str, done: int, total: int) -> None:
        if direct is not None and direct.progress is not None:
            # A direct run draws a bar; its log keeps only the sentences.
            direct.progress(stage, done, total)
            return
        # A line per 10,000 rows and at the end of each step: visible progress on big files
        # without flooding the run's log.
        if done == total or done % 10_000 == 0:
            log(f"{stage}: {done:,} of {total:,}")

    return ingest_inbox(engine_for(settings), settings, log=log, progress=progress)


@flow(name="ingest-feeds", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS)
def ingest_feeds_flow() -> Any:
    """Ingest the contract, maintenance, return and transfer feed files waiting in the inbox."""
    settings = current_settings()
    _logger().info("ingest-feeds: reading %s", settings.inbox_location)
    summary = _run(ingest_inbox_task, settings)
    _logger().info("ingest-feeds: %s", _describe(summary))
    set_aside = summary.describe_set_aside()
    if set_aside:
        # The run still completes (the other files loaded); the warning says what to fix.
        _logger().warning("ingest-feeds: %s", set_aside)
    return summary


# --- materialize-availability ---------------------------------------------------------------


@task(name="materialize-changed-vehicles", cache_policy=NO_CACHE)
def materialize_task(settings: Settings) -> MaterializeSummary:
    """Recompute availability_cache for the vehicles changed since the last run."""
    return materialize_incremental(engine_for(settings), days=settings.materialize_days, log=_log())


@flow(name="materialize-availability", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS)
def materialize_availability_flow() -> MaterializeSummary:
    """Keep the per-vehicle, per-day availability table current, recomputing little."""
    summary = _run(materialize_task, current_settings())
    _logger().info(
        "materialize-availability: %s vehicles, %s rows in %s batches (%s)",
        summary.vehicles,
        summary.rows,
        summary.batches,
        summary.reason,
    )
    return summary


# --- refresh-overdue ------------------------------------------------------------------------


class AlertsRefresh(BaseModel):
    """What one refresh of the overdue and conflict alerts changed."""

    overdue: RefreshSummary
    conflicts: ConflictRefresh
    prepared: int = 0


@task(name="refresh-overdue-rentals", cache_policy=NO_CACHE)
def refresh_overdue_task(conn: Connection, thresholds: tuple[int, ...]) -> RefreshSummary:
    """Open, escalate and close overdue alerts."""
    return refresh_overdue(conn, thresholds=thresholds)


@task(name="refresh-conflicts", cache_policy=NO_CACHE)
def refresh_conflicts_task(conn: Connection) -> ConflictRefresh:
    """Announce new, newly critical and cleared booking conflicts."""
    return refresh_conflicts(conn)


@task(name="finish-prep-after-returns", cache_policy=NO_CACHE)
def finish_prep_task(conn: Connection) -> int:
    """Make returned cars whose prep buffer is over available again."""
    return finish_prep(conn)


@flow(name="refresh-overdue", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS)
def refresh_overdue_flow() -> AlertsRefresh:
    """Refresh overdue rentals and conflicts in one transaction: both or neither are saved."""
    settings = current_settings()
    # Overdue first, then conflicts: each takes its own transaction lock, and nothing else
    # takes both, so this order cannot deadlock.
    with engine_for(settings).begin() as conn:
        prepared = _run(finish_prep_task, conn)
        overdue = _run(refresh_overdue_task, conn, configured_thresholds(settings))
        conflicts = _run(refresh_conflicts_task, conn)
    log = _logger()
    log.info("refresh-overdue: %s cars ready again after their prep time", prepared)
    log.info(
        "refresh-overdue: %s overdue (%s new, %s escalated, %s resolved)",
        overdue.open,
        overdue.new,
        overdue.escalated,
        overdue.resolved,
    )
    log.info(
        "refresh-overdue: %s conflicts (%s new, %s now critical, %s cleared)",
        conflicts.open,
        conflicts.detected,
        conflicts.escalated,
        conflicts.cleared,
    )
    return AlertsRefresh(overdue=overdue, conflicts=conflicts, prepared=prepared)


# --- deliver-notifications ------------------------------------------------------------------


@task(name="deliver-outbox", cache_policy=NO_CACHE)
def deliver_task(settings: Settings) -> Any:
    """Send the due notifications of the outbox by webhook and e-mail."""
    from pipeline.notify import deliver_notifications

    return deliver_notifications(engine_for(settings), settings, log=_log())


@flow(name="deliver-notifications", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS)
def deliver_notifications_flow() -> Any:
    """Turn new alerts into outbox rows and deliver the due ones."""
    summary = _run(deliver_task, current_settings())
    _logger().info("deliver-notifications: %s", _describe(summary))
    return summary


# --- archive-history ------------------------------------------------------------------------


@task(name="archive-old-history", cache_policy=NO_CACHE)
def archive_task(settings: Settings) -> Any:
    """Move history past the retention to verified Parquet files."""
    from pipeline.archive import ArchiveBusy, archive_history

    try:
        return archive_history(
            engine_for(settings),
            archive_dir=settings.archive_location,
            retention_days=settings.history_retention_days,
            log=_log(),
        )
    except ArchiveBusy as busy:
        # Another run is archiving the same months; this one has nothing left to do.
        _logger().info("archive-history: %s; nothing to do in this run", busy)
        return None


@flow(name="archive-history", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS)
def archive_history_flow() -> Any:
    """Archive status history and events older than the retention to Parquet."""
    summary = _run(archive_task, current_settings())
    _logger().info("archive-history: %s", _describe(summary))
    return summary


FLOWS: dict[str, Flow[..., Any]] = {
    f.name: f
    for f in (
        ingest_feeds_flow,
        materialize_availability_flow,
        refresh_overdue_flow,
        deliver_notifications_flow,
        archive_history_flow,
    )
}


def get_flow(name: str) -> Flow[..., Any]:
    """Return the flow with this name, or say which names exist."""
    try:
        return FLOWS[name]
    except KeyError:
        raise InvalidInput(
            f"no pipeline flow named {name!r}",
            field="flow",
            hint=f"one of {', '.join(FLOWS)}",
        ) from None


@contextmanager
def direct_run(log: Callable[[str], None], progress: Progress | None = None) -> Iterator[None]:
    """Within this block a flow's function (`FLOWS[name].fn()`) runs without Prefect.

    Its tasks are called as plain functions and its log lines go to log (and the ingest's
    progress to progress): no flow run, no task runs, no Prefect server needed.
    """
    token = _direct.set(_Direct(log=log, progress=progress))
    try:
        yield
    finally:
        _direct.reset(token)
