"""API, CLI and flow apply the configured overdue thresholds; one notice per crossing."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from api.app import create_app
from db import notifications, overdue
from fleet.cli.main import app as cli
from fleet.settings import get_settings
from pipeline import flows
from tests.api.conftest import ApiWorld, ServerThread, free_port, server_settings
from tests.db.factories import rental_under_way

THRESHOLDS = [0, 30, 60]  # 45 min late is level 2 here, level 1 with the defaults
HOOK = "http://127.0.0.1:9/fleet-hook"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[None]:
    """The CLI's and the flow's settings: the test database and the same thresholds."""
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_OVERDUE_THRESHOLDS_MINUTES", str(THRESHOLDS))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _server(database_url: str, tmp_path) -> ServerThread:
    settings = server_settings(database_url, tmp_path, overdue_thresholds_minutes=THRESHOLDS)
    return ServerThread(create_app(settings, pages=False), free_port()).start()


@pytest.fixture
def rule_api(api: ApiWorld, database_url: str, tmp_path) -> Iterator[ApiWorld]:
    """The api world, served by a server configured with THRESHOLDS."""
    server = _server(database_url, tmp_path)
    yield dataclasses.replace(api, url=server.url)
    server.stop()


def _late(api: ApiWorld, engine: Engine, minutes: float = 45):
    """A rental due back `minutes` before the real clock (the servers list on now())."""
    due = datetime.now(UTC) - timedelta(minutes=minutes)
    with engine.begin() as c:
        return rental_under_way(
            c, api.world, api.vehicles[0], start=due - timedelta(hours=20), end=due
        )


def test_the_api_lists_levels_with_the_configured_thresholds(rule_api, engine):
    _late(rule_api, engine)
    with rule_api.client("agent") as c:
        [entry] = c.get("/api/availability/overdue").json()
        refreshed = c.post("/api/availability/overdue/refresh")
    assert (entry["escalation_level"], entry["escalated"]) == (2, True)
    assert refreshed.status_code == 200, refreshed.text
    with engine.connect() as c:
        level = c.execute(text("SELECT escalation_level FROM overdue_vehicles")).scalar_one()
    assert level == 2


def test_each_crossing_is_notified_once_whatever_mix_of_refreshes_runs(
    rule_api, api, engine, configured
):
    _late(rule_api, engine)
    runner = CliRunner()
    settings = get_settings()

    def by_cli():
        r = runner.invoke(cli, ["overdue", "refresh", "--json"])
        assert r.exit_code == 0, r.output

    def by_api(world: ApiWorld):
        with world.client("agent") as c:
            r = c.post("/api/availability/overdue/refresh")
        assert r.status_code == 200, r.text

    def by_flow_task():
        with engine.begin() as c:
            flows.refresh_overdue_task.fn(c, overdue.configured_thresholds(settings))

    def enqueue():
        with engine.begin() as c:
            notifications.enqueue_alerts(c, email_to=[], webhook_urls=[HOOK])

    # The session's shared server runs on the default thresholds; ours on THRESHOLDS.
    for step in (by_cli, lambda: by_api(rule_api), by_flow_task, by_cli, lambda: by_api(rule_api)):
        step()
        enqueue()
    by_api(api)  # a process on other (default) settings must not lower the level either
    enqueue()
    by_cli()
    enqueue()

    with engine.connect() as c:
        levels = (
            c.execute(
                text(
                    "SELECT payload ->> 'escalation_level' FROM availability_events"
                    " WHERE kind = 'overdue_escalated' ORDER BY seq"
                )
            )
            .scalars()
            .all()
        )
        outbox = c.execute(
            text("SELECT target, body ->> 'escalation_level' FROM notification_outbox")
        ).all()
        stored = c.execute(text("SELECT escalation_level FROM overdue_vehicles")).scalars().all()
    assert levels == ["2"]
    assert [tuple(r) for r in outbox] == [(HOOK, "2")]
    assert stored == [2]


def test_a_server_that_starts_raises_the_overdue_alerts_at_once(
    api, engine, database_url, tmp_path
):
    rental = _late(api, engine, minutes=180)
    server = _server(database_url, tmp_path)
    try:
        world = dataclasses.replace(api, url=server.url)
        deadline = time.monotonic() + 10
        with world.client("analyst") as c:
            while True:
                [entry] = c.get("/api/availability/overdue").json()
                if entry["alert_id"] is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        server.stop()
    assert entry["block_id"] == rental.id
    assert entry["alert_id"] is not None, "no alert until a refresh ran"
    assert entry["escalation_level"] == 3  # 3 h late under THRESHOLDS
