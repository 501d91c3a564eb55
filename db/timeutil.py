"""Validation of times at the engine's edge: aware datetimes, ordered periods."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import PlainSerializer, WithJsonSchema

from db.errors import InvalidInput

MAX_PERIOD = timedelta(days=400)


def require_aware(value: datetime, field: str) -> datetime:
    """Return value if it carries a time zone, else raise InvalidInput naming the field."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} must be a date and time", field=field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"{field} has no time zone: {value.isoformat()}",
            field=field,
            hint="give an offset (2026-11-25T10:00+01:00) or the location's local time",
        )
    return value


def require_period(start: datetime, end: datetime, *, what: str = "period") -> None:
    """Raise InvalidInput unless start and end are aware and start < end within a sane span."""
    require_aware(start, "start")
    require_aware(end, "end")
    if end <= start:
        raise InvalidInput(
            f"{what} ends before it starts: {start.isoformat()} to {end.isoformat()}",
            field="end",
            hint="the end must be after the start",
        )
    if end - start > MAX_PERIOD:
        raise InvalidInput(
            f"{what} is longer than {MAX_PERIOD.days} days",
            field="end",
            hint="split it into shorter periods",
        )


def zone(name: str) -> ZoneInfo:
    """Return the IANA zone, or raise InvalidInput naming the bad zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"unknown time zone {name!r}",
            field="time_zone",
            hint="use an IANA name such as Europe/Berlin or America/New_York",
        ) from exc


def local_iso(value: datetime | None, tz_name: str) -> str | None:
    """Render value in the location's zone, as staff read it."""
    if value is None:
        return None
    return value.astimezone(zone(tz_name)).isoformat(timespec="minutes")


def iso_duration(value: timedelta) -> str:
    """Render a span as an RFC 3339 duration in whole seconds: P1DT2H5M, PT45S, PT0S."""
    # RFC 3339's grammar has no fractional seconds (PT1.5S is not a `duration`), and a span
    # read from now() carries microseconds; staff count whole seconds, so they are dropped.
    seconds = int(value.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    day_part = f"{days}D" if days else ""
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not day_part and not time:
        time = "0S"
    return f"{sign}P{day_part}{'T' + time if time else ''}"


# A span in the engine's records: a timedelta in Python, an RFC 3339 duration in JSON (the
# API and `fleet ... --json` both print it through iso_duration).
Duration = Annotated[
    timedelta,
    PlainSerializer(iso_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "duration",
            "description": "An RFC 3339 duration in whole seconds, e.g. P1DT2H5M or PT45S.",
        },
        mode="serialization",
    ),
]
