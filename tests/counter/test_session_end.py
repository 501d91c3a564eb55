"""The counter app returns to sign-in when its token ends, keeping the device's queue."""

from __future__ import annotations

import itertools
import time

import httpx

from db import auth, fleet
from tests.api.conftest import PASSWORD
from tests.counter.conftest import PHONE
from tests.counter.test_app import change_in_sheet, changes_to, row, status_of

# The server's watch checks every 2 s; the promise is 5 s, plus the page's own reaction.
PROMISE_MS = 6_000
_names = itertools.count(1)


def _clerk(engine):
    """A user of their own, so ending their tokens touches no other test's."""
    with engine.begin() as c:
        user = fleet.create_user(
            c, username=f"counter-end-{next(_names)}-{time.monotonic_ns()}", full_name="Cleo"
        )
        auth.set_password(c, user_id=user.id, password=PASSWORD)
    return user


def _sign_in(page, user) -> None:
    page.fill("#username", user.username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.locator(".board .vehicle").first.wait_for(timeout=15_000)


def _open(browser, api, user):
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(f"{api.url}/counter/")
    _sign_in(page, user)
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=15_000)
    return context, page


def _revoke_all(engine, user) -> None:
    # What `fleet user revoke` does: another process, heard of only through the table.
    with engine.begin() as c:
        for token in auth.list_tokens(c, user_id=user.id):
            auth.revoke_token(c, token_id=token.id)


def _wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)


def test_a_revoked_token_sends_the_app_back_to_sign_in(browser, api, engine):
    user = _clerk(engine)
    context, page = _open(browser, api, user)
    try:
        page.wait_for_timeout(500)  # the stream is open once the catch-up is done
        _revoke_all(engine, user)
        page.locator("form.login .error", has_text="Your session ended").wait_for(
            timeout=PROMISE_MS
        )
        assert page.locator(".board").count() == 0  # no data left on screen
    finally:
        context.close()


def test_a_deactivated_user_is_signed_out_and_cannot_sign_back_in(browser, api, engine):
    user = _clerk(engine)
    context, page = _open(browser, api, user)
    try:
        page.wait_for_timeout(500)
        with engine.begin() as c:
            auth.set_active(c, user_id=user.id, active=False)
        page.locator("form.login .error", has_text="Your session ended").wait_for(
            timeout=PROMISE_MS
        )
        page.fill("#username", user.username)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.locator("form.login .error", has_text="Wrong username or password").wait_for(
            timeout=5_000
        )
    finally:
        context.close()


def test_changes_queued_offline_survive_a_revoked_token_and_go_out_after_sign_in(
    browser, api, engine
):
    car = api.vehicles[3]
    user = _clerk(engine)
    context, page = _open(browser, api, user)
    try:
        context.set_offline(True)
        page.locator(".banner.offline").wait_for(timeout=5_000)
        change_in_sheet(page, car.plate, "cleaning")
        assert "1 change waiting" in page.locator(".banner").inner_text()
        token = page.evaluate("sessionStorage.getItem('fleet.counter.token')")
        _revoke_all(engine, user)  # while the tablet is out of reach
        # Refused everywhere once the server's watch has seen it (a cached token works for
        # up to its check interval): only then is the tablet back in reach.
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as c:
            _wait_for(lambda: c.get("/api/auth/me").status_code == 401)

        context.set_offline(False)
        page.locator(
            "form.login .error", has_text="1 queued change is kept and sent after you sign in"
        ).wait_for(timeout=15_000)
        assert status_of(engine, car.id) == "available"  # refused: nothing went out

        _sign_in(page, user)
        _wait_for(lambda: status_of(engine, car.id) == "cleaning")
        assert changes_to(engine, car.id, "cleaning") == 1
        row(page, car.plate).filter(has_text="cleaning").wait_for(timeout=5_000)
    finally:
        context.close()
