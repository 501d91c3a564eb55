"""A flow whose machine dies mid-ingest never holds the feed lock for long.

PostgreSQL keeps a session whose client went silent; with it, the ingest's lock. Without
limits, every later run waited on that lock, silently, for hours. Now a run that meets the
lock fails within the lock timeout, saying why and leaving the file in the inbox, and
PostgreSQL itself ends the stuck session, after which the retry loads the file.

Here the link is a TCP proxy that goes silent while the dying run parses its file, its
transaction open and the lock taken: the session sits idle in its transaction and
`idle_in_transaction_session_timeout` ends it. A machine that dies in the middle of the COPY
leaves the session waiting for data, which only TCP keepalives end (a local proxy would answer
them): tests/network/test_dead_client.py cuts a real link for that.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from db.errors import Locked
from fleet.settings import Settings
from pipeline import flows
from pipeline.ingest import INGEST_LOCK, ingest_file
from tests.conftest import add_vehicle, build_world
from tests.netproxy import CuttableProxy

HEADER = (
    "external_id,version,updated_at,event,plate,customer_name,customer_phone,customer_email,"
    "pickup_location,return_location,pickup_at,return_at\n"
)
LOCK_TIMEOUT_S = 2.0
IDLE_IN_TRANSACTION_S = 4.0
GRACE_S = 3.0  # a busy machine's scheduling


def _contracts(plate: str, count: int, start: datetime) -> bytes:
    day = start.isoformat(timespec="minutes")
    rows = [
        f"D-{i},1,2026-11-25T08:00Z,created,{plate},Alice Schmidt,,,BER1,BER1,{day},"
        f"{(start + timedelta(hours=1 + i % 5)).isoformat(timespec='minutes')}\n"
        for i in range(count)
    ]
    return (HEADER + "".join(rows)).encode()


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def _holding_while_idle(engine: Engine) -> bool:
    """The ingest lock is held by a session idle in its transaction (its client parsing)."""
    with engine.connect() as c:
        return bool(
            c.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.objid = :k AND l.granted"
                    " AND a.state = 'idle in transaction'"
                ),
                {"k": INGEST_LOCK},
            ).scalar_one()
        )


def _lock_held(engine: Engine) -> bool:
    with engine.connect() as c:
        return bool(
            c.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k"),
                {"k": INGEST_LOCK},
            ).scalar_one()
        )


def _through(proxy: CuttableProxy, database_url: str) -> str:
    url = make_url(database_url)
    query = {k: v for k, v in url.query.items() if k != "host"}
    return url.set(host="127.0.0.1", port=proxy.port, query=query).render_as_string(
        hide_password=False
    )


def _target(database_url: str) -> int | str:
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    if socket_dir:  # the embedded server listens on a Unix socket only
        return f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
    return url.port or 5432


@pytest.mark.slow
def test_a_client_that_dies_mid_ingest_holds_the_feed_lock_only_for_a_while(
    committed, database_url, monkeypatch
):
    with committed.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, "B DC 1")
    monkeypatch.setenv("FLEET_DB_LOCK_TIMEOUT_SECONDS", str(LOCK_TIMEOUT_S))
    monkeypatch.setenv("FLEET_DB_IDLE_IN_TRANSACTION_SECONDS", str(IDLE_IN_TRANSACTION_S))
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
    proxy = CuttableProxy(_target(database_url)).start()
    doomed_settings = Settings(database_url=_through(proxy, database_url))
    settings = Settings(database_url=database_url)
    try:
        # A flow on another machine starts a big contract file: its sessions are the
        # pipeline's own (flows.engine_for), through a link that can die.
        doomed = flows.engine_for(doomed_settings)
        big = _contracts(car.plate, 400_000, start)

        def doomed_run() -> None:
            with contextlib.suppress(Exception):  # its machine is gone: no one hears of it
                ingest_file(doomed, name="contracts-big.csv", data=big, settings=doomed_settings)

        threading.Thread(target=doomed_run, daemon=True).start()
        _wait_for(
            "the big file's run to hold the lock while it parses",
            lambda: _holding_while_idle(committed),
            timeout=120,
        )
        proxy.silence()  # its machine dies: not a byte more, no FIN, nothing

        # The next run meets the lock: it fails within the lock timeout, saying why.
        engine = flows.engine_for(settings)
        small = _contracts(car.plate, 1, start + timedelta(days=1))
        started = time.monotonic()
        with pytest.raises(Locked, match="still holds the feed lock") as refused:
            ingest_file(engine, name="contracts-1.csv", data=small, settings=settings)
        assert time.monotonic() - started < LOCK_TIMEOUT_S + GRACE_S
        assert "stays in the inbox" in (refused.value.hint or "")

        # PostgreSQL ends the stuck session itself (idle in its transaction), lock and all.
        _wait_for(
            "the dead client's session to let go of the lock",
            lambda: not _lock_held(committed),
            timeout=IDLE_IN_TRANSACTION_S + 30,
        )
        result = ingest_file(engine, name="contracts-1.csv", data=small, settings=settings)
        assert result.status == "loaded" and result.applied == 1, result
        with committed.connect() as c:
            files = c.execute(text("SELECT name FROM feed_files ORDER BY id")).scalars().all()
        assert files == ["contracts-1.csv"]  # the dead run left nothing half-written
    finally:
        proxy.stop()
        for url in (doomed_settings.database_url, settings.database_url):
            gone = flows._engines.pop(flows.resolve_url(url, settings.data_dir), None)
            if gone is not None:
                gone.dispose()
