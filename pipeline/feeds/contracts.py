"""The rental contract feed: one row per contract version, CSV or NDJSON (see docs/feeds.md)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

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
TIMES = ("updated_at", "pickup_at", "return_at")


@dataclass
class Reject:
    """A row that cannot be loaded: where it was, what it said, and why."""

    line: int
    raw: dict[str, str | None]
    reason: str


@dataclass
class ParsedFeed:
    """Typed good rows (with their line numbers) and the rejects, from one file."""

    rows: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)


def read_raw(data: bytes, fmt: str) -> pl.DataFrame:
    """Read every column as text, with the file's line number of each record."""
    if fmt == "csv":
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
        first_line = 2  # after the header
    elif fmt == "ndjson":
        frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
        frame = frame.select(pl.all().cast(pl.String))
        first_line = 1
    else:
        raise ValueError(f"unknown feed format {fmt!r}: csv or ndjson")
    for name in (*REQUIRED, *OPTIONAL):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    return frame.with_row_index("line", offset=first_line)


def parse(
    data: bytes | Path,
    *,
    fmt: str,
    known_plates: set[str],
    known_locations: set[str],
) -> ParsedFeed:
    """Type and check a contract feed; every row is either a typed row or a reject with a reason."""
    raw = read_raw(data.read_bytes() if isinstance(data, Path) else data, fmt)
    text = {c: pl.col(c).str.strip_chars() for c in (*REQUIRED, *OPTIONAL)}
    typed = raw.with_columns(
        *(text[c].alias(c) for c in (*REQUIRED, *OPTIONAL)),
    ).with_columns(
        pl.col("version").cast(pl.Int64, strict=False).alias("version_n"),
        *(
            # Times must carry their offset: a naive time is ambiguous across our zones.
            pl.col(c).str.to_datetime(strict=False, time_zone="UTC").alias(f"{c}_t")
            for c in TIMES
        ),
        pl.col("plate").str.to_uppercase().alias("plate"),
        pl.col("pickup_location").str.to_uppercase().alias("pickup_location"),
        pl.col("return_location").str.to_uppercase().alias("return_location"),
    )
    missing = [
        pl.when(pl.col(c).is_null() | (pl.col(c) == "")).then(pl.lit(f"{c} is missing"))
        for c in REQUIRED
    ]
    checks = [
        *missing,
        pl.when(pl.col("version_n").is_null() | (pl.col("version_n") < 1)).then(
            pl.lit("version must be a whole number of at least 1")
        ),
        pl.when(~pl.col("event").is_in(EVENTS)).then(
            pl.lit(f"event must be one of {', '.join(EVENTS)}")
        ),
        *(
            pl.when(pl.col(f"{c}_t").is_null()).then(
                pl.lit(
                    f"{c} must be an ISO 8601 time with its UTC offset, like 2026-12-01T10:00+01:00"
                )
            )
            for c in TIMES
        ),
        pl.when(~pl.col("plate").is_in(sorted(known_plates))).then(pl.lit("unknown plate")),
        pl.when(~pl.col("pickup_location").is_in(sorted(known_locations))).then(
            pl.lit("unknown pickup_location")
        ),
        pl.when(~pl.col("return_location").is_in(sorted(known_locations))).then(
            pl.lit("unknown return_location")
        ),
        pl.when(pl.col("return_at_t") <= pl.col("pickup_at_t")).then(
            pl.lit("return_at is not after pickup_at")
        ),
    ]
    # The first failing check is the reason: it is the one to fix first.
    checked = typed.with_columns(pl.coalesce(checks).alias("reason"))
    bad = checked.filter(pl.col("reason").is_not_null())
    raw_by_line = {r["line"]: r for r in raw.iter_rows(named=True)}
    rejects = [
        Reject(
            line=r["line"],
            raw={k: v for k, v in raw_by_line[r["line"]].items() if k != "line"},
            reason=r["reason"],
        )
        for r in bad.select("line", "reason").iter_rows(named=True)
    ]
    good = checked.filter(pl.col("reason").is_null()).select(
        "line",
        "external_id",
        pl.col("version_n").alias("version"),
        pl.col("updated_at_t").alias("updated_at"),
        "event",
        "plate",
        "customer_name",
        "customer_phone",
        "customer_email",
        "pickup_location",
        "return_location",
        pl.col("pickup_at_t").alias("pickup_at"),
        pl.col("return_at_t").alias("return_at"),
    )
    return ParsedFeed(rows=good, rejects=rejects)
