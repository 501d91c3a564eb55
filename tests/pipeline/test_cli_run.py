"""`fleet pipeline run` without a server, one run at a time (ENQUEUE), and log sentences."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from pipeline import flows, runtime
from pipeline.archive import ArchiveSummary, MonthArchive
from pipeline.notify import DeliverySummary
from tests.conftest import add_vehicle, build_world
from tests.db.factories import rental_under_way

FLEET = Path(sys.executable).parent / "fleet"
# What a summary's repr looks like in a log line: `ArchiveSummary(cutoff=...)`, `open=3 new=1`.
REPR = re.compile(r"\b[A-Z]\w+\(\w+=|\b\w+=\d")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def late_rental(committed: Engine) -> int:
    with committed.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, "B RN 1")
        return rental_under_way(c, world, car, start=world.at(-26), end=world.at(-2)).id


def test_fleet_pipeline_run_without_a_server_runs_here_and_starts_no_prefect_server(
    database_url, committed, late_rental, tmp_path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "FLEET_DATABASE_URL": database_url,
        "FLEET_DATA_DIR": str(tmp_path),
        "FLEET_PREFECT_PORT": str(_free_port()),  # nothing listens there
        # Prefect's temporary server (15-60 s to start) is refused outright: a run that
        # needed it would fail here.
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
    }

    done = subprocess.run(
        [str(FLEET), "pipeline", "run", "refresh-overdue"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "refresh-overdue: 1 overdue (1 new, 0 escalated, 0 resolved)" in out
    assert "ephemeral" not in out.lower() and "Traceback" not in out
    with committed.connect() as c:
        assert c.execute(text("SELECT count(*) FROM overdue_vehicles")).scalar_one() == 1
    # No Prefect database was made for the run either.
    assert not (tmp_path / "prefect" / "prefect.db").exists()


def test_every_flow_run_directly_logs_sentences_never_reprs(fleet_env, committed, tmp_path):
    (tmp_path / "inbox").mkdir()  # FLEET_DATA_DIR/inbox, empty
    for name in flows.FLOWS:
        lines: list[str] = []
        runtime.run_directly(name, log=lines.append)
        assert lines, name
        for line in lines:
            assert not REPR.search(line), line


def test_an_archive_summary_says_what_it_archived_in_a_sentence():
    months = [
        MonthArchive("vehicle_status_log", date(2025, 12, 1), 40_000, 6, 40_000),
        MonthArchive("vehicle_status_log", date(2026, 9, 1), 35_525, 7, 35_525),
        MonthArchive("availability_events", date(2026, 1, 1), 1, 1, 1),
    ]
    summary = ArchiveSummary(cutoff=datetime(2026, 10, 1, tzinfo=UTC), months=months)

    assert summary.describe() == (
        "archived 75,525 status changes of 2025-12 to 2026-09 into 13 files;"
        " 1 events of 2026-01 into 1 file"
    )
    assert flows._describe(summary) == summary.describe()
    assert ArchiveSummary(cutoff=datetime(2026, 10, 1, tzinfo=UTC)).describe() == (
        "nothing older than 2026-10-01 to archive"
    )
    assert flows._describe(None) == "nothing to do"


def test_a_delivery_summary_says_what_it_sent_in_a_sentence():
    assert DeliverySummary().describe() == "nothing to send"
    assert DeliverySummary(enqueued=2, sent=1, retried=1).describe() == (
        "2 notifications queued, 1 sent, 1 to try again, 0 given up"
    )


def test_the_served_deployments_queue_a_run_that_comes_beside_one_in_flight():
    for deployment in runtime.build_deployments():
        limit = deployment.concurrency_options
        assert deployment.concurrency_limit == 1, deployment.name
        assert limit is not None and limit.collision_strategy.value == "ENQUEUE", deployment.name


def test_a_manual_run_beside_a_running_one_waits_for_its_slot_instead_of_being_cancelled(
    harness, fleet_env
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Pending

    deployment = next(d for d in runtime.build_deployments() if d.name == "refresh-overdue")
    deployment_id = deployment.apply(_sync=True)  # a browser test may have left a loop here
    with get_client(sync_client=True) as client:
        scheduled = client.create_flow_run_from_deployment(deployment_id)
        manual = client.create_flow_run_from_deployment(deployment_id, tags=["manual"])
        first = client.set_flow_run_state(scheduled.id, Pending())
        second = client.set_flow_run_state(manual.id, Pending())

    assert first.state.type == StateType.PENDING
    # The server hands it back for later: Scheduled ("AwaitingConcurrencySlot"), not Cancelled.
    assert second.state.type == StateType.SCHEDULED, second.state
    assert second.state.name == "AwaitingConcurrencySlot"
