"""Shared route helpers: the transaction a route owns, and the settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from sqlalchemy import Connection, Engine

from fleet.settings import Settings


def engine(request: Request) -> Engine:
    """Return the process's database engine."""
    return request.app.state.engine


def settings(request: Request) -> Settings:
    """Return the settings the app was built with."""
    return request.app.state.settings


@contextmanager
def transaction(request: Request, *, read_only: bool = False) -> Iterator[Connection]:
    """Open the one transaction a route owns; commit on success, roll back on any error."""
    with engine(request).begin() as conn:
        if read_only:
            # A consistent snapshot across the route's queries (a board plus its seq).
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield conn
