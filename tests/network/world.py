"""Database side of the harness, run on a host of the lab (the test runner cannot reach it).

python -m tests.network.world setup URL   -> {"token", "vehicles", "seq"} as JSON
python -m tests.network.world events URL SINCE -> {"events": [[seq, created_epoch], ...]}
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from db import auth, migrate
from db.database import EMBEDDED_DATABASE, ensure_database, make_engine

VEHICLES = 4


def _wait_for_server(url: str, timeout: float = 60) -> None:
    # The postmaster was just started next door: poll until it takes connections.
    engine = make_engine(url, poolclass=None)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as c:
                    c.execute(text("SELECT 1"))
                return
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


def setup(server_url: str) -> dict[str, object]:
    """Create and migrate the fleet database, load a small world, issue the clients' token."""
    from tests.conftest import add_vehicle, build_world  # the suite's reference fleet

    _wait_for_server(server_url)
    ensure_database(server_url, EMBEDDED_DATABASE)
    url = make_url(server_url).set(database=EMBEDDED_DATABASE).render_as_string(False)
    engine = make_engine(url)
    with engine.begin() as c:
        migrate.upgrade(c)
        world = build_world(c)
        vehicles = [add_vehicle(c, world, f"B NC {n}").id for n in range(VEHICLES)]
        token = auth.issue_token(
            c, user_id=world.agent.id, kind="api", lifetime=timedelta(hours=2)
        ).token
    with engine.connect() as c:
        seq = c.execute(text("SELECT coalesce(max(seq), 0) FROM availability_events")).scalar()
    engine.dispose()
    return {"url": url, "token": token, "vehicles": vehicles, "seq": seq}


def events(url: str, since: int) -> dict[str, object]:
    """Every committed event after `since`: the truth the clients are checked against."""
    engine = make_engine(url)
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT seq, extract(epoch FROM created_at)::float8 FROM availability_events"
                " WHERE seq > :s ORDER BY seq"
            ),
            {"s": since},
        ).all()
    engine.dispose()
    return {"events": [[seq, at] for seq, at in rows]}


def main(argv: list[str]) -> None:
    if argv[0] == "setup":
        sys.stdout.write(json.dumps(setup(argv[1])) + "\n")
    elif argv[0] == "events":
        sys.stdout.write(json.dumps(events(argv[1], int(argv[2]))) + "\n")
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
