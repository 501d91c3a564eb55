"""A flow whose machine dies in the middle of a COPY never holds the feed lock for long.

The dying run is on srv1 (which reaches the database over its backend cable); mid-COPY that
cable is pulled and stays out: PostgreSQL's session waits for data that never comes, holding
the ingest lock. Only TCP keepalives end such a session (no statement timeout fires while a
backend waits for its client): the project's sessions ask the server for probes after 10 s of
silence, three of them 5 s apart (db.database.SERVER_KEEPALIVES), where the kernel's default
waits two hours. Meanwhile a run on srv2 that meets the lock fails within its lock timeout,
saying why; once the dead session is gone, the retry loads the file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pytest

from tests.figures import record
from tests.network.conftest import PYTHON, ROOT, Running

LOCK_TIMEOUT_S = 3.0
# Keepalives: 10 s idle, then 3 probes 5 s apart; and the machine's own scheduling.
DEAD_SESSION_GONE_S = 10 + 3 * 5 + 15


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.slow
def test_a_client_whose_link_dies_mid_copy_holds_the_feed_lock_only_until_keepalives_end_it(
    lab: Running,
):
    net, url = lab.lab, lab.db_url

    def probe(what: str, role: str = "db") -> str:
        return net.run(role, [PYTHON, "-m", "tests.network.feedlock", what, url], cwd=ROOT).strip()

    env = {"PYTHONUNBUFFERED": "1", "FLEET_DB_LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT_S)}
    doomed = net.start(
        "srv1",
        [PYTHON, "-m", "tests.network.feedlock", "doomed", url],
        lab.tmp / "doomed.log",
        env={**os.environ, **env},
    )
    try:
        _wait_for("the big file's COPY to run", lambda: probe("copying") == "1", timeout=120)
        net.unplug("s1b")  # srv1's machine is gone for the database: mid-COPY, no FIN, nothing
        cut = time.monotonic()

        def ingest() -> dict:
            out = net.run(
                "srv2",
                [PYTHON, "-m", "tests.network.feedlock", "ingest", url, "contracts-1.csv"],
                cwd=ROOT,
                env={**os.environ, **env},
            )
            return json.loads(out.strip().splitlines()[-1])

        met = ingest()
        assert met["status"] == "locked", met
        assert "still holds the feed lock" in met["message"] and "inbox" in met["hint"]
        assert met["seconds"] < LOCK_TIMEOUT_S + 10, met  # a process start and a busy machine

        gone = _wait_for(
            "PostgreSQL to end the dead client's session (and its lock)",
            lambda: probe("locked") == "0",
            timeout=DEAD_SESSION_GONE_S + 30,
        )
        ended = time.monotonic() - cut
        record("network: a flow's machine cut mid-COPY, its session and lock ended", [ended])
        assert ended <= DEAD_SESSION_GONE_S + 30, gone
        retried = ingest()
        assert retried["status"] == "loaded" and retried["applied"] == 1, retried
    finally:
        net.stop(doomed)
