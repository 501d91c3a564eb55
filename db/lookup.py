"""Finding things fast: vehicles by (misread) plate, customers and their rentals by name."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db.errors import InvalidInput

# The same folding as fleet_plate_key() in the schema: what staff misread off a dirty plate.
_FOLD = str.maketrans("OQDILBSZ", "00011852")
_PLATE_QUERY = re.compile(r"^[A-Za-z0-9 \-]{1,16}$")


class PlateMatch(BaseModel):
    """A vehicle whose plate matches what was typed, with how well."""

    vehicle_id: int
    plate: str
    make: str
    model: str
    category_code: str
    status: str
    location_code: str | None
    score: float
    exact: bool


class RentalMatch(BaseModel):
    """A customer's current rental or upcoming reservation."""

    customer_id: int
    customer_name: str
    customer_phone: str | None
    customer_email: str | None
    block_id: int
    kind: str
    vehicle_id: int
    plate: str
    start: datetime
    end: datetime
    pickup_code: str
    return_code: str
    score: float


def plate_key(text_: str) -> str:
    """Fold a typed plate the way the database folds stored plates."""
    return re.sub(r"[^A-Z0-9]", "", text_.upper()).translate(_FOLD)


def find_by_plate(conn: Connection, *, query: str, limit: int = 10) -> list[PlateMatch]:
    """Return vehicles whose plate contains or resembles the typed text, best first.

    Look-alike characters (0/O/Q/D, 1/I/L, 8/B, 5/S, 2/Z) are folded on both sides, so a
    misread character still matches; trigram similarity ranks near misses.
    """
    if not _PLATE_QUERY.match(query or ""):
        raise InvalidInput(
            f"malformed plate search {query!r}",
            field="plate",
            hint="type letters and digits from the plate (spaces and dashes are ignored)",
        )
    key = plate_key(query)
    if len(key) < 2:
        raise InvalidInput("type at least two characters of the plate", field="plate")
    rows = conn.execute(
        text(
            "SELECT v.id AS vehicle_id, v.plate, v.make, v.model, c.code AS category_code,"
            " s.current_status AS status, l.code AS location_code,"
            " CASE WHEN v.plate_key = :key THEN 1.0"
            "      WHEN strpos(v.plate_key, :key) > 0 THEN 0.9"
            "      ELSE similarity(v.plate_key, :key) END AS score,"
            " v.plate_key = :key AS exact"
            " FROM vehicles v JOIN vehicle_categories c ON c.id = v.category_id"
            " JOIN vehicle_status_realtime s ON s.vehicle_id = v.id"
            " LEFT JOIN locations l ON l.id = s.location_id"
            " WHERE v.plate_key LIKE '%' || :key || '%' OR v.plate_key % :key"
            " ORDER BY score DESC, v.plate LIMIT :limit"
        ),
        {"key": key, "limit": limit},
    ).mappings()
    return [PlateMatch.model_validate(dict(r)) for r in rows]


def find_rentals_by_customer(
    conn: Connection, *, name: str, limit: int = 20, include_upcoming: bool = True
) -> list[RentalMatch]:
    """Return current rentals (and upcoming reservations) of customers whose name matches.

    A name matches when it contains the typed text, resembles it as a whole, or has a word
    resembling it (a mistyped surname alone, "Schmitt" for "Schmidt", still finds the rental).
    """
    name = (name or "").strip()
    if len(name) < 2:
        raise InvalidInput("type at least two letters of the customer's name", field="name")
    kinds = ["rental", "reservation"] if include_upcoming else ["rental"]
    rows = conn.execute(
        text(
            "SELECT cu.id AS customer_id, cu.name AS customer_name,"
            " cu.phone AS customer_phone, cu.email AS customer_email, b.id AS block_id,"
            ' b.kind, b.vehicle_id, v.plate, lower(b.period) AS start, upper(b.period) AS "end",'
            " lp.code AS pickup_code, lr.code AS return_code,"
            " greatest(similarity(cu.name, :name), word_similarity(:name, cu.name),"
            "   CASE WHEN cu.name ILIKE :pattern THEN 0.9 ELSE 0 END) AS score"
            " FROM customers cu JOIN blocks b ON b.customer_id = cu.id"
            " JOIN vehicles v ON v.id = b.vehicle_id"
            " JOIN locations lp ON lp.id = b.start_location_id"
            " JOIN locations lr ON lr.id = b.end_location_id"
            " WHERE (cu.name % :name OR :name <% cu.name OR cu.name ILIKE :pattern)"
            " AND b.state = 'active' AND b.kind = ANY(CAST(:kinds AS text[]))"
            " ORDER BY score DESC, lower(b.period) LIMIT :limit"
        ),
        {"name": name, "pattern": f"%{_escape_like(name)}%", "kinds": kinds, "limit": limit},
    ).mappings()
    return [RentalMatch.model_validate(dict(r)) for r in rows]


def _escape_like(value: str) -> str:
    # Typed % and _ are literal characters, not wildcards that would match every customer.
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class CustomerMatch(BaseModel):
    """A customer whose name matches what was typed, with how well (for booking forms)."""

    customer_id: int
    name: str
    phone: str | None
    email: str | None
    score: float


def find_customers(conn: Connection, *, name: str, limit: int = 10) -> list[CustomerMatch]:
    """Return customers whose name contains or resembles the typed text, best first.

    Unlike find_rentals_by_customer this finds every customer, booked or not: a clerk needs
    it to name who a new reservation is for.
    """
    name = (name or "").strip()
    if len(name) < 2:
        raise InvalidInput("type at least two letters of the customer's name", field="name")
    if not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100", field="limit")
    rows = conn.execute(
        text(
            "SELECT cu.id AS customer_id, cu.name, cu.phone, cu.email,"
            " greatest(similarity(cu.name, :name), word_similarity(:name, cu.name),"
            "   CASE WHEN cu.name ILIKE :pattern THEN 0.9 ELSE 0 END) AS score"
            " FROM customers cu"
            " WHERE cu.name % :name OR :name <% cu.name OR cu.name ILIKE :pattern"
            " ORDER BY score DESC, cu.name, cu.id LIMIT :limit"
        ),
        {"name": name, "pattern": f"%{_escape_like(name)}%", "limit": limit},
    ).mappings()
    return [CustomerMatch.model_validate(dict(r)) for r in rows]


def known_features(conn: Connection) -> list[str]:
    """Return every feature an active vehicle has, alphabetically (the search form's choices)."""
    return list(
        conn.execute(
            text(
                "SELECT DISTINCT f FROM vehicles v, unnest(v.features) AS f"
                " WHERE v.active ORDER BY f"
            )
        ).scalars()
    )
