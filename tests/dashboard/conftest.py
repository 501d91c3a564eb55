"""Browser fixtures: Debian's Chromium driven by Playwright (skipped only where none exists)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text

from db import conflicts, demo, overdue
from tests.aio import run_async  # noqa: F401 - the page tests' way to await a view
from tests.api.conftest import api, live_server  # noqa: F401 - shared server fixtures

# One Chromium for the whole run (tests/browser.py): the dashboard's and the counter app's.
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: F401

# `make screenshots` (FLEET_SCREENSHOTS=1) refreshes docs/screenshots/; an ordinary test run
# writes to a temporary folder so it leaves the working tree as it was.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("FLEET_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "fleet-screenshots"
)


def sign_in(
    browser,
    server,
    role: str = "agent",
    path: str = "/board",
    *,
    base: str | None = None,
    **context_args,
):
    """A fresh browser context signed in as the role's user, on `path` once it is live."""
    from tests.api.conftest import PASSWORD

    context = browser.new_context(**context_args)
    page = context.new_page()
    page.goto(f"{base or server.url}{path}")
    assert "/login" in page.url  # every page needs a session
    page.fill("#username", server.users[role].username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
    return context, page


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as docs/screenshots/<name>.png (looked at by people)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target


@pytest.fixture
def demo_fleet(committed, live_server):  # noqa: F811 - the shared server fixture
    """A realistic demo fleet (200 cars, 4 lots, demo logins) behind the live server."""
    with committed.begin() as c:
        demo.load_demo(c, vehicles=200, locations=4, seed=7)
    with committed.begin() as c:
        overdue.refresh_overdue(c)
        conflicts.refresh_conflicts(c)
        # A car out with a customer, to show the vehicle page and its timeline filled in.
        rented = c.execute(
            text(
                "SELECT v.id, v.plate FROM vehicle_status_realtime s"
                " JOIN vehicles v ON v.id = s.vehicle_id"
                " WHERE s.current_status = 'rented' ORDER BY v.plate LIMIT 1"
            )
        ).one()
    return live_server, rented
