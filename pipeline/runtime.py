"""Running the pipeline on one machine: a local Prefect server and the five flows served here.

`fleet pipeline serve` (and `make run`) starts `prefect server start` as a child process with
its SQLite database under FLEET_DATA_DIR/prefect, waits until it answers, registers the five
deployments with their schedules, then runs their due flow runs in this process, each in a
thread of its own (not a subprocess per run, as Prefect's runner does: a fresh interpreter
that imports Prefect costs about a second of CPU, three times a minute, for runs that mostly
find nothing to do). On SIGINT/SIGTERM the served flows stop first, then the server. An
operator who runs their own Prefect server sets PREFECT_API_URL and nothing is started.

`fleet pipeline run FLOW` hands the run to that server when one answers (the deployment runs
where the scheduled ones run, and waits its turn beside them); else it calls the flow's
function directly, without Prefect.

Everything stays on this machine: analytics and the UI's promotional content are switched
off, so nothing tries to reach the internet.

Prefect is imported inside the functions: the environment (PREFECT_HOME above all) has to be
in place before Prefect reads its settings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from db.errors import FleetError, InvalidInput
from fleet.settings import Settings

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments.runner import RunnerDeployment

LOCAL_HOST = "127.0.0.1"
PID_FILE = "fleet-prefect-server.pid"
LOG_FILE = "server.log"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
DEPLOYMENT_TAGS = ["fleet"]
# How often `fleet pipeline serve` asks its server for due runs. One small query: a
# `fleet pipeline run` waits at most this long before its run starts.
POLL_SECONDS = 1.0
# How often a served run sends its log lines to the server (Prefect's default is 2 s): the
# `fleet pipeline run` that follows the run sees them soon after they are written.
LOG_BATCH_SECONDS = 0.5


# Runs `prefect` in the child. On Linux it first asks the kernel to send it SIGTERM when the
# process that started it dies, so even a `kill -9` of `fleet pipeline serve` leaves no
# server behind; the parent id check covers a parent that died before the request was made.
_LAUNCHER = """
import os, runpy, sys
if sys.platform == "linux":
    import ctypes, signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        sys.exit(0)
sys.argv = ["prefect", *sys.argv[2:]]
runpy.run_module("prefect", run_name="__main__", alter_sys=True)
"""


class PrefectUnavailable(FleetError):
    """The local Prefect server could not be started or did not answer."""

    code = "prefect_unavailable"


def prefect_home(settings: Settings) -> Path:
    """Return where the local Prefect keeps its database, logs and UI files."""
    return settings.data_dir / "prefect"


def prefect_environment(home: Path) -> dict[str, str]:
    """Return the environment that keeps Prefect local and quiet, with its files under home."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        # A prompt in a background process would wait forever.
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": str(LOG_BATCH_SECONDS),
    }


