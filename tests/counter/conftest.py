"""The counter app's fixtures: the shared live server and Debian's Chromium."""

from __future__ import annotations

from tests.api.conftest import api, live_server  # noqa: F401 - shared server fixtures
from tests.dashboard.conftest import demo_fleet  # noqa: F401 - the screenshots' demo fleet

PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
TABLET = {"viewport": {"width": 1024, "height": 768}, "has_touch": True}


def open_app(chromium, server, role: str = "agent", size: dict | None = None, prepare=None):
    """A new device (browser context) signed in to the counter app, its board shown.

    `prepare(context)` runs before the first page opens (permissions, init scripts).
    """
    from tests.api.conftest import PASSWORD

    context = chromium.new_context(**(size or PHONE))
    if prepare is not None:
        prepare(context)
    page = context.new_page()
    page.goto(f"{server.url}/counter/")
    page.fill("#username", server.users[role].username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.locator(".board .vehicle").first.wait_for(timeout=15_000)
    # The worker has the shell once it controls the page: from then on it opens offline.
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=15_000)
    return context, page
