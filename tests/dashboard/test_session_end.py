"""A dashboard page whose session ends stops acting and goes to sign-in by itself."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from dashboard.shell import PageContext
from db import auth, fleet, status
from tests.api.conftest import PASSWORD

# The watch checks every 2 s; the promise to users is 5 s (plus the page's own navigation).
PROMISE_MS = 5_000
_names = itertools.count(1)


def _clerk(engine, role: str = "agent"):
    """A user of their own, so ending their sessions touches no other test's."""
    with engine.begin() as c:
        user = fleet.create_user(
            c,
            username=f"ending-{next(_names)}-{time.monotonic_ns()}",
            full_name="Eve End",
            role=role,
        )
        auth.set_password(c, user_id=user.id, password=PASSWORD)
    return user


def _sign_in(browser, api, user, path: str = "/board"):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{api.url}{path}")
    page.fill("#username", user.username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
    return context, page


def _session_ids(engine, user) -> list[int]:
    with engine.connect() as c:
        return [t.id for t in auth.list_tokens(c, user_id=user.id)]


def _revoke_like_the_cli(engine, user) -> None:
    # `fleet user revoke` is another process: the server hears of it only through the table.
    with engine.begin() as c:
        for token_id in _session_ids(engine, user):
            auth.revoke_token(c, token_id=token_id)


def _change_password(engine, user) -> None:
    with engine.begin() as c:
        auth.set_password(c, user_id=user.id, password=PASSWORD + "-new")


def _deactivate(engine, user) -> None:
    with engine.begin() as c:
        auth.set_active(c, user_id=user.id, active=False)


def _expire(engine, user) -> None:
    # The session's 12 hours, run out now (what the clock does, sooner).
    with engine.begin() as c:
        c.execute(
            text("UPDATE auth_tokens SET expires_at = now() WHERE user_id = :u"), {"u": user.id}
        )


CAUSES: dict[str, Callable] = {
    "revoked": _revoke_like_the_cli,
    "password changed": _change_password,
    "user deactivated": _deactivate,
    "session expired": _expire,
}


@pytest.mark.parametrize("cause", list(CAUSES))
def test_an_open_page_goes_to_sign_in_by_itself_when_its_session_ends(browser, api, engine, cause):
    user = _clerk(engine)
    context, page = _sign_in(browser, api, user, "/board")
    try:
        CAUSES[cause](engine, user)
        page.wait_for_url("**/login?ended=1**", timeout=PROMISE_MS)
        expect(page.locator("body")).to_contain_text("Your session ended")
        # It comes back to where it was after signing in again, and the old cookie is dead.
        assert "next=%2Fboard" in page.url
        page.goto(f"{api.url}/board")
        assert "/login" in page.url
    finally:
        context.close()


def test_signing_out_in_one_tab_ends_the_pages_in_the_others(browser, api, engine):
    user = _clerk(engine)
    context, page = _sign_in(browser, api, user, "/board")
    try:
        other = context.new_page()
        other.goto(f"{api.url}/overdue")
        other.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login**", timeout=10_000)
        other.wait_for_url("**/login?ended=1**", timeout=PROMISE_MS)
    finally:
        context.close()


class Bar:
    """Stands in for the top bar: keeps what the page would have told the browser."""

    def __init__(self) -> None:
        self.toasts: list[tuple[str, str]] = []
        self.signed_out: list[str] = []

    def toast(self, level: str, text: str, *, sound: bool = False) -> None:
        self.toasts.append((level, text))

    def sign_out(self, reason: str) -> None:
        self.signed_out.append(reason)


def test_the_next_action_of_a_page_whose_session_ended_is_refused(api, engine):
    user = _clerk(engine)
    with engine.begin() as c:
        session = auth.issue_token(
            c, user_id=user.id, kind="session", lifetime=timedelta(hours=12), label="page"
        )
    bar = Bar()
    ctx = PageContext(
        state=SimpleNamespace(engine=engine, settings=None),
        user=user,
        doc=None,
        bar=bar,  # type: ignore[arg-type]
        token_id=session.info.id,
    )
    car = api.vehicles[0]

    def clean(c):
        return status.change_status(
            c, vehicle_id=car.id, new_status="cleaning", changed_by=user.id, reason="test"
        )

    assert ctx.act(clean, done="done") is not None  # the session is good: it acts
    # Revoked by another process a moment ago: the page's watch has not heard yet, the
    # action's own transaction has.
    _revoke_like_the_cli(engine, user)

    def back_to_available(c):
        return status.change_status(
            c, vehicle_id=car.id, new_status="available", changed_by=user.id, reason="test"
        )

    assert ctx.act(back_to_available) is None
    with engine.connect() as c:
        assert status.get_status(c, vehicle_id=car.id).status == "cleaning"  # nothing written
    assert bar.signed_out == [
        "Your session ended: you were signed out or the token was revoked. Please sign in again."
    ]
    assert not ctx.still_signed_in()
