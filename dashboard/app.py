"""Mount the dashboard pages on the FastAPI app (Panel served natively through bokeh-fastapi)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from panel.io.fastapi import add_application

from dashboard.live import LiveBoard


def mount_pages(app: FastAPI) -> None:
    """Add every page; each browser session gets its own page objects."""

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/board", status_code=303)

    @add_application("/board", app=app, title="Fleet board")
    def board():
        return LiveBoard(state=app.state)
