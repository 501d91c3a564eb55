"""The Prefect flows, run for real under Prefect's test harness against the test database."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from fleet.cli.main import app
from fleet.settings import PROJECT_ROOT
from pipeline import flows
from tests.conftest import add_vehicle, build_world
from tests.db.factories import booking, rental_under_way

NAMES = {
    "ingest-feeds",
    "materialize-availability",
    "refresh-overdue",
    "deliver-notifications",
    "archive-history",
}


@pytest.fixture
def late_car(committed: Engine) -> dict[str, int]:
    """A car due back 1-2 hours ago whose next customer picks up in about 6 hours."""
    with committed.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, "B FL 1")
        add_vehicle(c, world, "B FL 2")
        rental = rental_under_way(c, world, car, start=world.at(-26), end=world.at(-2))
        nxt = booking(c, world, car, start=world.at(6), end=world.at(12))
    return {"vehicle": car.id, "rental": rental.id, "next": nxt.id}


def test_the_five_flows_exist_with_their_names_retries_and_schedules():
    assert set(flows.FLOWS) == NAMES
    assert set(flows.SCHEDULES) == NAMES
    for name, f in flows.FLOWS.items():
        assert f.name == name
        assert f.retries == flows.RETRIES >= 1
        assert f.description
    assert flows.SCHEDULES["archive-history"] == {"cron": "0 3 * * *"}
    assert flows.schedule_text("refresh-overdue") == "every 1 min"
    assert flows.schedule_text("materialize-availability") == "every 5 min"


def test_an_unknown_flow_name_is_refused_with_the_names_that_exist():
    with pytest.raises(Exception, match="no pipeline flow named 'ingest'") as err:
        flows.get_flow("ingest")
    assert "ingest-feeds" in err.value.hint


def test_prefect_yaml_deploys_every_flow_with_its_entrypoint_and_schedule():
    project = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in project["deployments"]}

    assert set(deployments) == NAMES
    for name, d in deployments.items():
        path, function = d["entrypoint"].split(":")
        assert path == "pipeline/flows.py"
        assert (PROJECT_ROOT / path).is_file()
        assert getattr(flows, function).name == name, d["entrypoint"]
        assert d["work_pool"]["name"] == "fleet-process"
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        [schedule] = d["schedules"]
        expected = flows.SCHEDULES[name]
        if "cron" in expected:
            assert schedule["cron"] == expected["cron"]
            assert schedule["timezone"] == "UTC"
        else:
            assert timedelta(seconds=schedule["interval"]) == expected["interval"]


def test_refresh_overdue_flow_opens_the_alerts_with_the_configured_thresholds(
    harness, fleet_env, committed, late_car
):
    result = flows.refresh_overdue_flow()

    assert (result.overdue.open, result.overdue.new) == (1, 1)
    assert (result.conflicts.open, result.conflicts.detected) == (1, 1)
    with committed.connect() as c:
        [alert] = c.execute(
            text("SELECT block_id, escalation_level, resolved_at FROM overdue_vehicles")
        ).all()
        [conflict] = c.execute(text("SELECT block_id, cleared_at FROM conflict_alerts")).all()
    # 1-2 hours late is level 3 with thresholds 0, 30, 60 (it would be 1 with the defaults).
    assert (alert.block_id, alert.escalation_level, alert.resolved_at) == (
        late_car["rental"],
        3,
        None,
    )
    assert (conflict.block_id, conflict.cleared_at) == (late_car["next"], None)

    again = flows.refresh_overdue_flow()
    assert (again.overdue.new, again.conflicts.detected) == (0, 0)


def test_materialize_flow_fills_the_table_then_recomputes_nothing_unchanged(
    harness, fleet_env, committed, late_car
):
    first = flows.materialize_availability_flow()

    assert first.full and (first.vehicles, first.days, first.rows) == (2, 3, 6)
    with committed.connect() as c:
        assert c.execute(text("SELECT count(*) FROM availability_cache")).scalar_one() == 6
        mark = c.execute(
            text("SELECT value FROM pipeline_state WHERE name = 'materialize.seq'")
        ).scalar_one()
    assert mark["seq"] == first.to_seq and mark["days"] == 3

    second = flows.materialize_availability_flow()
    assert not second.full and second.vehicles == 0


def test_flow_runs_are_recorded_by_prefect(harness, fleet_env, committed, late_car):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    state = flows.refresh_overdue_flow(return_state=True)
    assert state.is_completed()

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["refresh-overdue"]))
        )
    assert runs and all(r.state_type.value == "COMPLETED" for r in runs)


def test_fleet_pipeline_run_runs_a_flow_now_and_prints_its_summary(
    harness, fleet_env, committed, late_car
):
    result = CliRunner().invoke(app, ["pipeline", "run", "refresh-overdue", "--json"])

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["flow"] == "refresh-overdue"
    assert body["result"]["overdue"]["new"] == 1
    with committed.connect() as c:
        assert c.execute(text("SELECT count(*) FROM overdue_vehicles")).scalar_one() == 1


def test_fleet_pipeline_run_refuses_an_unknown_flow(harness, fleet_env):
    result = CliRunner().invoke(app, ["pipeline", "run", "materialise"])

    assert result.exit_code == 2
    assert "no pipeline flow named 'materialise'" in result.output
    assert "materialize-availability" in result.output


def test_importing_the_flows_loads_no_ingest_notify_or_archive_code():
    # The CLI and `prefect deploy` load this module; those three load only when their flow runs.
    probe = (
        "import sys, pipeline.flows;"
        " print([m for m in ('pipeline.ingest', 'pipeline.notify', 'pipeline.archive')"
        " if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT
    )
    assert out.stdout.strip() == "[]"
