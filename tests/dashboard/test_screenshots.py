"""Every view renders for a manager over a realistic demo fleet; a screenshot of each is kept.

The pictures under docs/screenshots/ are for people to look at (and were looked at): the test
itself checks that each page comes up live with its title and without an error.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from dashboard.app import PAGES, TITLES
from tests.dashboard.conftest import screenshot

SIZES = {"desktop": (1366, 900), "tablet": (1024, 768), "phone": (390, 844)}


def _sign_in(browser, url: str, size: tuple[int, int]):
    width, height = size
    context = browser.new_context(
        viewport={"width": width, "height": height}, has_touch=width < 1100
    )
    page = context.new_page()
    page.goto(f"{url}/board")
    page.fill("#username", "demo-manager")
    page.fill("#password", "demo-manager-pass")
    page.click("button[type=submit]")
    page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
    return context, page


def test_every_view_renders_and_is_photographed(browser, demo_fleet):
    server, rented = demo_fleet
    shown = {
        "/vehicle": f"/vehicle?id={rented.id}",
        "/audit": f"/audit?plate={quote(rented.plate)}",
    }
    context, page = _sign_in(browser, server.url, SIZES["desktop"])
    try:
        for path in PAGES:
            page.goto(f"{server.url}{shown.get(path, path)}")
            page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
            page.locator(".view-title h1").wait_for(timeout=10_000)
            if path == "/analytics":  # figures come from the query the user runs
                page.get_by_role("button", name="Run").click()
                page.locator(".analytics-table .tabulator-row").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1_500)  # charts and tables finish drawing
            body = page.locator("body").inner_text()
            assert "Traceback" not in body, path
            assert page.locator(".topbar [aria-current=page]").inner_text() == TITLES[path]
            screenshot(page, path.strip("/"))
        page.goto(f"{server.url}/labels?location=BER1")
        page.locator("svg").first.wait_for(timeout=10_000)
        screenshot(page, "labels")
    finally:
        context.close()


@pytest.mark.parametrize("size", ["tablet", "phone"])
def test_board_fits_tablets_and_phones(browser, demo_fleet, size):
    context, page = _sign_in(browser, demo_fleet[0].url, SIZES[size])
    try:
        page.locator(".vehicles tr[data-key]").first.wait_for(timeout=10_000)
        page.wait_for_timeout(1_000)
        # Nothing wider than the screen: the layout wraps instead of scrolling sideways.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= SIZES[size][0] + 1, width
        screenshot(page, f"board-{size}")
    finally:
        context.close()
