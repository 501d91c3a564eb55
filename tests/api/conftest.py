"""API fixtures: the real server (uvicorn on a free port) over the test database, and users."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from api.app import create_app
from db import auth, fleet
from fleet.settings import Settings
from tests.conftest import DATA_TABLES, World, add_vehicle, build_world, empty_tables

PASSWORD = "correct-horse-battery"
# Identity columns are not restarted: a running server remembers the event sequence it sent.
# Everything a test behind the server may write (a page's import fills the feed tables too).
API_TABLES = f"idempotency_keys, auth_tokens, {DATA_TABLES}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving an app in a background thread, as `fleet serve` would."""

    def __init__(self, app, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            ws_per_message_deflate=True,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def server_settings(database_url: str, data_dir: Path, **overrides) -> Settings:
    base = dict(
        database_url=database_url,
        data_dir=data_dir,
        secret_key="test-secret-key-not-for-production",
        heartbeat_seconds=1.0,
        rate_limit_per_minute=100_000,
        login_attempts_per_minute=100_000,
        login_attempts_per_address_per_minute=100_000,
        log_level="WARNING",
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def live_server(database_url: str, tmp_path_factory) -> Iterator[ServerThread]:
    settings = server_settings(database_url, tmp_path_factory.mktemp("server"))
    server = ServerThread(create_app(settings), free_port()).start()
    yield server
    server.stop()


@dataclass
class ApiWorld:
    """A committed fleet with one signed-in user per role and their bearer tokens."""

    url: str
    world: World
    vehicles: list[fleet.Vehicle]
    users: dict[str, fleet.User]
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = "agent", **kwargs) -> httpx.Client:
        """An HTTP client authenticated as the role's user (None: anonymous)."""
        headers = kwargs.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=20, **kwargs)

    def login(self, role: str = "agent") -> httpx.Client:
        """A browser-like client signed in through the login form (session + CSRF cookies)."""
        c = httpx.Client(base_url=self.url, timeout=20)
        c.get("/login")
        r = c.post(
            "/login",
            data={
                "username": self.users[role].username,
                "password": PASSWORD,
                "csrf": c.cookies.get("fleet_login_csrf"),
                "next": "/",
            },
        )
        assert r.status_code == 303, r.text
        return c


@pytest.fixture
def api(live_server: ServerThread, engine: Engine) -> Iterator[ApiWorld]:
    with engine.begin() as c:
        world = build_world(c)
        vehicles = [
            add_vehicle(c, world, plate)
            for plate in ("B AP 101", "B AP 102", "B AP 103", "B AP 104")
        ]
        users = {"agent": world.agent, "manager": world.manager}
        for role in ("analyst", "admin"):
            users[role] = fleet.create_user(c, username=f"api-{role}", full_name=role, role=role)
        tokens = {}
        for role, user in users.items():
            auth.set_password(c, user_id=user.id, password=PASSWORD)
            tokens[role] = auth.issue_token(
                c, user_id=user.id, kind="api", lifetime=timedelta(hours=1)
            ).token
    yield ApiWorld(live_server.url, world, vehicles, users, tokens)
    empty_tables(engine, API_TABLES)
