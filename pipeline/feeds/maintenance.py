"""The maintenance feed: one row per version of a workshop job, CSV or NDJSON (docs/feeds.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.feeds import base
from pipeline.feeds.base import ParsedFeed, typed_name

EVENTS = ("scheduled", "started", "completed", "cancelled")
REQUIRED = (
    "external_id",
    "version",
    "updated_at",
    "event",
    "plate",
    "location",
    "starts_at",
    "ends_at",
)
OPTIONAL = ("description",)
FIELDS = (*REQUIRED, *OPTIONAL)
TIMES = ("updated_at", "starts_at", "ends_at")


def parse(
    data: bytes | Path,
    *,
    fmt: str,
    known_plates: set[str],
    known_locations: set[str],
    now: datetime | None = None,
    window: base.TimeWindow | None = None,
) -> ParsedFeed:
    """Type and check a maintenance feed: typed rows, and a reject with a reason per bad row.

    Every event carries the job's planned window (`starts_at` before `ends_at`), so a job
    reported as started or completed still says how long the car is out. Times must lie
    within `window` around `now` (default: the current time).
    """
    base.require_aware(now)
    raw = base.read_raw(data, fmt, FIELDS, REQUIRED)
    typed = raw.frame.with_columns(
        base.text("external_id"),
        base.text("version"),
        base.lowered("event"),
        base.plate("plate", known_plates),
        base.code("location"),
        base.text("description"),
        *(base.text(c) for c in TIMES),
    ).with_columns(
        base.integer("version"),
        *(base.time(c) for c in TIMES),
    )
    checks = [
        *base.missing(REQUIRED, raw.absent),
        *base.too_long(("external_id", "plate", "description")),
        base.whole_number("version", 1),
        base.one_of("event", EVENTS),
        *(base.valid_time(c) for c in TIMES),
        *base.plausible(TIMES, now, window),
        base.known_plate("plate", known_plates),
        base.known("location", known_locations),
        base.later("ends_at", "starts_at", "ends_at is not after starts_at"),
    ]
    return base.finish(
        raw,
        typed,
        checks,
        [
            "line",
            "external_id",
            pl.col(typed_name("version")).alias("version"),
            pl.col(typed_name("updated_at")).alias("updated_at"),
            "event",
            "plate",
            "location",
            pl.col(typed_name("starts_at")).alias("starts_at"),
            pl.col(typed_name("ends_at")).alias("ends_at"),
            "description",
        ],
    )
