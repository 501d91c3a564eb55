"""Ordinary use leaves no tracebacks in the server log: quick moves between dashboard pages."""

from __future__ import annotations

import time

from dashboard import pagesocket
from dashboard.app import PAGES
from tests.dashboard.conftest import sign_in

ROLES = ("agent", "manager", "analyst", "admin")


def wait_for_sockets_released(deadline_s: float = 30.0) -> int:
    """Poll until the server serves no page socket; return how many are still open."""
    deadline = time.monotonic() + deadline_s
    while pagesocket.open_sockets() and time.monotonic() < deadline:
        time.sleep(0.1)
    return pagesocket.open_sockets()


def test_moving_quickly_between_pages_logs_no_traceback(browser, api, log_tap):
    # Leave each page the moment its socket has said something: the browser closes the
    # socket while the server still has its first messages queued and is writing to it.
    for role in ROLES:
        context, page = sign_in(browser, api, role, "/board")
        try:
            for path in PAGES:
                with page.expect_websocket(timeout=20_000) as opened:
                    page.goto(f"{api.url}{path}", wait_until="commit")
                opened.value.wait_for_event("framereceived", timeout=20_000)
            page.goto(f"{api.url}/board")
            page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
        finally:
            context.close()
    # Every socket's handler has returned once none is open: all it received was handled.
    still_open = wait_for_sockets_released()
    assert log_tap.tracebacks() == []
    assert still_open == 0, f"{still_open} page sockets were never released after closing"
