"""The top bar every page shares: keyboard shortcuts, quick find, sign-out."""

from __future__ import annotations

from tests.dashboard.conftest import sign_in


def test_slash_focuses_quick_find_and_a_misread_plate_opens_the_vehicle(browser, api):
    car = api.vehicles[0]  # "B AP 101"
    context, page = sign_in(browser, api, "agent", "/board")
    try:
        page.locator(".vehicles tr[data-key]").first.wait_for(timeout=10_000)
        page.keyboard.press("/")
        page.keyboard.type("bap1O1")  # no spaces, letter O for zero
        page.keyboard.press("Enter")
        page.wait_for_url("**/vehicle?**", timeout=10_000)
        page.locator(".view-title h1").wait_for(timeout=10_000)
        page.get_by_text(car.plate).first.wait_for(timeout=10_000)
    finally:
        context.close()


def test_g_then_a_letter_goes_to_that_view(browser, api):
    context, page = sign_in(browser, api, "agent", "/board")
    try:
        page.locator(".vehicles tr[data-key]").first.wait_for(timeout=10_000)
        page.keyboard.press("g")
        page.keyboard.press("o")
        page.wait_for_url("**/overdue", timeout=10_000)
        page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
        assert page.locator(".topbar [aria-current=page]").inner_text() == "Overdue"
    finally:
        context.close()


def test_sign_out_ends_the_session(browser, api):
    context, page = sign_in(browser, api, "agent", "/board")
    try:
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login**", timeout=10_000)
        page.goto(f"{api.url}/board")
        assert "/login" in page.url
    finally:
        context.close()
