"""Validation of times at the engine's edge: aware datetimes, ordered periods."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
