"""The counter app says when its server is gone, however the link died, and comes back."""

from __future__ import annotations

import pytest

from tests.api.conftest import PASSWORD
from tests.counter.conftest import PHONE
from tests.counter.test_app import row
from tests.netproxy import CuttableProxy


@pytest.fixture
def proxy(api):
    """The shared server, reached through a link the test can cut."""
    port = int(api.url.rsplit(":", 1)[1])
    p = CuttableProxy(port).start()
    yield p
    p.stop()


def _open(browser, base: str, user):
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(f"{base}/counter/")
    page.fill("#username", user.username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.locator(".board .vehicle").first.wait_for(timeout=15_000)
    return context, page


@pytest.mark.parametrize("cut", ["silence", "refuse"])
def test_a_dead_link_shows_server_unreachable_then_live_again_with_what_changed(
    browser, api, proxy, cut
):
    car = api.vehicles[2]
    context, page = _open(browser, proxy.url, api.users["agent"])
    try:
        page.locator('[data-state="live"]').wait_for(timeout=5_000)
        getattr(proxy, cut)()
        # The test server beats every second: two silent beats and the slack, or the retry
        # grace, and the app says so (at the default 15 s beat: 35 s at most).
        page.locator(".banner.offline", has_text="Server unreachable, showing data as of").wait_for(
            timeout=12_000
        )
        assert page.locator('[data-state="offline"]').count() == 1
        with api.client("manager") as m:  # a colleague, on a link that works
            r = m.put(
                f"/api/vehicles/{car.id}/status", json={"status": "maintenance", "reason": "x"}
            )
            assert r.status_code == 200
        proxy.restore()
        page.locator(".banner.offline").wait_for(state="hidden", timeout=15_000)
        row(page, car.plate).filter(has_text="maintenance").wait_for(timeout=5_000)
        page.locator('[data-state="live"]').wait_for(timeout=5_000)
    finally:
        context.close()
