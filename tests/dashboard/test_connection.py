"""Losing the server: the bar says so, and the page catches up by itself when it is back."""

from __future__ import annotations

import re

from api.app import create_app
from db import status
from tests.api.conftest import ServerThread, free_port, server_settings
from tests.dashboard.conftest import screenshot, sign_in

# The page's outermost element, and the view's box inside its shadow root.
ROOT_CLASS = "document.querySelector('.fleet-stale') !== null"
VIEW_FILTER = """(() => {
  for (const e of document.querySelectorAll('*')) {
    const box = e.shadowRoot && e.shadowRoot.querySelector('.live-view');
    if (box) return getComputedStyle(box).filter;
  }
  return '';
})()"""


def test_browser_offline_shows_offline_then_live_again(browser, api):
    context, page = sign_in(browser, api, "agent", "/board")
    try:
        context.set_offline(True)
        page.wait_for_selector(".topbar [data-state=offline]", timeout=5_000)
        banner = page.locator(".fleet-banner")
        assert banner.inner_text().startswith("Offline (no network) since ")
        context.set_offline(False)
        page.wait_for_selector(".topbar [data-state=live]", timeout=10_000)
        banner.wait_for(state="hidden", timeout=5_000)
    finally:
        context.close()


def test_server_restart_reconnects_and_catches_up(browser, api, database_url, tmp_path, engine):
    settings = server_settings(database_url, tmp_path)
    port = free_port()
    server = ServerThread(create_app(settings), port).start()
    base = server.url
    v = api.vehicles[1]
    context, page = sign_in(browser, api, "agent", "/board", base=base)
    try:
        row = page.locator(".vehicles tr[data-key]", has_text=v.plate)
        assert "available" in row.inner_text()
        stamp_before = page.locator(".topbar .fresh").get_attribute("data-as-of")

        server.stop()
        # The socket closes: within 3 s (and a busy machine's grace) the page says so plainly
        # and greys what may be out of date. "offline" is for the browser's own network.
        page.wait_for_selector(".topbar [data-state=unreachable]", timeout=5_000)
        banner = page.locator(".fleet-banner")
        assert re.fullmatch(
            r"Server unreachable since \d\d:\d\d( [AP]M)?: showing data as of \d\d:\d\d( [AP]M)?;"
            r" reconnecting",
            banner.inner_text().strip(),
        ), banner.inner_text()
        assert page.evaluate(ROOT_CLASS) and "grayscale" in page.evaluate(VIEW_FILTER)
        screenshot(page, "server-unreachable")

        # Meanwhile another terminal changes the vehicle straight in the database.
        with engine.begin() as c:
            status.change_status(
                c,
                vehicle_id=v.id,
                new_status="cleaning",
                changed_by=api.users["agent"].id,
                reason="washed while the dashboard was away",
            )

        server = ServerThread(create_app(settings), port).start()
        # Back by itself within 5 s of the server being ready (and a busy machine's grace):
        # live again, and the row shows what happened while it was away.
        page.wait_for_selector(".topbar [data-state=live]", timeout=8_000)
        assert page.locator(".fleet-banner").is_hidden()
        row = page.locator(".vehicles tr[data-key]", has_text=v.plate)
        row.filter(has_text="cleaning").wait_for(timeout=5_000)
        assert page.locator(".topbar .fresh").get_attribute("data-as-of") != stamp_before
    finally:
        context.close()
        server.stop()