def configure_environment(settings: Settings) -> Path:
    """Put the local Prefect environment in place for this process and its children.

    A variable the operator already set wins. Returns the Prefect home in effect.
    """
    for key, value in prefect_environment(prefect_home(settings)).items():
        os.environ.setdefault(key, value)
    home = Path(os.environ["PREFECT_HOME"]).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def api_health(api_url: str, *, timeout: float = 2.0) -> bool:
    """Return whether a Prefect API answers its health check at api_url."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as reply:
            return reply.status == 200 and reply.read().strip() == b"true"
    except (OSError, ValueError):
        return False


def ui_url_for(api_url: str) -> str:
    """Return the UI address that belongs to a Prefect API address."""
    base = api_url.rstrip("/")
    return (base[: -len("/api")] if base.endswith("/api") else base) + "/"


@dataclass
class PrefectServer:
    """A `prefect server start` child process and where it listens."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    home: Path

    @property
    def api_url(self) -> str:
        """The API address clients use (PREFECT_API_URL)."""
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """The dashboard address for a browser."""
        return f"http://{self.host}:{self.port}/"

    @property
    def log_path(self) -> Path:
        """Where the server's own output goes."""
        return self.home / LOG_FILE

    def running(self) -> bool:
        """Return whether the server process is still alive."""
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server and anything it started; wait until they are gone."""
        _stop_group(self.process, timeout)
        with contextlib.suppress(FileNotFoundError):
            (self.home / PID_FILE).unlink()


def _stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    # The server runs in its own process group (start_new_session), so the group id is its
    # pid and one signal reaches it and any worker it spawned.
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait(timeout=timeout)
    # Whatever is left of the group once its leader exited goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def port_in_use(host: str, port: int) -> bool:
    """Return whether something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def start_server(
    *,
    home: Path,
    port: int,
    host: str = LOCAL_HOST,
    timeout: float = START_TIMEOUT,
) -> PrefectServer:
    """Start `prefect server start` as a child process and wait until its API answers.

    The server's output goes to home/server.log; when it does not come up, the error quotes
    the end of that log.
    """
    if not 1 <= port <= 65535:
        raise InvalidInput(
            f"the Prefect port must be between 1 and 65535, got {port}",
            field="prefect_port",
            hint="set FLEET_PREFECT_PORT to a free port, such as 4200",
        )
    home = Path(home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    _stop_leftover(home)
    if port_in_use(host, port):
        api = f"http://{host}:{port}/api"
        raise PrefectUnavailable(
            f"port {port} is already in use"
            + (" by a Prefect server" if api_health(api) else " by another program"),
            field="prefect_port",
            hint=f"set FLEET_PREFECT_PORT to a free port, or PREFECT_API_URL={api} to use"
            " the Prefect server that is running there",
        )
    env = {**os.environ, **_server_environment(home)}
    # The server must not try to reach itself through a URL meant for clients.
    env.pop("PREFECT_API_URL", None)
    log = (home / LOG_FILE).open("ab")
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(port),
                "--analytics-off",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the terminal reaches this process, which stops the
            # flows first and then the server, instead of killing the server mid-run.
            start_new_session=True,
        )
    finally:
        log.close()
    server = PrefectServer(process=process, host=host, port=port, home=home)
    (home / PID_FILE).write_text(f"{process.pid} {os.getpid()}\n")
    try:
        _wait_until_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _server_environment(home: Path) -> dict[str, str]:
    # The operator's own choices (say, a PostgreSQL database for Prefect) stay in force.
    return {k: v for k, v in prefect_environment(home).items() if k not in os.environ} | {
        "PREFECT_HOME": str(home)
    }


