"""The local Prefect server and `fleet pipeline serve`: real processes, started and stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from pipeline.runtime import (
    PID_FILE,
    PrefectUnavailable,
    _stop_leftover,
    api_health,
    port_in_use,
    start_server,
    ui_url_for,
)
from tests.conftest import add_vehicle, build_world


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gone(pid: int) -> bool:
    """True when no process (and no process group) with this id is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    # A process that exited but was not reaped yet is a zombie: gone for our purposes.
    with contextlib.suppress(OSError):
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    return False


def _wait(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _api(api_url: str, path: str, body: dict | None = None) -> Any:
    request = urllib.request.Request(
        f"{api_url}{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    for _ in range(20):
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            # Prefect answers 503 while its SQLite database is busy (the runner writing).
            if exc.code != 503:
                raise
            time.sleep(0.5)
    raise AssertionError(f"{path} kept answering 503")


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No operator Prefect settings leak in; the Prefect home is a fresh temporary folder."""
    for key in list(os.environ):
        if key.startswith("PREFECT_"):
            monkeypatch.delenv(key)
    return tmp_path / "prefect"


def test_ui_url_is_the_api_url_without_api():
    assert ui_url_for("http://127.0.0.1:4200/api") == "http://127.0.0.1:4200/"
    assert ui_url_for("https://prefect.example.com/api/") == "https://prefect.example.com/"


def test_a_busy_port_is_refused_with_the_setting_to_change(local_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PrefectUnavailable, match=f"port {port} is already in use") as err:
            start_server(home=local_env, port=port)
    assert "FLEET_PREFECT_PORT" in err.value.hint
    assert not (local_env / PID_FILE).exists()


def test_a_server_that_cannot_start_is_reported_with_the_end_of_its_log(local_env, monkeypatch):
    monkeypatch.setenv(
        "PREFECT_SERVER_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:////nonexistent/dir/x.db"
    )
    port = _free_port()

    with pytest.raises(PrefectUnavailable, match="exited with code") as err:
        start_server(home=local_env, port=port, timeout=60)

    assert "unable to open database file" in err.value.message
    assert not port_in_use("127.0.0.1", port)


@pytest.mark.slow
def test_the_server_starts_answers_and_stops_leaving_no_process(local_env):
    port = _free_port()

    server = start_server(home=local_env, port=port)
    try:
        assert api_health(server.api_url)
        assert server.api_url == f"http://127.0.0.1:{port}/api"
        # Its SQLite database and log are under the Prefect home, not ~/.prefect.
        assert (local_env / "prefect.db").exists()
        assert (local_env / "server.log").exists()
        assert (local_env / PID_FILE).read_text().split()[0] == str(server.process.pid)
    finally:
        server.stop()

    assert server.process.poll() is not None
    assert _gone(server.process.pid)
    assert not api_health(server.api_url)
    assert not port_in_use("127.0.0.1", port)
    assert not (local_env / PID_FILE).exists()


@pytest.mark.slow
def test_a_server_left_behind_by_a_killed_owner_is_stopped_before_the_next_start(local_env):
    port = _free_port()
    server = start_server(home=local_env, port=port)
    try:
        # Its owner is killed hard (no cleanup): a process id that no longer exists.
        dead = subprocess.Popen(["true"])
        dead.wait()
        (local_env / PID_FILE).write_text(f"{server.process.pid} {dead.pid}\n")

        _stop_leftover(local_env)

        assert _gone(server.process.pid)
        assert not (local_env / PID_FILE).exists()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux-only")
def test_the_server_stops_when_the_process_that_started_it_is_killed_outright(local_env):
    port = _free_port()
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipeline.runtime import start_server;"
            " s = start_server(home=Path(sys.argv[1]), port=int(sys.argv[2]));"
            " print(s.process.pid, flush=True); time.sleep(300)",
            str(local_env),
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        server_pid = int(owner.stdout.readline())
        assert api_health(f"http://127.0.0.1:{port}/api")

        owner.kill()  # SIGKILL: no handler, no cleanup code runs
        owner.wait()

        _wait(lambda: _gone(server_pid), 30, "the orphaned server to stop")
        assert not port_in_use("127.0.0.1", port)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        owner.stdout.close()


@pytest.fixture
def fleet_for_serve(committed: Engine) -> list[int]:
    with committed.begin() as c:
        world = build_world(c)
        return [add_vehicle(c, world, f"B SV {n}").id for n in range(3)]


@pytest.mark.slow
def test_fleet_pipeline_serve_registers_runs_and_stops_with_its_server(
    local_env, database_url, committed, fleet_for_serve, tmp_path
):
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "FLEET_DATABASE_URL": database_url,
        "FLEET_DATA_DIR": str(tmp_path),
        "FLEET_PREFECT_PORT": str(port),
        "FLEET_MATERIALIZE_DAYS": "2",
        # The runner looks for due runs every second instead of every ten.
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    fleet = Path(sys.executable).parent / "fleet"
    log = (tmp_path / "serve.log").open("w+")
    serve = subprocess.Popen(
        [str(fleet), "pipeline", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deployments = _wait(
            lambda: (
                api_health(api_url) and len(d := _api(api_url, "/deployments/filter")) == 5 and d
            ),
            90,
            "the five deployments",
        )
        server_pid = int((tmp_path / "prefect" / PID_FILE).read_text().split()[0])
        by_name = {d["name"]: d for d in deployments}
        assert set(by_name) == {
            "ingest-feeds",
            "materialize-availability",
            "refresh-overdue",
            "deliver-notifications",
            "archive-history",
        }
        assert by_name["archive-history"]["schedules"][0]["schedule"]["cron"] == "0 3 * * *"
        assert by_name["refresh-overdue"]["schedules"][0]["schedule"]["interval"] == 60
        assert not any(d["paused"] for d in deployments)

        # An on-demand run through the API is picked up and run by the served process.
        run = _api(
            api_url, f"/deployments/{by_name['materialize-availability']['id']}/create_flow_run"
        )
        final = _wait(
            lambda: (
                (
                    s := _api(
                        api_url, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}}
                    )[0]["state_type"]
                )
                in ("COMPLETED", "FAILED", "CRASHED")
                and s
            ),
            90,
            "the materialize run to finish",
        )
        assert final == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        with committed.connect() as c:
            assert c.execute(text("SELECT count(*) FROM availability_cache")).scalar_one() == 6

        # `fleet pipeline run` hands its run to the served deployment and follows its log;
        # two at once, beside the scheduled ones: the later waits its turn, none is cancelled.
        manual = [
            subprocess.Popen(
                [str(fleet), "pipeline", "run", "refresh-overdue"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0] for p in manual]
        for p, out in zip(manual, outputs, strict=True):
            assert p.returncode == 0, out
            assert "handed to the Prefect server" in out, out
            assert "refresh-overdue: 0 overdue (0 new, 0 escalated, 0 resolved)" in out, out
        runs = _api(
            api_url,
            "/flow_runs/filter",
            {"flow_runs": {"deployment_id": {"any_": [by_name["refresh-overdue"]["id"]]}}},
        )
        assert not [r for r in runs if r["state_type"] == "CANCELLED"], runs
        # The served runs ran in this process's threads: no `prefect.engine` child per run.
        assert "prefect.engine" not in (tmp_path / "serve.log").read_text()

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
        assert _gone(server_pid)
        assert not port_in_use("127.0.0.1", port)
    finally:
        if serve.poll() is None:
            serve.terminate()  # a clean stop, so a failed test leaves no server either
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert f"Prefect UI on http://127.0.0.1:{port}/" in output
    assert "stopping the Prefect server" in output
