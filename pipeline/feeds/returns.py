"""The returns feed: one row per check-in of a rented car, CSV or NDJSON (docs/feeds.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from pipeline.feeds import base
from pipeline.feeds.base import ParsedFeed, typed_name

REQUIRED = ("external_id", "returned_at", "plate", "location")
OPTIONAL = ("version", "contract_id", "odometer_km", "fuel_percent", "damage_notes")
FIELDS = (*REQUIRED, *OPTIONAL)
# Clocks at the desk and on our servers drift a little; beyond this a return is not real yet.
FUTURE_SLACK = timedelta(minutes=5)


def parse(
    data: bytes | Path,
    *,
    fmt: str,
    known_plates: set[str],
    known_locations: set[str],
    now: datetime | None = None,
    window: base.TimeWindow | None = None,
) -> ParsedFeed:
    """Type and check a returns feed: typed rows, and a reject with a reason per bad row.

    A return is reported after it happened, so `returned_at` may be at most five minutes
    after `now` (default: the current time). `version` defaults to 1 and `updated_at` is the
    return time: a corrected check-in is sent again with a higher version.
    """
    # In UTC like the parsed times: polars compares only times of the same zone.
    latest = (base.require_aware(now) or datetime.now(UTC)).astimezone(UTC) + FUTURE_SLACK
    raw = base.read_raw(data, fmt, FIELDS, REQUIRED)
    typed = raw.frame.with_columns(
        base.text("external_id"),
        base.text("version"),
        base.text("returned_at"),
        base.plate("plate", known_plates),
        base.code("location"),
        base.text("contract_id"),
        base.text("odometer_km"),
        base.text("fuel_percent"),
        base.text("damage_notes"),
    ).with_columns(
        base.integer("version"),
        base.time("returned_at"),
        base.integer("odometer_km"),
        base.number("fuel_percent"),
    )
    returned = pl.col(typed_name("returned_at"))
    checks = [
        *base.missing(REQUIRED, raw.absent),
        *base.too_long(("external_id", "contract_id", "plate", "damage_notes")),
        base.whole_number("version", 1),
        base.valid_time("returned_at"),
        base.known_plate("plate", known_plates),
        base.known("location", known_locations),
        base.whole_number("odometer_km", 0, "odometer_km must be a whole number, 0 or more"),
        base.number_between("fuel_percent", 0, 100),
        pl.when(returned > latest).then(
            pl.lit("returned_at is in the future: a return is sent after the car is back")
        ),
        *base.plausible(["returned_at"], now, window),
    ]
    return base.finish(
        raw,
        typed,
        checks,
        [
            "line",
            "external_id",
            pl.col(typed_name("version")).fill_null(1).alias("version"),
            returned.alias("updated_at"),
            returned.alias("returned_at"),
            "plate",
            "location",
            "contract_id",
            pl.col(typed_name("odometer_km")).alias("odometer_km"),
            pl.col(typed_name("fuel_percent")).alias("fuel_percent"),
            "damage_notes",
        ],
    )
