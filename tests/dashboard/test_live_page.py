"""The live board in a real browser: sign in, and see another terminal's change pushed."""

from __future__ import annotations

import time

from tests.api.conftest import PASSWORD


def _sign_in(browser, api, role: str = "agent"):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{api.url}/board")
    assert "/login" in page.url  # every page needs a session
    page.fill("#username", api.users[role].username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Fleet board", timeout=20_000)
    page.wait_for_selector("[data-state=live]", timeout=20_000)
    return context, page


def test_two_browser_sessions_show_an_api_change_within_two_seconds(browser, api):
    v = api.vehicles[0]
    sessions = [_sign_in(browser, api, "agent"), _sign_in(browser, api, "manager")]
    try:
        with api.client("agent") as c:
            r = c.put(f"/api/vehicles/{v.id}/status", json={"status": "cleaning", "reason": "wash"})
        assert r.status_code == 200
        sent = time.monotonic()
        seq = r.json()["status"]["version"]
        for _, page in sessions:
            item = page.locator(".changes li", has_text=v.plate).first
            item.wait_for(timeout=2_000)
            assert "cleaning" in item.inner_text()
            # The vehicle's own row in the table is patched in place, no reload.
            row = page.locator(".vehicles tr[data-key]", has_text=v.plate)
            row.filter(has_text="cleaning").first.wait_for(timeout=2_000)
        assert time.monotonic() - sent < 2.0, seq
        first_page = sessions[0][1]
        assert first_page.locator(".vehicles tr[data-key]", has_text=v.plate).count() == 1
    finally:
        for context, _ in sessions:
            context.close()


def test_wrong_password_stays_on_the_login_page(browser, api):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{api.url}/login")
    page.fill("#username", api.users["agent"].username)
    page.fill("#password", "definitely-wrong")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "wrong username or password"
    context.close()
