"""What booking routes check before calling the engine, and engine field names in API terms."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from db import fleet
from db.errors import FleetError


@contextmanager
def fields_as(**names: str) -> Iterator[None]:
    """Re-label the field an engine error names with the name the request used."""
    try:
        yield
    except FleetError as exc:
        if exc.field in names:
            exc.field = names[exc.field]
        raise


def require_location(conn: Connection, *, location_id: int | None, field: str) -> None:
    """Raise NotFound naming `field` unless the location exists (None passes).

    The engine stores some location ids without looking them up first; an unknown one would
    reach the foreign key and come back as a database error instead of a clear answer.
    """
    if location_id is None:
        return
    with fields_as(location=field):
        fleet.get_location(conn, id=location_id)


def require_customer(conn: Connection, *, customer_id: int) -> None:
    """Raise NotFound naming customer_id unless the customer exists."""
    with fields_as(customer="customer_id"):
        fleet.get_customer(conn, id=customer_id)


def require_category(conn: Connection, *, category_id: int | None) -> None:
    """Raise NotFound naming category_id unless the category exists (None passes)."""
    if category_id is None:
        return
    with fields_as(category="category_id"):
        fleet.get_category(conn, id=category_id)
