"""A cable with a knob: two TAP devices and the Ethernet frames between them, delayed or lost.

    python -m tests.network.wire HOST_SIDE SWITCH_SIDE CONTROL_FILE

Run in the hub namespace. It creates both TAP devices there; the harness then moves
HOST_SIDE into the client host's namespace and adds SWITCH_SIDE to the bridge. Every frame is
passed on after `delay` seconds unless a random draw below `loss` drops it, both directions,
like `tc qdisc add ... netem delay 300ms loss 5%` on each end of a veth. Why not netem: a
kernel without `sch_netem` (the Firecracker VMs the suite runs on) has no other way to delay
or drop packets (no nftables/iptables either), and TCP must meet real loss, not a proxy's.

CONTROL_FILE holds JSON {"delay": seconds, "loss": 0..1}; it is read again when it changes.
"ready" is printed once both devices exist.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import random
import select
import struct
import sys
import time
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def run(host_side: str, switch_side: str, control: Path) -> None:
    a, b = open_tap(host_side), open_tap(switch_side)
    peer = {a: b, b: a}
    # Constant delay per direction keeps frames in order, as netem's does.
    queues: dict[int, collections.deque[tuple[float, bytes]]] = {
        a: collections.deque(),
        b: collections.deque(),
    }
    delay, loss, seen = 0.0, 0.0, 0.0
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        try:
            mtime = control.stat().st_mtime
            if mtime != seen:
                seen = mtime
                mode = json.loads(control.read_text() or "{}")
                delay, loss = float(mode.get("delay", 0)), float(mode.get("loss", 0))
        except (OSError, ValueError):
            pass  # no file yet, or half written: keep the last mode
        now = time.monotonic()
        due = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min([*due, now + 0.1]) - now)
        readable, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if loss and random.random() < loss:
                    continue
                queues[peer[fd]].append((now + delay, frame))
        for fd, q in queues.items():
            while q and q[0][0] <= now:
                _, frame = q.popleft()
                # A device that is down (a pulled cable) refuses it: the frame is lost.
                with contextlib.suppress(OSError):
                    os.write(fd, frame)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
