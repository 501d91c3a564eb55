"""The transfer feed: cars driven between lots, one row per version (see docs/feeds.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.feeds import base
from pipeline.feeds.base import ParsedFeed, typed_name

EVENTS = ("dispatched", "arrived")
REQUIRED = (
    "external_id",
    "version",
    "updated_at",
    "event",
    "plate",
    "from_location",
    "to_location",
)
OPTIONAL = ("departed_at", "eta", "arrived_at")
FIELDS = (*REQUIRED, *OPTIONAL)
TIMES = ("updated_at", "departed_at", "eta", "arrived_at")


def parse(
    data: bytes | Path,
    *,
    fmt: str,
    known_plates: set[str],
    known_locations: set[str],
    now: datetime | None = None,
    window: base.TimeWindow | None = None,
) -> ParsedFeed:
    """Type and check a transfer feed: typed rows, and a reject with a reason per bad row.

    A dispatched transfer needs `departed_at` and an `eta` after it; an arrived one needs
    `arrived_at` (not before `departed_at` when that is given too). Times must lie
    within `window` around `now` (default: the current time).
    """
    base.require_aware(now)
    raw = base.read_raw(data, fmt, FIELDS, REQUIRED)
    typed = raw.frame.with_columns(
        base.text("external_id"),
        base.text("version"),
        base.lowered("event"),
        base.plate("plate", known_plates),
        base.code("from_location"),
        base.code("to_location"),
        *(base.text(c) for c in TIMES),
    ).with_columns(
        base.integer("version"),
        *(base.time(c) for c in TIMES),
    )
    checks = [
        *base.missing(REQUIRED, raw.absent),
        *base.too_long(("external_id", "plate")),
        base.whole_number("version", 1),
        base.one_of("event", EVENTS),
        base.required_for("departed_at", "dispatched"),
        base.required_for("eta", "dispatched"),
        base.required_for("arrived_at", "arrived"),
        *(base.valid_time(c) for c in TIMES),
        *base.plausible(TIMES, now, window),
        base.known_plate("plate", known_plates),
        base.known("from_location", known_locations),
        base.known("to_location", known_locations),
        pl.when(pl.col("from_location") == pl.col("to_location")).then(
            pl.lit("from_location and to_location are the same: a transfer moves between lots")
        ),
        base.later("eta", "departed_at", "eta is not after departed_at"),
        base.later("arrived_at", "departed_at", "arrived_at is before departed_at", or_equal=True),
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
            "from_location",
            "to_location",
            *(pl.col(typed_name(c)).alias(c) for c in ("departed_at", "eta", "arrived_at")),
        ],
    )
