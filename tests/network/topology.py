"""Hosts as network namespaces joined by veth pairs to two bridges, and the cuts between them.

    backend 10.78.K.0/24 (bridge `brb` in the hub)     frontend 10.77.K.0/24 (bridge `brf`)
      db   10.78.K.2  ── db  ┐                        ┌─ s1f ── srv1 10.77.K.3
      srv1 10.78.K.3  ── s1b ┼─ brb              brf ─┼─ s2f ── srv2 10.77.K.4
      srv2 10.78.K.4  ── s2b ┘                        ├─ cli ══ cli  10.77.K.5
                                                      └─ (brf itself: 10.77.K.1, the writers)

Every port name on the left of a `──` lives in the hub namespace: taking it down is pulling
that host's cable out of the switch (the host's own interface loses carrier, its sockets get
no error, packets just stop), which is what a real cut looks like to both ends. The servers
have two interfaces, so one can lose the database while its clients still reach it.

The client host's cable (`══`) is a pair of TAP devices with tests/network/wire.py between
them instead of a veth pair: that program delays and drops frames (what `tc netem` would do;
this kernel has no netem). Its hub port `cli` is pulled like the others.

Namespace names carry a random suffix and K is random, so two runs at once (pytest-xdist, a
second developer) never share a name; interfaces are created directly inside the namespaces,
so nothing is added to the root namespace at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROLES = ("hub", "db", "srv1", "srv2", "cli")
ROOT = Path(__file__).resolve().parents[2]


class NamespacesUnavailable(RuntimeError):
    """This machine (or this user) cannot create network namespaces."""


def _run(*args: str, timeout: float = 20) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Lab:
    """One run's hosts, their addresses, and the processes started in them."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    net: int = field(default_factory=lambda: secrets.randbelow(250) + 2)
    created: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"fleet{self.suffix}-{role}"

    @property
    def db_ip(self) -> str:
        return f"10.78.{self.net}.2"

    def server_ip(self, n: int) -> str:
        """The frontend address of server 1 or 2 (where clients and writers reach it)."""
        return f"10.77.{self.net}.{n + 2}"

    @property
    def backend_subnet(self) -> str:
        return f"10.78.{self.net}.0/24"

    # -- building and tearing down -------------------------------------------------------

    def build(self, tmp: Path) -> None:
        """Create the namespaces, bridges and links; NamespacesUnavailable if not allowed."""
        try:
            _run("ip", "netns", "add", self.ns("hub"))
        except FileNotFoundError as exc:
            raise NamespacesUnavailable(f"iproute2 `ip` is not installed ({exc})") from exc
        except RuntimeError as exc:
            raise NamespacesUnavailable(str(exc)) from exc
        self.created.append(self.ns("hub"))
        for role in ROLES[1:]:
            _run("ip", "netns", "add", self.ns(role))
            self.created.append(self.ns(role))
        hub = self.ns("hub")
        for role in ROLES:
            _run("ip", "-n", self.ns(role), "link", "set", "lo", "up")
        for bridge in ("brb", "brf"):
            _run("ip", "-n", hub, "link", "add", bridge, "type", "bridge")
            _run("ip", "-n", hub, "link", "set", bridge, "up")
        _run("ip", "-n", hub, "addr", "add", f"10.77.{self.net}.1/24", "dev", "brf")
        k = self.net
        # (host, its interface, the hub's port, bridge, address)
        links = [
            ("db", "eth0", "db", "brb", f"10.78.{k}.2/24"),
            ("srv1", "back", "s1b", "brb", f"10.78.{k}.3/24"),
            ("srv2", "back", "s2b", "brb", f"10.78.{k}.4/24"),
            ("srv1", "front", "s1f", "brf", f"10.77.{k}.3/24"),
            ("srv2", "front", "s2f", "brf", f"10.77.{k}.4/24"),
        ]
        for host, ifname, port, bridge, addr in links:
            _run(
                "ip", "-n", hub, "link", "add", port, "type", "veth",
                "peer", "name", ifname, "netns", self.ns(host),
            )  # fmt: skip
            _run("ip", "-n", hub, "link", "set", port, "master", bridge, "up")
            _run("ip", "-n", self.ns(host), "addr", "add", addr, "dev", ifname)
            _run("ip", "-n", self.ns(host), "link", "set", ifname, "up")
        self._build_wire(tmp, f"10.77.{k}.5/24")

    def _build_wire(self, tmp: Path, addr: str) -> None:
        hub, cli = self.ns("hub"), self.ns("cli")
        self.control = tmp / "wire.json"
        self.set_wire(delay=0.0, loss=0.0)
        log = tmp / "wire.log"
        wire = self.start("hub", [sys.executable, "-m", "tests.network.wire", "clie", "cli",
                                  str(self.control)], log)  # fmt: skip
        deadline = time.monotonic() + 30
        while b"ready" not in log.read_bytes():
            if wire.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the wire did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        # The TAP keeps working for the wire after it moves to the client host.
        _run("ip", "-n", hub, "link", "set", "clie", "netns", cli)
        _run("ip", "-n", cli, "link", "set", "clie", "name", "eth0")
        _run("ip", "-n", cli, "addr", "add", addr, "dev", "eth0")
        _run("ip", "-n", cli, "link", "set", "eth0", "up")
        _run("ip", "-n", hub, "link", "set", "cli", "master", "brf", "up")

    def teardown(self) -> None:
        """Stop every process started here, then delete the namespaces (and so the links)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                # SIGINT is PostgreSQL's fast shutdown and a clean stop for the rest.
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()
        for name in reversed(self.created):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run("ip", "netns", "del", name)
        self.created.clear()

    # -- processes -----------------------------------------------------------------------

    def start(
        self, role: str, cmd: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start cmd on a host; its output goes to `log` (read it when something fails)."""
        out = log.open("wb")
        self.logs.append(out)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,  # the programs are modules of this repository
            # Its own process group: teardown signals the whole tree, never the test runner.
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def run(self, role: str, cmd: list[str], timeout: float = 120, **kwargs: object) -> str:
        """Run cmd on a host to completion; return its stdout."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns(role), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cmd} on {role} failed: {done.stderr[-3000:]}")
        return done.stdout

    # -- cuts ----------------------------------------------------------------------------

    def unplug(self, port: str) -> None:
        """Pull a host's cable at the switch (hub port `db`, `s1b`, `s1f`, `s2b`, `s2f`, `cli`)."""
        _run("ip", "-n", self.ns("hub"), "link", "set", port, "down")

    def plug(self, port: str) -> None:
        _run("ip", "-n", self.ns("hub"), "link", "set", port, "up")

    def set_wire(self, *, delay: float, loss: float) -> None:
        """Delay (seconds, each way) and loss (0..1, each way) on the client host's cable."""
        part = self.control.with_suffix(".part")
        part.write_text(json.dumps({"delay": delay, "loss": loss}))
        part.replace(self.control)  # atomic: the wire never reads half a file
