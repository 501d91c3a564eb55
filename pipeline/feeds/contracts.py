"""The rental contract feed: one row per contract version, CSV or NDJSON (see docs/feeds.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from db.timeutil import MAX_PERIOD
from pipeline.feeds import base
from pipeline.feeds.base import ParsedFeed, Reject, typed_name

__all__ = ["EVENTS", "FIELDS", "OPTIONAL", "REQUIRED", "ParsedFeed", "Reject", "parse"]

EVENTS = ("created", "modified", "extended", "closed", "cancelled")
REQUIRED = (
    "external_id",
    "version",
    "updated_at",
    "event",
    "plate",
    "customer_name",
    "pickup_location",
    "return_location",
    "pickup_at",
    "return_at",
)
OPTIONAL = ("customer_phone", "customer_email")
FIELDS = (*REQUIRED, *OPTIONAL)
TIMES = ("updated_at", "pickup_at", "return_at")
TEXT = ("external_id", "customer_name", "customer_phone", "customer_email")


def parse(
    data: bytes | Path,
    *,
    fmt: str,
    known_plates: set[str],
    known_locations: set[str],
    now: datetime | None = None,
    window: base.TimeWindow | None = None,
) -> ParsedFeed:
    """Type and check a contract feed; every row is either a typed row or a reject with a reason.

    Times must lie within `window` around `now` (default: the current time): a contract
    may lie in the past or the future, but not in the year 9999. Raises `ValueError` for an
    unknown `fmt` (and its subclass `FeedFileError` for a file that cannot be read at all).
    """
    base.require_aware(now)
    raw = base.read_raw(data, fmt, FIELDS, REQUIRED)
    typed = raw.frame.with_columns(
        *(base.text(c) for c in TEXT),
        base.lowered("event"),
        base.plate("plate", known_plates),
        base.code("pickup_location"),
        base.code("return_location"),
        base.text("version"),
        *(base.text(c) for c in TIMES),
    ).with_columns(
        base.integer("version"),
        *(base.time(c) for c in TIMES),
    )
    checks = [
        *base.missing(REQUIRED, raw.absent),
        *base.too_long(
            ("external_id", "plate", "customer_name", "customer_phone", "customer_email")
        ),
        base.whole_number("version", 1),
        base.one_of("event", EVENTS),
        *(base.valid_time(c) for c in TIMES),
        *base.plausible(TIMES, now, window),
        base.known_plate("plate", known_plates),
        base.known("pickup_location", known_locations),
        base.known("return_location", known_locations),
        base.later("return_at", "pickup_at", "return_at is not after pickup_at"),
        # The engine holds no period longer than this (db.timeutil.MAX_PERIOD): said per row
        # here, where the bulk load would otherwise fail the whole file.
        base.within(
            "return_at",
            "pickup_at",
            MAX_PERIOD,
            f"the rental is longer than {MAX_PERIOD.days} days (pickup_at to return_at):"
            " split it into shorter contracts",
        ),
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
            "customer_name",
            "customer_phone",
            "customer_email",
            "pickup_location",
            "return_location",
            pl.col(typed_name("pickup_at")).alias("pickup_at"),
            pl.col(typed_name("return_at")).alias("return_at"),
        ],
    )
