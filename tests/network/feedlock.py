"""Feed-lock probes run inside the lab's hosts (`python -m tests.network.feedlock CMD URL`).

- `doomed URL` takes the ingest lock in the pipeline's own session and streams a COPY without
  end (its machine is to die mid-COPY);
- `copying URL` / `locked URL` print 1 or 0: a COPY into the stage runs / the ingest lock is held;
- `ingest URL NAME` loads one small contract file and prints the outcome as JSON (`loaded`, or
  `locked` with the error's message and hint when another session holds the lock).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from db.database import make_engine
from db.errors import Locked
from fleet.settings import Settings
from pipeline import flows
from pipeline.ingest import INGEST_LOCK, _take_ingest_lock, ingest_file

HEADER = (
    "external_id,version,updated_at,event,plate,customer_name,customer_phone,customer_email,"
    "pickup_location,return_location,pickup_at,return_at\n"
)
PLATE = "B NC 0"  # tests/network/world.py's first car


def contracts(prefix: str, count: int, days_ahead: int) -> bytes:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(
        days=days_ahead
    )
    rows = [
        f"{prefix}-{i},1,2026-11-25T08:00Z,created,{PLATE},Alice Schmidt,,,BER1,BER1,"
        f"{start.isoformat(timespec='minutes')},"
        f"{(start + timedelta(hours=1 + i % 5)).isoformat(timespec='minutes')}\n"
        for i in range(count)
    ]
    return (HEADER + "".join(rows)).encode()


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(text(sql), {"k": INGEST_LOCK}).scalar_one())
    finally:
        engine.dispose()


def main(argv: list[str]) -> None:
    command, url = argv[0], argv[1]
    settings = Settings(database_url=url)
    if command == "doomed":
        # An ingest's session (the pipeline's own engine and settings) takes the feed lock and
        # streams a COPY, a row every 10 ms, for as long as it lives: mid-COPY whenever its
        # link is cut.
        engine = flows.engine_for(settings)
        with engine.begin() as conn:
            _take_ingest_lock(conn, "contracts-big.csv")
            conn.execute(text("CREATE TEMP TABLE doomed_stage (line text)"))
            cursor = conn.connection.dbapi_connection.cursor()
            with cursor.copy("COPY doomed_stage (line) FROM STDIN") as copy:
                for n in itertools.count():
                    copy.write(f"row {n}\n")
                    time.sleep(0.01)
    elif command == "copying":
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE 'COPY doomed_stage%'"
        )
        sys.stdout.write(f"{_count(url, sql)}\n")
    elif command == "locked":
        sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k"
        sys.stdout.write(f"{_count(url, sql)}\n")
    elif command == "ingest":
        started = time.monotonic()
        try:
            result = ingest_file(
                flows.engine_for(settings),
                name=argv[2],
                data=contracts("S", 1, 4),
                settings=settings,
            )
            out = {"status": result.status, "applied": result.applied, "note": result.note}
        except Locked as e:
            out = {"status": "locked", "message": e.message, "hint": e.hint}
        out["seconds"] = time.monotonic() - started
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
