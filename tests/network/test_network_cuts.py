"""Real network cuts between real hosts: every stream client ends with every event, once, in order.

The lab (tests/network/topology.py): PostgreSQL on `db`, `fleet serve` on `srv1` and `srv2`,
a WebSocket and an SSE client per server on `cli` (tests/network/clients.py), and a steady
writer per server at the switch. Three phases, writers running throughout:

1. srv1's cable to the database network is pulled for 10 s, then put back;
2. the client host's cable is pulled for 10 s, then put back;
3. 300 ms delay and 5 % loss each way on the client host's cable, for a minute.

Recovery is measured from the moment the cable is back to the first event a client receives
that was committed after it; the streams promise 2 s.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.figures import record
from tests.network.conftest import PYTHON, Running

CUT_SECONDS = 10.0
LATENCY_SECONDS = float(os.environ.get("FLEET_NETCUT_LATENCY_SECONDS", "60"))
PROMISE = 2.0
PER_SERVER = 1  # WebSocket + SSE clients per server
WRITES_PER_SECOND = 4.0  # per server


@dataclass
class Client:
    seqs: list[tuple[float, int]] = field(default_factory=list)
    states: list[tuple[float, str, str]] = field(default_factory=list)


def read_clients(path: Path) -> dict[str, Client]:
    clients: dict[str, Client] = defaultdict(Client)
    if not path.exists():
        return clients
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # the line being written right now
            continue
        if "seq" in r:
            clients[r["c"]].seqs.append((r["t"], r["seq"]))
        else:
            clients[r["c"]].states.append((r["t"], r["state"], r.get("reason", "")))
    return clients


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def recovery_times(
    clients: dict[str, Client], names: list[str], restored: float, created: dict[int, float]
) -> dict[str, float | None]:
    """Per client: seconds from the restore to its first event committed after the restore."""
    out: dict[str, float | None] = {}
    for name in names:
        after = [t for t, s in clients[name].seqs if created.get(s, 0) >= restored]
        out[name] = min(after) - restored if after else None
    return out


@pytest.mark.slow
def test_streams_survive_real_network_cuts(lab: Running, capsys: pytest.CaptureFixture) -> None:
    net = lab.lab
    streams_out = lab.tmp / "clients.jsonl"
    writes_out = lab.tmp / "writes.jsonl"
    clients_proc = net.start(
        "cli",
        [PYTHON, "-m", "tests.network.clients", "streams", str(streams_out), lab.token,
         str(lab.seq), str(PER_SERVER), *lab.servers],
        lab.tmp / "clients.log",
    )  # fmt: skip
    names = [f"srv{s}-{k}{i}" for s in (1, 2) for k in ("ws", "sse") for i in range(PER_SERVER)]
    on_srv1 = [n for n in names if n.startswith("srv1")]
    wait_for(
        "every client to connect",
        lambda: all(
            any(st == "connected" for _, st, _ in read_clients(streams_out)[n].states)
            for n in names
        ),
        timeout=30,
    )
    half = len(lab.vehicles) // 2
    writers = net.start(
        "hub",
        [PYTHON, "-m", "tests.network.clients", "write", str(writes_out), lab.token,
         str(WRITES_PER_SECOND),
         f"{lab.servers[0]}={','.join(map(str, lab.vehicles[:half]))}",
         f"{lab.servers[1]}={','.join(map(str, lab.vehicles[half:]))}"],
        lab.tmp / "writers.log",
    )  # fmt: skip

    def live_since(moment: float, who: list[str]) -> Callable[[], bool]:
        def check() -> bool:
            got = read_clients(streams_out)
            return all(any(t >= moment for t, _ in got[n].seqs) for n in who)

        return check

    wait_for("events to flow to every client", live_since(time.time() + 1, names), timeout=30)

    # 1. srv1 loses the database; its clients still reach it.
    db_cut = time.time()
    net.unplug("s1b")
    time.sleep(CUT_SECONDS)  # holding the cut, not waiting for a state
    net.plug("s1b")
    db_back = time.time()
    wait_for(
        "srv1's clients to be live after the database link came back",
        live_since(db_back + PROMISE + 0.5, names),
        timeout=40,
    )

    # 2. The client host loses its cable: every client loses both servers.
    cli_cut = time.time()
    net.unplug("cli")
    time.sleep(CUT_SECONDS)
    net.plug("cli")
    cli_back = time.time()
    wait_for(
        "every client to be live after the client link came back",
        live_since(cli_back + PROMISE + 0.5, names),
        timeout=40,
    )

    # 3. A bad mobile link between the clients and the servers.
    slow_from = time.time()
    net.set_wire(delay=0.3, loss=0.05)
    time.sleep(LATENCY_SECONDS)
    net.set_wire(delay=0.0, loss=0.0)
    slow_to = time.time()

    net.stop(writers)
    events = lab.events()
    expected = [int(s) for s, _ in events]
    created = {int(s): at for s, at in events}
    wait_for(
        f"every client to reach the newest event {expected[-1]}",
        lambda: all(
            any(s == expected[-1] for _, s in read_clients(streams_out)[n].seqs) for n in names
        ),
        timeout=30,
    )
    net.stop(clients_proc)
    got = read_clients(streams_out)

    # -- the figures ----------------------------------------------------------------------
    writes = [json.loads(line) for line in writes_out.read_text().splitlines() if line]
    failed = [w for w in writes if w["code"] != 200]
    db_rec = recovery_times(got, names, db_back, created)
    cli_rec = recovery_times(got, names, cli_back, created)
    said = {
        n: sorted({f"{st} ({why})" if why else st for t, st, why in got[n].states
                   if cli_cut <= t <= cli_back and st != "connecting"})
        for n in names
    }  # fmt: skip
    said_db = {
        n: sorted({f"{st} ({why})" if why else st for t, st, why in got[n].states
                   if db_cut <= t <= db_back + PROMISE and st != "connecting"})
        for n in names
    }  # fmt: skip
    slow_lag = [
        t - created[s] for n in names for t, s in got[n].seqs if slow_from + 5 <= t <= slow_to
    ]
    slow_drops = {
        n: sum(
            1 for t, st, _ in got[n].states if st == "reconnecting" and slow_from <= t <= slow_to
        )
        for n in names
    }
    report = [
        f"events committed: {len(expected)} (seq {expected[0]}..{expected[-1]});"
        f" writes {len(writes)}, of which not 200: {len(failed)}",
        "database cut of srv1 (10 s): recovery after the link came back, per client: "
        + ", ".join(f"{n} {v:.2f} s" if v is not None else f"{n} none" for n, v in db_rec.items()),
        "  what clients said during it: " + "; ".join(f"{n}: {v}" for n, v in said_db.items()),
        "client host cut (10 s): recovery per client: "
        + ", ".join(f"{n} {v:.2f} s" if v is not None else f"{n} none" for n, v in cli_rec.items()),
        "  what clients said during it: " + "; ".join(f"{n}: {v}" for n, v in said.items()),
        f"300 ms + 5 % loss for {LATENCY_SECONDS:.0f} s: event lag median"
        f" {statistics.median(slow_lag):.2f} s, max {max(slow_lag):.2f} s;"
        f" reconnects per client {slow_drops}",
    ]
    for n in names:
        seqs = [s for _, s in got[n].seqs]
        report.append(
            f"{n}: received {len(seqs)}, duplicates {len(seqs) - len(set(seqs))},"
            f" missing {len(set(expected) - set(seqs))},"
            f" out of order {sum(1 for a, b in itertools.pairwise(seqs) if b <= a)}"
        )
    text = "\n".join(report)
    with capsys.disabled():  # the figures are this test's output, shown even when it passes
        sys.stdout.write("\n" + text + "\n")
    (lab.tmp / "report.txt").write_text(text + "\n")
    figure = [v for n, v in db_rec.items() if n in on_srv1 and v is not None]
    record("network: a server cut from the database for 10 s, its streams live again", figure)
    figure = [v for v in cli_rec.values() if v is not None]
    record("network: the clients' host cut from the servers for 10 s, streams live again", figure)
    record(
        f"network: 300 ms each way and 5 % loss for {LATENCY_SECONDS:.0f} s, commit to client",
        slow_lag,
    )

    # -- the promises ---------------------------------------------------------------------
    for n in names:
        assert [s for _, s in got[n].seqs] == expected, f"{n} did not get every event once:\n{text}"
    for n in names:
        assert any(st.startswith("reconnecting") for st in said[n]), (
            f"{n} never said it was reconnecting while its link was cut:\n{text}"
        )
    late = {n: v for n, v in cli_rec.items() if v is None or v > PROMISE}
    assert not late, f"after the client cut, streams were live again only after {late}:\n{text}"
    late = {n: v for n, v in db_rec.items() if n in on_srv1 and (v is None or v > PROMISE)}
    assert not late, f"after srv1's database cut, its streams were live only after {late}:\n{text}"
