"""Mount the dashboard pages on the FastAPI app (Panel served natively through bokeh-fastapi)."""

from __future__ import annotations

import importlib
from pathlib import Path

import panel as pn
from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from panel.io.fastapi import add_applications

from dashboard import pagesocket
from dashboard.shell import NAV, Shell, View

# Each page's view: imported by `import_views` as the server starts, after the app is built
# (so building an app, as every test server does, stays quick).
PAGES: dict[str, str] = {
    "/board": "dashboard.live:LiveBoard",
    "/map": "dashboard.map:FleetMap",
    "/search": "dashboard.search:SearchView",
    "/overdue": "dashboard.overdue:OverdueView",
    "/conflicts": "dashboard.conflicts:ConflictsView",
    "/transfers": "dashboard.transfers:TransfersView",
    "/audit": "dashboard.audit:AuditView",
    "/vehicle": "dashboard.vehicle:VehicleView",
    "/analytics": "dashboard.analytics:AnalyticsView",
    "/feeds": "dashboard.feeds:FeedsView",
}
TITLES = {path: label for path, label, _ in NAV}
# Bokeh copies the request's cookies and headers into the session token it writes into the
# page's HTML, where any script could read them: the session cookie must not travel there.
# The page learns who is signed in from the server's own check (api.security.page_principal).
SESSION_TOKEN_COOKIES: list[str] = []
SESSION_TOKEN_EXCLUDED_HEADERS = ["Cookie", "Authorization", "Proxy-Authorization", "X-Csrf-Token"]
# In every page's head: reloads a page whose live document never arrived (see the file).
PAGE_BOOT = Path(__file__).parent / "assets" / "pageboot.js"
PAGE_BOOT_URL = "/page-boot.js"


def view_class(spec: str) -> type[View]:
    """Return the View class named by 'module:Class'."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def import_views() -> None:
    """Import every page's view now (the server calls this once before it says it is ready).

    A restarted server gets every open page back at once: each would otherwise wait for its
    view's first import (a quarter of a second for the board) behind the others.
    """
    for spec in PAGES.values():
        importlib.import_module(spec.split(":")[0])


def mount_pages(app: FastAPI) -> None:
    """Add every page; each browser session gets its own page objects."""
    pagesocket.install()

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/board", status_code=303)

    @app.get(PAGE_BOOT_URL, include_in_schema=False)
    def page_boot() -> FileResponse:
        return FileResponse(PAGE_BOOT, media_type="text/javascript")

    pn.config.js_files = {**pn.config.js_files, "fleet_page_boot": PAGE_BOOT_URL}

    # The printable QR label sheets: plain HTML, behind the same page sign-in.
    from dashboard import labels

    app.include_router(labels.router)
    for path, spec in PAGES.items():
        _mount(app, path, spec)


def _mount(app: FastAPI, path: str, spec: str) -> None:
    def page():
        return Shell(app.state, view_class(spec), path).layout()

    add_applications(
        {path: page},
        app=app,
        title=f"Fleet · {TITLES.get(path, path)}",
        include_cookies=SESSION_TOKEN_COOKIES,
        exclude_headers=SESSION_TOKEN_EXCLUDED_HEADERS,
    )
