"""`fleet serve --workers N`: the supervisor process and its workers' entry point.

`fleet serve` checks the database, then execs `python -m api.workers` (same PID): this module
imports only the standard library and uvicorn. Workers come from a fork server started once
(multiprocessing's "forkserver"), which imports the application's code (`api.preload`:
FastAPI, Panel, Bokeh, every page's view) before it forks the first worker. So each worker,
the first ones and every replacement, starts with that code in memory and only builds its app
(`factory`): spawned, each re-imported it all (2.5 s of CPU), and on a busy machine workers
took 15 s to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import multiprocessing
import os
import select
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from uvicorn import Config
from uvicorn import _subprocess as uvicorn_subprocess
from uvicorn.supervisors.multiprocess import Multiprocess

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("fleet.workers")

_PR_SET_PDEATHSIG = 1
# After the supervisor died and the worker was asked to stop: how long it may take.
_ORPHAN_GRACE_SECONDS = 5.0
# Spawning a worker on a busy machine can take seconds before its ping thread runs; uvicorn's
# default 5 s kills such workers as hung, again and again. A worker that really hangs (its
# GIL held for 20 s) is still replaced.
HEALTHCHECK_SECONDS = 20
# The supervisor's PID, in its workers' environment: what they watch to end with it.
SUPERVISOR_ENV = "FLEET_SUPERVISOR_PID"


def server_options(host: str, port: int) -> dict[str, Any]:
    """Return the uvicorn settings `fleet serve` uses, with one worker or many."""
    return dict(
        host=host,
        port=port,
        log_config=None,
        ws_per_message_deflate=True,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # A backstop only: streams end as soon as the exit signal comes (`on_exit_signal`).
        timeout_graceful_shutdown=3,
        timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
        proxy_headers=True,
    )


class Supervisor(Multiprocess):
    """uvicorn's supervisor, saying which worker died and which one took its place."""

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        if self.should_exit.is_set():
            return
        for old, new in zip(before, self.processes, strict=False):
            if old is not new:
                log.warning(
                    "worker [%s] died (%s); started worker [%s] in its place",
                    old.pid,
                    _exit_reason(old.exitcode),
                    new.pid,
                )


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "hung, killed"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def end_with_parent() -> None:
    """Make this worker stop when its supervisor dies, even by SIGKILL."""
    supervisor = int(os.environ.get(SUPERVISOR_ENV) or 0)
    if not supervisor or supervisor == os.getpid():
        return  # not a worker (a test building the app in-process)
    # The kernel's promise: SIGTERM to us when our parent (the fork server, which ends when
    # the supervisor does) dies, however it dies.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
    # And a watch of the supervisor itself (also if it died before prctl above, which a dead
    # parent would never trigger); a worker stuck in its shutdown is ended after a grace.
    try:
        handle = os.pidfd_open(supervisor)
    except ProcessLookupError:
        handle = None
    threading.Thread(target=_watch_parent, args=(handle, supervisor), daemon=True).start()


def _watch_parent(handle: int | None, pid: int) -> None:
    if handle is not None:
        select.select([handle], [], [])  # a process's pidfd becomes readable when it ends
    log.warning("supervisor [%s] is gone; worker [%s] stops", pid, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(_ORPHAN_GRACE_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def use_fork_server() -> None:
    """Have uvicorn start its workers from a fork server that has the app's code imported."""
    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # before the fork server starts: it inherits
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["api.preload"])
    uvicorn_subprocess.spawn = context  # type: ignore[assignment]


def factory() -> FastAPI:
    """Build a worker's application (uvicorn `--factory`), to live no longer than its parent."""
    end_with_parent()
    from api.app import create_app

    return create_app()


def on_exit_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` in this event loop when SIGTERM or SIGINT comes; return the undo.

    uvicorn waits for open responses before the lifespan stop, and a stream never ends by
    itself: the callback lets streams end first. The signal still reaches the handler that
    was there before (uvicorn's). Signals are only caught in the main thread, as uvicorn does.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        before = previous[sig]
        if callable(before):
            before(sig, frame)
        elif before == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in signals:
        signal.signal(sig, handler)

    def undo() -> None:
        for sig, before in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, before)

    return undo


def main(argv: list[str] | None = None) -> None:
    """Bind the port once and keep N workers serving on it."""
    parser = argparse.ArgumentParser(prog="python -m api.workers", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    # Only the supervisor imports these; workers re-import this module and stop above.
    from api import logs
    from db.database import resolve_url
    from fleet.settings import get_settings

    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)
    # Attaches to the embedded server `fleet serve` started (same PID, so the same handle),
    # which then stops when this process ends, as it did before the exec.
    url = resolve_url(settings.database_url, settings.data_dir)
    # Workers read settings from the environment: hand them the database resolved here.
    os.environ["FLEET_DATABASE_URL"] = url
    config = Config(
        "api.workers:factory",
        factory=True,
        workers=args.workers,
        **server_options(args.host, args.port),
    )
    use_fork_server()
    Supervisor(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    main()
