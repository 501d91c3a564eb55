"""Serve the counter app (counter/) at /counter/: a static shell; every datum comes from the API.

The shell is open like /login is: it holds no data, and a tablet that restarts offline must
be able to load it from its cache and show the sign-in screen. Everything it shows comes
from /api/ with the bearer token the user signs in for.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from counter import STATIC

# The service worker and the page must be revalidated every time, or a tablet could keep an
# old app forever; the rest is versioned by the worker's cache.
_REVALIDATE = {"sw.js", "index.html", "", ".", "manifest.webmanifest"}


class CounterFiles(StaticFiles):
    """The app's files, with the caching and headers a service-worker app needs."""

    async def get_response(self, path: str, scope: Scope):  # type: ignore[override]
        response = await super().get_response(path, scope)
        if path in _REVALIDATE or path.endswith("/"):
            response.headers["Cache-Control"] = "no-cache"
        else:
            response.headers["Cache-Control"] = "public, max-age=300"
        if path == "sw.js":
            response.headers["Service-Worker-Allowed"] = "/counter/"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_counter(app: FastAPI) -> None:
    """Serve the app at /counter/ (and send /counter there)."""

    @app.get("/counter", include_in_schema=False)
    def counter_root() -> RedirectResponse:
        return RedirectResponse("/counter/", status_code=308)

    app.mount("/counter/", CounterFiles(directory=STATIC, html=True), name="counter")
