"""The counter app on a mobile connection: bytes for the first load and per idle minute.

Run from the repository root: `.venv/bin/python benchmarks/counter.py [--idle 60]`.
A fresh database with a demo fleet whose first lot has about `--vehicles` cars is served by
`fleet serve`; Debian's Chromium at phone size, driven by Playwright, signs in as a staff
user of that lot. The DevTools protocol adds up the bytes that crossed the wire (compressed,
with headers: `encodedDataLength`, and WebSocket/EventSource frames as they arrive):

- **first load**: from opening /counter/ with nothing cached, through sign-in, to the lot's
  board shown with its snapshot, the stream open and the service worker's cache filled;
- **idle minute**: the same page left open with nothing changing (heartbeats only).

The figures replace the counter section of docs/benchmarks.md (not with --no-docs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from realtime import (  # noqa: E402
    FleetServer,
    bench_database,
    die_on_sigterm,
    load_average,
    load_fleet,
    write_section,
)
from search import machine  # noqa: E402
from sqlalchemy import text  # noqa: E402

from db import auth, fleet  # noqa: E402
from db.database import make_engine  # noqa: E402
from fleet.settings import get_settings  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- counter:begin -->", "<!-- counter:end -->"
TARGET_FIRST_KB, TARGET_IDLE_KB = 300.0, 5.0


class Wire:
    """Bytes received by one page (and its service worker), as Chrome's network stack saw them."""

    def __init__(self, cdp: Any) -> None:
        self.total = 0
        self.by_kind: dict[str, int] = {}
        self._kind: dict[str, str] = {}
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.dataReceived", self._data)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")

    def _response(self, e: dict[str, Any]) -> None:
        url = e["response"]["url"]
        self._kind[e["requestId"]] = (
            "snapshot" if "/api/availability/realtime" in url
            else "stream" if "/api/availability/events" in url
            else "api" if "/api/" in url
            else "shell"
        )  # fmt: skip

    def _add(self, kind: str, n: int) -> None:
        self.total += n
        self.by_kind[kind] = self.by_kind.get(kind, 0) + n

    def _finished(self, e: dict[str, Any]) -> None:
        kind = self._kind.get(e["requestId"], "shell")
        if kind != "stream":  # a stream never finishes: its bytes are counted as they come
            self._add(kind, int(e["encodedDataLength"]))

    def _data(self, e: dict[str, Any]) -> None:
        if self._kind.get(e["requestId"]) == "stream":
            # Chrome reports no compressed size for a stream's chunks: count them as
            # decoded, an upper bound of what the gzip stream costs on the wire.
            self._add("stream", int(e.get("encodedDataLength") or e.get("dataLength") or 0))

    def _frame(self, e: dict[str, Any]) -> None:
        self._add("stream", len(e["response"]["payloadData"]))


def lot_user(url: str, password: str) -> tuple[str, int, int]:
    """An agent whose home is the lot with the most cars; return username, lot id, cars there."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            lot, cars = conn.execute(
                text(
                    "SELECT location_id, count(*) FROM vehicle_status_realtime"
                    " WHERE location_id IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
                )
            ).one()
            user = fleet.create_user(
                conn, username="bench-counter", full_name="Counter", role="agent",
                home_location_id=lot,
            )  # fmt: skip
            auth.set_password(conn, user_id=user.id, password=password)
        return "bench-counter", lot, cars
    finally:
        engine.dispose()


def measure(browser: Any, server_url: str, username: str, password: str, idle: float) -> dict:
    """One phone's first load, then `idle` seconds with the page open."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        wire = Wire(cdp)
        page.goto(f"{server_url}/counter/")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.locator(".board .vehicle").first.wait_for(timeout=30_000)
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30_000)
        page.wait_for_timeout(2_000)  # the worker's cache and the stream settle
        # The worker fetches the shell files again for its cache, in its own target, which this
        # page's session does not see: count the page's shell bytes twice (an upper bound).
        wire._add("worker cache (= shell)", wire.by_kind.get("shell", 0))
        first, parts = wire.total, dict(wire.by_kind)
        shown = page.locator(".board .vehicle").count()
        t0 = time.monotonic()
        page.wait_for_timeout(idle * 1000)
        idle_bytes = wire.total - first
        return {
            "first": first,
            "parts": parts,
            "shown": shown,
            "idle": idle_bytes,
            "idle_s": time.monotonic() - t0,
        }
    finally:
        context.close()


def section(r: dict, args: argparse.Namespace, where: str, lot_cars: int) -> str:
    kb = lambda n: n / 1024  # noqa: E731
    per_min = r["idle"] / r["idle_s"] * 60
    parts = ", ".join(f"{k} {kb(v):.1f} KB" for k, v in sorted(r["parts"].items()))
    first_ok = "met" if kb(r["first"]) < TARGET_FIRST_KB else "**MISSED**"
    idle_ok = "met" if kb(per_min) < TARGET_IDLE_KB else "**MISSED**"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        BEGIN,
        "## Counter app on a mobile connection: bytes on the wire",
        "",
        f"Measured {stamp} by `benchmarks/counter.py` on {where}; Chromium at phone size"
        " (390×844) on the same machine, so no real radio: the figures are bytes, not time.",
        "",
        "Bytes are what Chrome's network stack received, compressed, with headers"
        " (`encodedDataLength`; stream bytes as they arrive). *First load*: /counter/ with"
        " nothing cached, sign-in, the lot's snapshot, the stream opened and the service"
        " worker's cache filled (the worker's own fetches are not visible to the page's"
        " session, so they are counted as the shell's bytes again: an upper bound). *Idle*:"
        f" the page left open with nothing changing ({r['idle_s']:.0f} s, heartbeats only),"
        " per minute; stream bytes are counted decoded (Chrome gives no compressed size for"
        " a stream's chunks), an upper bound of the gzip stream; TCP/IP headers (some 60"
        " bytes a packet, one packet per heartbeat every 15 s) are not in any figure.",
        "",
        "| lot's cars | cars shown | first load | of which | idle, per minute |"
        " target first load | target idle |",
        "|---:|---:|---:|---|---:|---|---|",
        f"| {lot_cars} | {r['shown']} | {kb(r['first']):.1f} KB | {parts} |"
        f" {kb(per_min):.2f} KB | < {TARGET_FIRST_KB:.0f} KB: {first_ok} |"
        f" < {TARGET_IDLE_KB:.0f} KB: {idle_ok} |",
        "",
        f"Load average at the end: {load_average()}. Demo fleet: seed {args.seed},"
        f" {args.vehicles} vehicles at {args.locations} location(s).",
        END,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=200, help="cars in the demo fleet")
    parser.add_argument("--locations", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds measured")
    parser.add_argument("--database-url", default=get_settings().database_url)
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    die_on_sigterm()
    from playwright.sync_api import sync_playwright

    password = "bench-counter-pass"
    with (
        bench_database(args.database_url, "fleet_bench_counter") as db,
        tempfile.TemporaryDirectory(prefix="fleet-bench-server-") as workdir,
    ):
        where = machine(db.admin, db.where + " server")
        load_fleet(
            db.url,
            vehicles=args.vehicles,
            locations=args.locations,
            seed=args.seed,
            blocks_per_vehicle=None,
        )
        username, _, cars = lot_user(db.url, password)
        with FleetServer(db.url, log_dir=Path(workdir)) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            r = measure(browser, server.url, username, password, args.idle)
            browser.close()
        body = section(r, args, where, cars)
    print(body)
    if not args.no_docs:
        write_section(args.docs, BEGIN, END, body)


if __name__ == "__main__":
    main()
