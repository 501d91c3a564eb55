"""A page opened over a slow mobile link comes up (and reloads itself if its session is gone)."""

from __future__ import annotations

import re

from tests.dashboard.conftest import sign_in

# Chromium's own network emulation (DevTools protocol): 100 kbit/s each way, 400 ms latency.
SLOW_LINK = {
    "offline": False,
    "latency": 400,
    "downloadThroughput": 100_000 / 8,
    "uploadThroughput": 100_000 / 8,
}


def test_board_comes_up_on_a_slow_link(browser, api):
    # Signed in on a fast link; then the cache is emptied, so the page's scripts and styles
    # all come over the slow one, as on a phone that opens the board for the first time.
    context, page = sign_in(browser, api, "agent", "/board")
    try:
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.clearBrowserCache")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        cdp.send("Network.emulateNetworkConditions", SLOW_LINK)
        page.goto(f"{api.url}/board", wait_until="commit")
        page.wait_for_selector(".topbar [data-state=live]", timeout=240_000)
        assert page.locator(".vehicles tr[data-key]").count() > 0
    finally:
        context.close()


def test_a_page_whose_socket_never_opened_reloads_itself(browser, api):
    # The first socket is refused (as when the server restarted between the page and its
    # socket): Bokeh would leave the page white. The page reloads and the second one works.
    context, page = sign_in(browser, api, "agent", "/board")
    attempts: list[str] = []

    def socket(ws) -> None:
        attempts.append(ws.url)
        if len(attempts) == 1:
            ws.close(code=1011, reason="refused for the test")
        else:
            ws.connect_to_server()

    try:
        context.route_web_socket(re.compile(r".*/board/ws.*"), socket)
        page.goto(f"{api.url}/board")
        page.wait_for_selector(".topbar [data-state=live]", timeout=60_000)
        assert len(attempts) == 2
        assert page.locator(".vehicles tr[data-key]").count() > 0
        assert page.locator("#fleet-boot-note").count() == 0  # the reload found it again
    finally:
        context.close()
