"""Running the pipeline on one machine: a local Prefect server and the five flows served here.

`fleet pipeline serve` (and `make run`) starts `prefect server start` as a child process with
its SQLite database under FLEET_DATA_DIR/prefect, waits until it answers, then serves the
flows on their schedules in this process (each run executes in a subprocess of this one). On
SIGINT/SIGTERM the served flows stop first, then the server. An operator who runs their own
Prefect server sets PREFECT_API_URL and nothing is started.

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
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from db.errors import FleetError, InvalidInput
from fleet.settings import Settings

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

LOCAL_HOST = "127.0.0.1"
PID_FILE = "fleet-prefect-server.pid"
LOG_FILE = "server.log"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
DEPLOYMENT_TAGS = ["fleet"]


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
            # A slow run is not joined by the next scheduled one; that one is skipped.
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW"),
            tags=DEPLOYMENT_TAGS,
            description=f.description,
            paused=False,
            # By module, not file path: runs find the code wherever the process started.
            entrypoint_type=EntrypointType.MODULE_PATH,
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
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.flows import FLOWS, schedule_text

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        deployments = build_deployments()
        for name in FLOWS:
            echo(f"fleet pipeline: serving {name} ({schedule_text(name)})")
        # Runner handles SIGTERM itself from here: it stops polling, cancels runs in flight
        # and returns, and the server is stopped after it.
        prefect_serve(*deployments, print_starting_message=False)


def run_flow(name: str, settings: Settings, *, retries: int = 0) -> Any:
    """Run one flow once, now, in this process; return what it returned.

    It reports to the local Prefect server when one answers (or to PREFECT_API_URL), else
    Prefect runs a temporary server of its own for the run. No retries unless asked: an
    operator running a flow by hand wants to see a failure at once.
    """
    configure_environment(settings)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.flows import get_flow

    chosen = get_flow(name)
    updates: dict[Any, Any] = {}
    if not os.environ.get("PREFECT_API_URL"):
        local = f"http://{LOCAL_HOST}:{settings.prefect_port}/api"
        if api_health(local):
            updates[PREFECT_API_URL] = local
    with temporary_settings(updates=updates):
        return chosen.with_options(retries=retries)()
