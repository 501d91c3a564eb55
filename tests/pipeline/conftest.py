"""Fixtures for the pipeline's flows: Prefect's test harness and settings aimed at the test DB."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_HOME, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from fleet.settings import get_settings
from pipeline import flows
from pipeline.runtime import prefect_environment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's test harness: a throwaway Prefect server and SQLite database for the module."""
    home = tmp_path_factory.mktemp("prefect-home")
    with temporary_settings(updates={PREFECT_HOME: home}), prefect_test_harness():
        yield
    for engine in flows._engines.values():
        engine.dispose()
    flows._engines.clear()


@pytest.fixture
def fleet_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Iterator[None]:
    """The flows' settings point at the test database (flows read them when a run starts)."""
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLEET_MATERIALIZE_DAYS", "3")
    # Levels start at 0, 30 and 60 minutes late, unlike the default 0, 2 h, 6 h, 24 h.
    monkeypatch.setenv("FLEET_OVERDUE_THRESHOLDS_MINUTES", "[0, 30, 60]")
    # No local Prefect server answers there: runs go to the harness, never to a real server.
    monkeypatch.setenv("FLEET_PREFECT_PORT", str(_free_port()))
    # What `fleet pipeline run` would set for its process, undone after the test.
    for key, value in prefect_environment(tmp_path / "prefect").items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
