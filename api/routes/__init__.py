"""Route modules, one per domain noun; app.py includes every router listed here."""

from __future__ import annotations

from api.routes import auth, docs, health, realtime, vehicles

ROUTERS = [health.router, auth.router, vehicles.router, realtime.router, docs.router]
