"""The counter app in Chromium at phone and tablet sizes: sign in, board, swipe, offline queue."""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import text

from api.routes.counter import shell_version
from counter import STATIC
from db import status
from tests.counter.conftest import PHONE, TABLET, open_app


def row(page, plate: str):
    return page.locator(f'.board .vehicle[data-plate="{plate}"]')


def swipe(page, plate: str, direction: int) -> None:
    """Drag the vehicle's row most of its width to the right (1) or left (-1)."""
    box = row(page, plate).bounding_box()
    y = box["y"] + box["height"] / 2
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + direction * box["width"] * 0.45, y, steps=10)
    page.mouse.up()


def status_of(engine, vehicle_id: int) -> str:
    with engine.connect() as c:
        return status.get_status(c, vehicle_id=vehicle_id).status


def changes_to(engine, vehicle_id: int, new_status: str) -> int:
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT count(*) FROM vehicle_status_log WHERE vehicle_id = :v AND new_status = :s"
            ),
            {"v": vehicle_id, "s": new_status},
        ).scalar_one()


def test_the_shell_is_an_installable_app_and_holds_no_data(api):
    with api.client(None) as c:
        page = c.get("/counter/")
        assert page.status_code == 200 and 'rel="manifest"' in page.text
        assert page.headers["cache-control"] == "no-cache"
        manifest = json.loads(c.get("/counter/manifest.webmanifest").text)
        assert manifest["display"] == "standalone" and manifest["scope"] == "/counter/"
        assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}
        for icon in manifest["icons"]:
            assert c.get(f"/counter/{icon['src']}").status_code == 200
        worker = c.get("/counter/sw.js")
        assert worker.status_code == 200 and worker.headers["cache-control"] == "no-cache"
        # The cache is named after the files it holds: a changed file is a new worker.
        assert f'const VERSION = "{shell_version(STATIC)}";' in worker.text
        assert worker.headers["content-type"].startswith("text/javascript")
        assert worker.headers["service-worker-allowed"] == "/counter/"
        # Everything the app shows comes from the API, which wants the user's token.
        assert c.get("/api/availability/realtime").status_code == 401


def test_the_shell_version_changes_with_any_file_of_the_app(tmp_path):
    app = tmp_path / "counter"
    shutil.copytree(STATIC, app, ignore=shutil.ignore_patterns("__pycache__"))
    before = shell_version(app)
    assert before == shell_version(STATIC)
    (app / "app.css").write_text((app / "app.css").read_text() + "\n/* changed */\n")
    assert shell_version(app) != before


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_sign_in_then_swipe_a_clean_car_to_available(browser, api, engine, size):
    car = api.vehicles[0]
    with api.client("manager") as c:
        r = c.put(f"/api/vehicles/{car.id}/status", json={"status": "cleaning", "reason": "wash"})
        assert r.status_code == 200
    before = changes_to(engine, car.id, "available")  # the car was registered available
    context, page = open_app(browser, api, size=size)
    try:
        assert "cleaning" in row(page, car.plate).inner_text()
        swipe(page, car.plate, +1)
        page.locator(".toast", has_text=f"{car.plate} → available").wait_for(timeout=2_000)
        assert row(page, car.plate).locator(".pending").count() == 1
        # Sent once the undo window closes; the row then shows the server's state.
        row(page, car.plate).locator(".pending").wait_for(state="detached", timeout=10_000)
        assert "available" in row(page, car.plate).inner_text()
        assert status_of(engine, car.id) == "available"
        assert changes_to(engine, car.id, "available") == before + 1
    finally:
        context.close()


def test_undo_takes_a_swipe_back_before_it_is_sent(browser, api, engine):
    car = api.vehicles[1]
    context, page = open_app(browser, api)
    try:
        swipe(page, car.plate, -1)
        toast = page.locator(".toast", has_text=f"{car.plate} → maintenance")
        toast.get_by_role("button", name="Undo").click()
        page.locator(".toast", has_text="change undone").wait_for(timeout=2_000)
        page.wait_for_timeout(6_000)  # past the undo window: nothing may go out
        assert status_of(engine, car.id) == "available"
        assert "available" in row(page, car.plate).inner_text()
    finally:
        context.close()


def test_a_change_elsewhere_shows_on_the_board_within_two_seconds(browser, api):
    car = api.vehicles[2]
    context, page = open_app(browser, api)
    try:
        page.wait_for_timeout(500)  # the stream is open once the catch-up is done
        with api.client("manager") as c:
            r = c.put(
                f"/api/vehicles/{car.id}/status", json={"status": "maintenance", "reason": "tyre"}
            )
            assert r.status_code == 200
        row(page, car.plate).filter(has_text="maintenance").wait_for(timeout=2_000)
    finally:
        context.close()


def change_in_sheet(page, plate: str, to: str) -> None:
    row(page, plate).locator(".card").click()
    page.get_by_role("button", name="Change status").click()
    page.locator(f'.sheet button[data-status="{to}"]').click()
    page.get_by_role("link", name="← Lot").click()


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_offline_changes_replay_once_and_a_lost_one_is_put_to_the_user(browser, api, engine, size):
    a, b, c_ = api.vehicles[0], api.vehicles[1], api.vehicles[2]
    context, page = open_app(browser, api, size=size)
    try:
        context.set_offline(True)
        page.locator(".banner.offline", has_text="Offline, showing data as of").wait_for(
            timeout=5_000
        )
        change_in_sheet(page, a.plate, "cleaning")
        change_in_sheet(page, b.plate, "maintenance")
        change_in_sheet(page, c_.plate, "cleaning")
        # Meanwhile a colleague sends the third car to the workshop.
        with api.client("manager") as m:
            r = m.put(
                f"/api/vehicles/{c_.id}/status", json={"status": "maintenance", "reason": "oil"}
            )
            assert r.status_code == 200
        assert "3 changes waiting" in page.locator(".banner").inner_text()

        page.reload()  # still offline: the worker serves the app, IndexedDB the data
        page.locator(".banner.offline", has_text="3 changes waiting").wait_for(timeout=10_000)
        assert row(page, a.plate).locator(".pending").count() == 1
        assert status_of(engine, a.id) == "available"  # nothing went out while offline

        context.set_offline(False)
        conflict = page.locator(".conflict", has_text=c_.plate)
        # Three changes go out one after another, then the board is read again: on a busy
        # machine that can take a while.
        conflict.wait_for(timeout=30_000)
        assert "maintenance" in conflict.locator(".theirs").inner_text()
        assert "cleaning" in conflict.locator(".mine").inner_text()
        page.locator(".banner").wait_for(state="hidden", timeout=10_000)
        assert status_of(engine, a.id) == "cleaning"
        assert status_of(engine, b.id) == "maintenance"
        assert status_of(engine, c_.id) == "maintenance"  # not overwritten silently
        assert changes_to(engine, a.id, "cleaning") == 1
        assert changes_to(engine, b.id, "maintenance") == 1
        assert changes_to(engine, c_.id, "cleaning") == 0

        conflict.get_by_role("button", name="Keep maintenance").click()
        conflict.wait_for(state="detached", timeout=5_000)
        page.reload()  # the choice is kept on the device too
        row(page, a.plate).wait_for(timeout=10_000)
        assert page.locator(".conflict").count() == 0
        assert status_of(engine, c_.id) == "maintenance"
    finally:
        context.close()
