"""Suggestions from rental patterns: what a returning customer likes, what a lot is asked for."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.timeutil import require_period


class CategoryPreference(BaseModel):
    """A category ranked by how often it was rented, with the features that came with it."""

    category_id: int
    category_code: str
    category_name: str
    rentals: int
    last_rented: datetime | None
    common_features: list[str]


def for_customer(conn: Connection, *, customer_id: int, limit: int = 3) -> list[CategoryPreference]:
    """Return the categories (and usual features) a customer rented before, favourite first."""
    rows = conn.execute(
        text(
            "WITH past AS ("
            "  SELECT v.category_id, v.features, lower(b.period) AS start FROM blocks b"
            "  JOIN vehicles v ON v.id = b.vehicle_id"
            "  WHERE b.customer_id = :c AND b.kind IN ('rental', 'reservation')"
            "  AND b.state IN ('active', 'completed'))"
            " SELECT c.id AS category_id, c.code AS category_code, c.name AS category_name,"
            " count(*) AS rentals, max(p.start) AS last_rented,"
            " coalesce((SELECT array_agg(f ORDER BY n DESC, f) FROM ("
            "   SELECT f, count(*) AS n FROM past p2, unnest(p2.features) f"
            "   WHERE p2.category_id = c.id GROUP BY f"
            "   HAVING count(*) * 2 >= (SELECT count(*) FROM past p3"
            "                           WHERE p3.category_id = c.id)) x), '{}')"
            "   AS common_features"
            " FROM past p JOIN vehicle_categories c ON c.id = p.category_id"
            " GROUP BY c.id ORDER BY rentals DESC, last_rented DESC LIMIT :limit"
        ),
        {"c": customer_id, "limit": limit},
    ).mappings()
    return [CategoryPreference.model_validate(dict(r)) for r in rows]


def for_location(
    conn: Connection,
    *,
    location_id: int,
    start: datetime,
    end: datetime,
    lookback: timedelta = timedelta(days=365),
    limit: int = 3,
) -> list[CategoryPreference]:
    """Return what is usually asked for at a lot for a similar period, most asked first.

    Similar means bookings picked up there on the same local weekday, of a comparable
    length (half to double), within the lookback; if there are none, any booking there.
    """
    require_period(start, end)
    params = {
        "loc": location_id,
        "start": start,
        "len": end - start,
        "lookback": lookback,
        "limit": limit,
    }
    sql = (
        "WITH l AS (SELECT time_zone FROM locations WHERE id = :loc),"
        " past AS ("
        "  SELECT v.category_id, v.features, lower(b.period) AS start FROM blocks b"
        "  JOIN vehicles v ON v.id = b.vehicle_id CROSS JOIN l"
        "  WHERE b.start_location_id = :loc AND b.kind IN ('rental', 'reservation')"
        "  AND b.state IN ('active', 'completed')"
        "  AND lower(b.period) >= CAST(:start AS timestamptz) - CAST(:lookback AS interval)"
        "  {similar})"
        " SELECT c.id AS category_id, c.code AS category_code, c.name AS category_name,"
        " count(*) AS rentals, max(p.start) AS last_rented,"
        " coalesce((SELECT array_agg(f ORDER BY n DESC, f) FROM ("
        "   SELECT f, count(*) AS n FROM past p2, unnest(p2.features) f"
        "   WHERE p2.category_id = c.id GROUP BY f ORDER BY count(*) DESC LIMIT 3) x), '{{}}')"
        "   AS common_features"
        " FROM past p JOIN vehicle_categories c ON c.id = p.category_id"
        " GROUP BY c.id ORDER BY rentals DESC, c.upgrade_rank LIMIT :limit"
    )
    similar = (
        " AND extract(isodow FROM lower(b.period) AT TIME ZONE l.time_zone)"
        "   = extract(isodow FROM CAST(:start AS timestamptz) AT TIME ZONE l.time_zone)"
        " AND upper(b.period) - lower(b.period)"
        "   BETWEEN CAST(:len AS interval) / 2 AND CAST(:len AS interval) * 2"
    )
    rows = conn.execute(text(sql.format(similar=similar)), params).mappings().all()
    if not rows:
        rows = conn.execute(text(sql.format(similar="")), params).mappings().all()
    return [CategoryPreference.model_validate(dict(r)) for r in rows]