def _wait_until_healthy(server: PrefectServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            raise PrefectUnavailable(
                f"the Prefect server exited with code {server.process.returncode}"
                f" before it answered; the end of {server.log_path}:\n{_tail(server.log_path)}",
                hint="fix what the log says, or set PREFECT_API_URL to a Prefect server"
                " that is running",
            )
        if api_health(server.api_url, timeout=1.0):
            return
        time.sleep(0.25)
    raise PrefectUnavailable(
        f"the Prefect server did not answer at {server.api_url} within {timeout:.0f} s;"
        f" the end of {server.log_path}:\n{_tail(server.log_path)}",
        hint="a slow first start migrates Prefect's database; try again",
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_leftover(home: Path) -> None:
    """Stop a server a previous `fleet pipeline serve` left behind when it was killed hard."""
    pid_file = home / PID_FILE
    try:
        server_pid, owner_pid = (int(x) for x in pid_file.read_text().split())
    except (OSError, ValueError):
        return
    if _alive(owner_pid):
        return  # its owner still runs and will stop it; the port check reports the clash
    if _alive(server_pid) and b"prefect" in _cmdline(server_pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server_pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; /proc tells it apart where there is one.
    status = Path(f"/proc/{pid}/status")
    with contextlib.suppress(OSError):
        return "\nState:\tZ" not in status.read_text()
    return True


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def build_deployments() -> list[RunnerDeployment]:
    """Return a deployment per flow with its schedule, as `prefect.serve` takes them."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.deployments.runner import EntrypointType

    from pipeline.flows import FLOWS, SCHEDULES

    return [
        f.to_deployment(
            name=name,
            **SCHEDULES[name],
            # One run of a flow at a time; a run that comes while one is in flight (the next
            # scheduled one, or `fleet pipeline run`) waits its turn instead of being cancelled.
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="ENQUEUE"),
            tags=DEPLOYMENT_TAGS,
            description=f.description,
            paused=False,
            # By module, not file path: runs find the code wherever the process started.
            entrypoint_type=EntrypointType.MODULE_PATH,
            # Built the same whether or not this thread has an event loop running (Prefect
            # would hand back a coroutine there): this function is synchronous.
            _sync=True,
        )
        for name, f in FLOWS.items()
    ]


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so cleanup runs (the main thread only)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let a second Ctrl-C or SIGTERM not cut the server's shutdown short (an orphan)."""
    try:
        previous = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)
        }
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(settings: Settings, *, echo: Callable[[str], None] = print) -> None:
    """Serve the five flows on their schedules until SIGINT/SIGTERM, with a local server.

    Unless PREFECT_API_URL is set, a Prefect server is started on 127.0.0.1 at
    settings.prefect_port and stopped again when serving ends.
    """
    home = configure_environment(settings)
    server: PrefectServer | None = None
    with _terminate_as_interrupt():
        try:
            api_url = os.environ.get("PREFECT_API_URL")
            if not api_url:
                echo(f"fleet pipeline: starting the Prefect server (files in {home})")
                server = start_server(home=home, port=settings.prefect_port)
                api_url = server.api_url
                # The flow runs are child processes; they find the server through this.
                os.environ["PREFECT_API_URL"] = api_url
            echo(f"fleet pipeline: Prefect UI on {ui_url_for(api_url)}")
            _serve_flows(api_url, echo)
        except KeyboardInterrupt:
            pass
        finally:
            if server is not None:
                echo("fleet pipeline: stopping the Prefect server")
                with _signals_ignored():
                    server.stop()


def _serve_flows(api_url: str, echo: Callable[[str], None]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.flows import FLOWS, schedule_text

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        served: dict[UUID, Flow[..., Any]] = {}
        for deployment in build_deployments():
            served[deployment.apply(_sync=True)] = FLOWS[deployment.name]
            echo(f"fleet pipeline: serving {deployment.name} ({schedule_text(deployment.name)})")
        InProcessRunner(served, echo=echo).run()


@dataclass
class InProcessRunner:
    """Runs the due flow runs of some deployments in this process, one thread per run.

    It polls the server the way Prefect's runner does (which also marks the deployments
    ready in the UI), moves a due run to Pending (the server refuses while another run of
    the deployment holds its slot, and hands the run back later: ENQUEUE), then runs it with
    Prefect's flow engine in a thread. A deployment has at most one run in flight here.
    """

    flows: dict[UUID, Flow[..., Any]]
    echo: Callable[[str], None] = print
    poll_seconds: float = POLL_SECONDS
    stopping: threading.Event = field(default_factory=threading.Event)
    _busy: dict[UUID, threading.Thread] = field(default_factory=dict)

    def run(self) -> None:
        """Poll and run until stop() or KeyboardInterrupt, then wait for the runs in flight."""
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                while not self.stopping.is_set():
                    self._start_due(client)
                    self.stopping.wait(self.poll_seconds)
        finally:
            self.stopping.set()
            self._finish()

    def stop(self) -> None:
        """Ask run() to return (from another thread)."""
        self.stopping.set()

    def _start_due(self, client: Any) -> None:
        self._busy = {d: t for d, t in self._busy.items() if t.is_alive()}
        try:
            due = client.get_scheduled_flow_runs_for_deployments(
                deployment_ids=list(self.flows), scheduled_before=datetime.now(UTC), limit=50
            )
        except Exception as exc:  # the server restarting, a busy SQLite: the next poll
            self.echo(f"fleet pipeline: could not ask the Prefect server for due runs: {exc}")
            return
        for flow_run in sorted(due, key=lambda r: r.next_scheduled_start_time or r.created):
            deployment = flow_run.deployment_id
            if deployment is None or deployment in self._busy or deployment not in self.flows:
                continue  # its turn comes when the run in flight has ended
            thread = threading.Thread(
                target=self._execute,
                args=(self.flows[deployment], flow_run),
                name=f"flow-run-{flow_run.name}",
                daemon=True,
            )
            self._busy[deployment] = thread
            thread.start()

    def _execute(self, chosen: Flow[..., Any], flow_run: FlowRun) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType
        from prefect.flow_engine import run_flow
        from prefect.states import Pending

        try:
            with get_client(sync_client=True) as client:
                answer = client.set_flow_run_state(flow_run.id, Pending())
                if answer.state is None or answer.state.type != StateType.PENDING:
                    return  # waiting for its slot, or cancelled meanwhile
                flow_run = client.read_flow_run(flow_run.id)
            run_flow(chosen, flow_run=flow_run, return_type="state")
        except Exception as exc:  # one failed run must not stop the others being served
            self.echo(f"fleet pipeline: {chosen.name} run {flow_run.name} crashed: {exc}")

    def _finish(self, timeout: float = STOP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._busy.values():
            thread.join(max(0.0, deadline - time.monotonic()))


def pipeline_api(settings: Settings) -> str | None:
    """Return the address of the Prefect server the pipeline is served on, if one answers.

    PREFECT_API_URL when it is set, else the local server `fleet pipeline serve` starts.
    """
    configured = os.environ.get("PREFECT_API_URL")
    api_url = configured or f"http://{LOCAL_HOST}:{settings.prefect_port}/api"
    # A quick look: no server is the common case on a laptop, and it answers in
    # milliseconds when it is there.
    return api_url if api_health(api_url, timeout=1.0) else None


@dataclass
class TriggeredRun:
    """A flow run `fleet pipeline run` handed to the Prefect server, once it ended."""

    flow: str
    flow_run_id: UUID
    name: str
    state: str  # COMPLETED, FAILED, CRASHED, CANCELLED
    message: str
    url: str

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.state == "COMPLETED"


WAITING_NOTE_SECONDS = 15.0


def trigger_flow(
    name: str, api_url: str, *, echo: Callable[[str], None] = print, poll: float = 0.3
) -> TriggeredRun | None:
    """Create a run of the flow's deployment on the server, print its log lines, wait for it.

    Returns None when the server has no such deployment (then the caller runs the flow
    itself). A run that comes beside a scheduled one waits for its slot (ENQUEUE).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        try:
            deployment = client.read_deployment_by_name(f"{name}/{name}")
        except ObjectNotFound:
            return None
        flow_run = client.create_flow_run_from_deployment(
            deployment.id, tags=["manual"], idempotency_key=None
        )
        url = f"{ui_url_for(api_url).rstrip('/')}/runs/flow-run/{flow_run.id}"
        echo(f"{name}: run {flow_run.name} handed to the Prefect server ({url})")
        logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        seen = 0
        started = time.monotonic()
        noted = False
        final_at: float | None = None
        while True:
            run = client.read_flow_run(flow_run.id)
            for line in client.read_logs(
                log_filter=logs, offset=seen, sort=LogSort.TIMESTAMP_ASC, limit=200
            ):
                seen += 1
                echo(line.message)
            state = run.state
            if state is not None and state.is_final():
                # The last lines reach the server a log batch after the run ended.
                if final_at is None:
                    final_at = time.monotonic()
                elif time.monotonic() - final_at > LOG_BATCH_SECONDS * 3:
                    return TriggeredRun(
                        flow=name,
                        flow_run_id=run.id,
                        name=run.name,
                        state=state.type.value,
                        message=state.message or state.name or "",
                        url=url,
                    )
            elif not noted and time.monotonic() - started > WAITING_NOTE_SECONDS:
                noted = True
                waiting = state.name if state is not None else "Scheduled"
                echo(
                    f"{name}: still {waiting}: it waits for the run in flight to end, or for"
                    " `fleet pipeline serve` (or a worker) to pick it up"
                )
            time.sleep(poll)


def run_directly(
    name: str,
    *,
    retries: int = 0,
    log: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
    retry_delay: float | None = None,
) -> Any:
    """Run the flow's function once, now, in this process, without Prefect; return its result.

    No Prefect server is needed (none is started): its tasks run as plain functions and its
    log lines go to log. No retries unless asked: an operator running a flow by hand wants
    to see a failure at once.
    """
    from pipeline.flows import RETRY_DELAY_SECONDS, direct_run, get_flow

    chosen = get_flow(name)
    delay = RETRY_DELAY_SECONDS if retry_delay is None else retry_delay
    for attempt in range(retries + 1):
        try:
            with direct_run(log, progress):
                return chosen.fn()
        except Exception as exc:
            if attempt == retries:
                raise
            log(f"{name} failed ({exc}); trying again in {delay:.0f} s")
            time.sleep(delay)
    raise AssertionError("unreachable")


def run_flow(name: str, settings: Settings, *, retries: int = 0) -> Any:
    """Run one flow once, now; return what it returned (a TriggeredRun if a server ran it).

    With a Prefect server serving the pipeline, the run goes there; else the flow's function
    runs here without Prefect.
    """
    configure_environment(settings)
    api_url = pipeline_api(settings)
    if api_url is not None:
        triggered = trigger_flow(name, api_url)
        if triggered is not None:
            return triggered
    return run_directly(name, retries=retries)
