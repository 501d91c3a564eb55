"""Every counter screen at phone and tablet size over the demo fleet; a screenshot of each.

The pictures under docs/screenshots/counter/ are for people to look at (`make screenshots`);
the test checks that each screen shows what it is for.
"""

from __future__ import annotations

import httpx
import pytest

from tests.counter.conftest import PHONE, TABLET
from tests.dashboard.conftest import screenshot


def _overdue_at_home_lot(url: str) -> int:
    """How many overdue rentals the server lists for the demo agent's lot."""
    with httpx.Client(base_url=url, timeout=20) as c:
        login = {"username": "demo-agent", "password": "demo-agent-pass"}
        token = c.post("/api/auth/token", json=login).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        lot = c.get("/api/auth/me", headers=auth).json()["home_location_id"]
        return len(c.get(f"/api/availability/overdue?location_id={lot}", headers=auth).json())


def shot(page, name: str) -> None:
    """Photograph the screen, which must fit the device's width (no sideways scrolling)."""
    wide = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert wide[0] <= wide[1], f"{name} is {wide[0]} px wide on a {wide[1]} px screen"
    screenshot(page, name)


@pytest.mark.parametrize("name, size", [("phone", PHONE), ("tablet", TABLET)])
def test_every_screen_is_photographed(browser, demo_fleet, name, size):
    server, _ = demo_fleet
    context = browser.new_context(**size)
    page = context.new_page()
    try:
        page.goto(f"{server.url}/counter/")
        page.locator("form.login").wait_for(timeout=10_000)
        shot(page, f"counter/login-{name}")
        page.fill("#username", "demo-agent")
        page.fill("#password", "demo-agent-pass")
        page.click("button[type=submit]")
        page.locator(".board .vehicle").first.wait_for(timeout=15_000)
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=15_000)
        assert page.locator(".chips .badge").count() >= 2
        shot(page, f"counter/board-{name}")

        first = page.locator(".board .vehicle").first
        first.locator(".card").click()
        page.get_by_role("button", name="Change status").wait_for(timeout=5_000)
        shot(page, f"counter/vehicle-{name}")
        page.get_by_role("button", name="Change status").click()
        page.locator(".sheet .options button").first.wait_for(timeout=5_000)
        shot(page, f"counter/status-sheet-{name}")
        page.get_by_role("button", name="Cancel").click()

        page.goto(f"{server.url}/counter/#/search")
        page.get_by_role("button", name="Search").click()
        page.locator(".hits li").first.wait_for(timeout=10_000)
        shot(page, f"counter/search-{name}")

        page.goto(f"{server.url}/counter/#/overdue")
        late = _overdue_at_home_lot(server.url)  # the demo's lot may have none on some servers
        if late:
            page.locator(".overdue .fee", has_text="late fee").first.wait_for(timeout=10_000)
            assert page.locator(".overdue li").count() == late
            assert page.locator(".overdue a[href^='tel:']").count() >= 1
        else:
            page.get_by_text("Nothing overdue.").wait_for(timeout=10_000)
        shot(page, f"counter/overdue-{name}")

        page.goto(f"{server.url}/counter/#/alerts")
        page.locator(".push-state", has_text="Alerts are off on this device").wait_for(
            timeout=10_000
        )
        assert page.locator(".kinds input[type=checkbox]:checked").count() == 3
        shot(page, f"counter/alerts-{name}")

        page.goto(f"{server.url}/counter/#/board")
        page.locator(".board .vehicle").first.wait_for(timeout=10_000)
        context.set_offline(True)
        page.locator(".banner.offline").wait_for(timeout=5_000)
        shot(page, f"counter/offline-{name}")
    finally:
        context.close()
