"""QR labels: a printable A4 sheet per location, one label per vehicle, each opening its page.

A label carries the plate (big, for the eye), the model, and a QR code of the absolute URL
`{base}/vehicle?id={id}`: a phone's camera opens the vehicle's page straight away (after
signing in, which the page sign-in middleware asks for, as on every non-API path).
"""

from __future__ import annotations

import html
from typing import Annotated

import segno
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from api.deps import transaction
from dashboard.vehicles import MAX_VEHICLES
from db import fleet, status
from db.fleet import Location
from db.status import VehicleStatus

router = APIRouter(include_in_schema=False)


def vehicle_url(base: str, vehicle_id: int) -> str:
    """Return the absolute URL of a vehicle's page, the text its QR code encodes."""
    return f"{base.rstrip('/')}/vehicle?id={int(vehicle_id)}"


def qr_svg(url: str, *, css_class: str = "qr") -> str:
    """Return an inline SVG QR code of `url`, sized by CSS (a viewBox, no fixed size).

    Error correction M survives a scuffed or partly dirty label; segno picks the smallest
    version that holds the URL, so the modules stay large enough for a phone at arm's length.
    """
    return segno.make(url, error="m", micro=False).svg_inline(
        omitsize=True, svgclass=css_class, lineclass=None
    )


SHEET_CSS = """
@page { size: A4; margin: 10mm; }
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0; padding: 12px; color: #111; }
header.noprint { display: flex; flex-wrap: wrap; gap: 12px; align-items: center;
  margin-bottom: 12px; }
header.noprint h1 { font-size: 1.3em; margin: 0 12px 0 0; }
header.noprint a, header.noprint button, header.noprint select {
  min-height: 40px; font-size: 1em; }
header.noprint button { padding: 0 16px; cursor: pointer; }
.sheet { display: grid; grid-template-columns: repeat(3, 1fr); gap: 4mm; }
.label { border: 1px dashed #888; border-radius: 2mm; padding: 3mm; text-align: center;
  break-inside: avoid; page-break-inside: avoid; height: 64mm; display: flex;
  flex-direction: column; align-items: center; justify-content: space-between; }
.label .plate { font-size: 20pt; font-weight: 700; letter-spacing: 0.04em;
  white-space: nowrap; }
.label .model { font-size: 10pt; }
.label svg.qr { width: 38mm; height: 38mm; }
.label .url { font-size: 6.5pt; color: #444; word-break: break-all; }
.empty { font-size: 1.1em; }
@media screen and (max-width: 700px) { .sheet { grid-template-columns: repeat(2, 1fr); } }
@media print {
  body { padding: 0; }
  .noprint { display: none !important; }
  .label { border: 0.3mm solid #bbb; }
}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{SHEET_CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def _picker(locations: list[Location], chosen: str | None) -> str:
    options = "".join(
        f"<option value='{html.escape(loc.code)}'"
        + (" selected" if loc.code == chosen else "")
        + f">{html.escape(loc.code)} · {html.escape(loc.name)}</option>"
        for loc in locations
    )
    return (
        "<form method='get' action='/labels' class='picker'>"
        "<label>Location <select name='location' aria-label='location'>"
        f"{options}</select></label> <button type='submit'>Show labels</button></form>"
    )


def _label(v: VehicleStatus, base: str) -> str:
    url = vehicle_url(base, v.vehicle_id)
    return (
        f"<div class='label' data-vehicle-id='{v.vehicle_id}' data-url='{html.escape(url)}'>"
        f"<div class='plate'>{html.escape(v.plate)}</div>"
        f"<div class='model'>{html.escape(f'{v.make} {v.model} · {v.category_code}')}</div>"
        f"{qr_svg(url)}"
        f"<div class='url'>{html.escape(url)}</div></div>"
    )


def render_sheet(
    location: Location, locations: list[Location], vehicles: list[VehicleStatus], base: str
) -> str:
    """Return the printable sheet: a screen-only header (picker, print) and the labels."""
    count = len(vehicles)
    header = (
        "<header class='noprint'>"
        f"<h1>QR labels for {html.escape(location.code)} · {html.escape(location.name)}"
        f" ({count} vehicle{'s' if count != 1 else ''})</h1>"
        f"{_picker(locations, location.code)}"
        "<button type='button' class='print' onclick='window.print()'>Print</button>"
        "<a href='/vehicle'>Back to vehicles</a></header>"
    )
    labels = "".join(_label(v, base) for v in sorted(vehicles, key=lambda v: v.plate))
    body = (
        f"<main class='sheet'>{labels}</main>"
        if vehicles
        else "<p class='empty'>No active vehicles are at this location.</p>"
    )
    return _page(f"Labels {location.code}", header + body)


def render_unknown(code: str | None, locations: list[Location]) -> str:
    """Return the page for a missing or unknown location code, naming the codes that exist."""
    known = ", ".join(loc.code for loc in locations) or "none yet"
    links = "".join(
        f"<li><a href='/labels?location={html.escape(loc.code)}'>{html.escape(loc.code)}</a>"
        f" {html.escape(loc.name)}</li>"
        for loc in locations
    )
    said = (
        f"<p class='error' role='alert'>Unknown location code {html.escape(repr(code))}."
        f" Known location codes: {html.escape(known)}.</p>"
        if code
        else "<p>Choose a location to print its vehicles' QR labels.</p>"
    )
    return _page(
        "Labels",
        f"<header class='noprint'><h1>QR labels</h1>{_picker(locations, None)}</header>"
        f"{said}<ul class='locations'>{links}</ul>",
    )


@router.get("/labels", response_class=HTMLResponse)
def label_sheet(
    request: Request,
    location: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """Serve the label sheet of one location (`?location=CODE`); unknown codes get a 404 page."""
    code = (location or "").strip().upper() or None
    with transaction(request, read_only=True) as conn:
        locations = fleet.list_locations(conn)
        chosen = next((loc for loc in locations if loc.code == code), None)
        vehicles = (
            status.list_status(conn, location_id=chosen.id, limit=MAX_VEHICLES) if chosen else []
        )
    if chosen is None:
        return HTMLResponse(render_unknown(code, locations), status_code=404 if code else 200)
    # The URL the browser used reaches this server, so it is what a phone should open too.
    base = str(request.base_url)
    return HTMLResponse(render_sheet(chosen, locations, vehicles, base))
