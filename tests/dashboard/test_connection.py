"""Losing the server: the bar says so, and the page catches up by itself when it is back."""

from __future__ import annotations

from api.app import create_app
from db import status
from tests.api.conftest import ServerThread, free_port, server_settings
from tests.dashboard.conftest import sign_in


def test_browser_offline_shows_offline_then_live_again(browser, api):
    context, page = sign_in(browser, api, "agent", "/board")
    try:
        context.set_offline(True)
        page.wait_for_selector(".topbar [data-state=offline]", timeout=5_000)
        context.set_offline(False)
        page.wait_for_selector(".topbar [data-state=live]", timeout=5_000)
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
        # The heartbeat stops: the bar leaves "live" and, with /healthz unreachable, says offline.
        page.wait_for_selector(".topbar [data-state=offline]", timeout=15_000)

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
        # Back by itself: live again, and the row shows what happened while it was away.
        page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
        row = page.locator(".vehicles tr[data-key]", has_text=v.plate)
        row.filter(has_text="cleaning").wait_for(timeout=5_000)
        assert page.locator(".topbar .fresh").get_attribute("data-as-of") != stamp_before
    finally:
        context.close()
        server.stop()
