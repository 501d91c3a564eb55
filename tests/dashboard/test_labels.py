"""QR label sheets: one segno QR per vehicle at the lot, behind sign-in, 404 naming real codes."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import segno

from db import fleet
from tests.conftest import add_vehicle

LABEL = re.compile(
    r"<div class='label' data-vehicle-id='(\d+)' data-url='([^']*)'>"
    r"<div class='plate'>([^<]*)</div>.*?(<svg.*?</svg>)",
    re.S,
)


def _segno_svg(url: str) -> str:
    # What segno itself makes of the URL: a label whose SVG equals it encodes exactly that.
    return segno.make(url, error="m", micro=False).svg_inline(
        omitsize=True, svgclass="qr", lineclass=None
    )


def test_sheet_has_one_qr_per_vehicle_at_the_lot_encoding_its_page(api, engine):
    with engine.begin() as c:
        elsewhere = add_vehicle(c, api.world, "M AP 900", location=api.world.muc)
    with closing(api.login("agent")) as client:
        r = client.get("/labels", params={"location": "ber1"})
    assert r.status_code == 200, r.text
    page = r.text
    labels = LABEL.findall(page)
    expected = sorted(api.vehicles, key=lambda v: v.plate)
    assert [(int(i), p) for i, _, p, _ in labels] == [(v.id, v.plate) for v in expected]
    for vid, url, _, svg in labels:
        assert url == f"{api.url}/vehicle?id={vid}"
        assert svg == _segno_svg(url)
    assert page.count("<svg") == len(api.vehicles)
    assert elsewhere.plate not in page
    assert "@page { size: A4" in page and "@media print" in page


def test_anonymous_request_is_sent_to_sign_in(api):
    with httpx.Client(base_url=api.url, timeout=20) as anonymous:
        r = anonymous.get("/labels", params={"location": "BER1"})
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Flabels%3Flocation%3DBER1"
    assert "<svg" not in r.text


def test_unknown_location_is_a_404_naming_the_codes_that_exist(api):
    with closing(api.login("analyst")) as client:
        r = client.get("/labels", params={"location": "XYZ9"})
        chooser = client.get("/labels")
    assert r.status_code == 404
    assert "Unknown location code &#x27;XYZ9&#x27;" in r.text
    assert "Known location codes: BER1, JFK1, MUC1." in r.text
    assert "<svg" not in r.text
    assert chooser.status_code == 200
    assert "href='/labels?location=MUC1'" in chooser.text


def test_names_and_typed_codes_are_escaped(api, engine):
    with engine.begin() as c:
        fleet.create_location(
            c, code="ESC1", name="<script>alert(1)</script> Lot", time_zone="Europe/Berlin"
        )
    with closing(api.login("agent")) as client:
        sheet = client.get("/labels", params={"location": "ESC1"})
        unknown = client.get("/labels", params={"location": "<b>x</b>"})
    assert sheet.status_code == 200
    assert "<script>alert" not in sheet.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Lot" in sheet.text
    assert "No active vehicles are at this location." in sheet.text
    assert unknown.status_code == 404
    assert "<B>X" not in unknown.text
    assert "&lt;B&gt;X&lt;/B&gt;" in unknown.text
