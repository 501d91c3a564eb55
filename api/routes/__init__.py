"""Route modules, one per domain noun; app.py includes every router listed here."""

from __future__ import annotations

from api.routes import (
    audit,
    auth,
    availability,
    components,
    conflicts,
    docs,
    health,
    overdue,
    push,
    realtime,
    reference,
    reservations,
    saved_searches,
    transfers,
    vehicles,
)

ROUTERS = [
    health.router,
    auth.router,
    vehicles.router,
    realtime.router,
    docs.router,
    availability.router,
    reservations.router,
    conflicts.router,
    overdue.router,
    audit.router,
    transfers.router,
    saved_searches.router,
    push.router,
    reference.router,
    # Before the pages: it answers /components/ in place of Panel's own route.
    components.router,
]
