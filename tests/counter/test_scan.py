"""Scanning a vehicle's QR label through a camera: Chromium's fake camera plays a video of it."""

from __future__ import annotations

import io

import pytest
import segno
from PIL import Image

from dashboard.labels import vehicle_url
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.counter.conftest import PHONE, TABLET, open_app
from tests.counter.test_app import row, status_of, swipe
from tests.counter.test_screenshots import shot


def label_video(path, text: str, frames: int = 10) -> None:
    """Write a Y4M video of a QR label encoding `text`, as a phone camera held over it sees it."""
    png = io.BytesIO()
    segno.make(text, error="m").save(png, kind="png", scale=7, border=4)
    code = Image.open(png).convert("RGB")
    frame = Image.new("RGB", (640, 480), (235, 235, 228))  # a grey-white label in the light
    frame.paste(code, ((640 - code.width) // 2, (480 - code.height) // 2))
    y, cb, cr = frame.convert("YCbCr").split()
    chroma = (320, 240)  # 4:2:0: colour at half the resolution
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + y.tobytes() + cb.resize(chroma).tobytes())
            f.write(cr.resize(chroma).tobytes())


def fake_camera(browser, video):
    """A second Chromium whose camera plays `video` (and may be used without asking)."""
    return browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ],
    )


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_scan_a_label_open_the_car_and_swipe_it_ready(browser, api, engine, tmp_path, size):
    car = api.vehicles[3]
    with api.client("manager") as c:
        r = c.put(f"/api/vehicles/{car.id}/status", json={"status": "cleaning", "reason": "wash"})
        assert r.status_code == 200
    video = tmp_path / "label.y4m"
    label_video(video, vehicle_url(api.url, car.id))  # what the printed label sheet encodes
    camera = fake_camera(browser, video)
    try:
        context, page = open_app(camera, api, size={**size, "permissions": ["camera"]})
        page.get_by_role("link", name="Scan").click()
        page.wait_for_url(f"**/counter/#/vehicle/{car.id}", timeout=15_000)
        page.locator("h1.plate", has_text=car.plate).wait_for(timeout=5_000)
        page.get_by_role("link", name="← Lot").click()
        row(page, car.plate).wait_for(timeout=5_000)
        swipe(page, car.plate, +1)
        page.locator(".toast", has_text=f"{car.plate} → available").wait_for(timeout=2_000)
        row(page, car.plate).locator(".pending").wait_for(state="detached", timeout=10_000)
        assert status_of(engine, car.id) == "available"
        context.close()
    finally:
        camera.close()


@pytest.mark.parametrize("name, size", [("phone", PHONE), ("tablet", TABLET)])
def test_the_scan_screen_is_photographed_with_the_camera_running(
    browser, api, tmp_path, name, size
):
    video = tmp_path / "other.y4m"
    label_video(video, "a QR code that is not one of our labels")
    camera = fake_camera(browser, video)
    try:
        context, page = open_app(camera, api, size={**size, "permissions": ["camera"]})
        page.get_by_role("link", name="Scan").click()
        page.wait_for_function(
            "document.querySelector('video.camera')?.dataset.decoder", timeout=15_000
        )
        page.wait_for_function("document.querySelector('video.camera').videoWidth > 0")
        page.wait_for_timeout(500)  # a few frames read: an unknown code opens nothing
        assert page.url.endswith("#/scan")
        shot(page, f"counter/scan-{name}")
        context.close()
    finally:
        camera.close()
