"""Security sweep fixtures: the shared live server, users per role, Chromium and a log tap."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from db import auth, fleet
from tests.api.conftest import (  # noqa: F401 - shared server fixtures
    API_TABLES,
    PASSWORD,
    ApiWorld,
    ServerThread,
    api,
    empty_tables,
    live_server,
)
from tests.conftest import DATA_TABLES, add_vehicle, build_world

# The server runs in this process (tests/api/conftest.py), so its log records reach handlers
# here. fleet's logger does not propagate (api/logs.py), so each logger gets the tap itself.
TAPPED = ("", "bokeh", "tornado", "panel", "fleet", "uvicorn.error", "asyncio")
# Everything the sweep's writes may have touched (the API's tables and the rest).
SWEEP_TABLES = ", ".join(dict.fromkeys(t.strip() for t in f"{API_TABLES},{DATA_TABLES}".split(",")))


class LogTap(logging.Handler):
    """Every log record the server emits while the tap is on, once each."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            if id(record) not in self._seen:
                self._seen.add(id(record))
                self.records.append(record)

    def tracebacks(self) -> list[str]:
        """Return each ERROR-or-worse record that carries an exception, formatted."""
        fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [fmt.format(r) for r in self.records if r.levelno >= logging.ERROR and r.exc_info]


@pytest.fixture
def log_tap() -> Iterator[LogTap]:
    tap = LogTap()
    loggers = [logging.getLogger(name) for name in TAPPED]
    for logger in loggers:
        logger.addHandler(tap)
    try:
        yield tap
    finally:
        for logger in loggers:
            logger.removeHandler(tap)


@dataclass
class Sweep:
    """A committed world for the whole sweep module, with credentials good and bad."""

    api: ApiWorld
    document: dict[str, Any]
    expired: str  # an API token whose lifetime has run out
    revoked: str  # an API token revoked before the sweep
    ids: dict[str, int]
    # Text a response must not carry unless the caller may read the fleet.
    secrets: tuple[str, ...]


@pytest.fixture(scope="module")
def sweep(live_server: ServerThread, engine: Engine) -> Iterator[Sweep]:  # noqa: F811
    with engine.begin() as c:
        world = build_world(c)
        vehicles = [add_vehicle(c, world, p) for p in ("B SW 101", "B SW 102", "B SW 103")]
        users = {"agent": world.agent, "manager": world.manager}
        for role in ("analyst", "admin"):
            users[role] = fleet.create_user(c, username=f"sw-{role}", full_name=role, role=role)
        tokens = {}
        for role, user in users.items():
            auth.set_password(c, user_id=user.id, password=PASSWORD)
            tokens[role] = auth.issue_token(
                c, user_id=user.id, kind="api", lifetime=timedelta(hours=1)
            ).token
        hour = timedelta(hours=1)
        expired = auth.issue_token(c, user_id=world.agent.id, kind="api", lifetime=hour)
        c.execute(
            text("UPDATE auth_tokens SET expires_at = now() - interval '1 minute' WHERE id = :i"),
            {"i": expired.info.id},
        )
        revoked = auth.issue_token(c, user_id=world.agent.id, kind="api", lifetime=hour)
        auth.revoke_token(c, token_id=revoked.info.id)
    world_api = ApiWorld(live_server.url, world, vehicles, users, tokens)
    with world_api.client("admin") as client:
        document = client.get("/api/openapi.json").raise_for_status().json()
    ids = {
        "vehicle_id": vehicles[0].id,
        "location_id": world.ber.id,
        "return_location_id": world.ber.id,
        "to_location_id": world.muc.id,
        "destination_location_id": world.muc.id,
        "customer_id": world.alice.id,
        "category_id": world.econ.id,
        "user_id": world.agent.id,
        # Never one of the sweep's own tokens: revoking them would end the sweep.
        "token_id": 2**31 - 1,
    }
    secrets = (*(v.plate for v in vehicles), world.alice.name, world.bob.name, "Anna Agent")
    yield Sweep(world_api, document, expired.token, revoked.token, ids, secrets)
    empty_tables(engine, SWEEP_TABLES)
