"""`fleet analytics`: one query as table, JSON or CSV; the prompt survives a typo."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fleet.cli.main import app
from fleet.settings import get_settings
from tests.conftest import add_vehicle, build_world


@pytest.fixture
def analytics_cli(monkeypatch, database_url, committed, tmp_path):
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    with committed.begin() as c:
        world = build_world(c)
        add_vehicle(c, world, "B AN 1")
        add_vehicle(c, world, "B AN 2")
    runner = CliRunner()
    yield lambda *args, **kw: runner.invoke(app, ["analytics", *args], **kw)
    get_settings.cache_clear()


QUERY = "SELECT plate FROM fleet.vehicles ORDER BY plate"


def test_one_query_as_json_and_csv(analytics_cli):
    as_json = analytics_cli("--query", QUERY, "--json")
    as_csv = analytics_cli("--query", QUERY, "--csv")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [{"plate": "B AN 1"}, {"plate": "B AN 2"}]
    assert as_csv.stdout.splitlines() == ["plate", "B AN 1", "B AN 2"]


def test_bad_query_exits_2_with_the_reason(analytics_cli):
    r = analytics_cli("--query", "SELECT nope FROM fleet.vehicles")
    assert r.exit_code == 2 and "nope" in r.stderr


def test_prompt_runs_statements_and_survives_errors(analytics_cli):
    r = analytics_cli(input="SELECT nope;\nSELECT count(*) AS n\nFROM fleet.vehicles;\n.quit\n")
    assert r.exit_code == 0
    assert "error:" in r.stderr
    assert "│ 2 │" in r.stdout
