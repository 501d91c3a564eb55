"""Serve the counter app (counter/) at /counter/: a static shell; every datum comes from the API.

The shell is open like /login is: it holds no data, and a tablet that restarts offline must
be able to load it from its cache and show the sign-in screen. Everything it shows comes
from /api/ with the bearer token the user signs in for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from counter import STATIC

# The service worker and the page must be revalidated every time, or a tablet could keep an
# old app forever; the rest is versioned by the worker's cache.
_REVALIDATE = {"sw.js", "index.html", "", ".", "manifest.webmanifest"}
# What the app is made of (pyproject's package-data for counter/ says the same). The folder
# also holds the package's __init__.py, the icon script and the vendoring tools: not served.
APP_SUFFIXES = frozenset({".html", ".js", ".css", ".webmanifest", ".svg", ".png"})


def is_app_file(relative: str) -> bool:
    """Say whether a path inside counter/ is one of the app's own files."""
    path = Path(relative)
    return path.suffix in APP_SUFFIXES and "__pycache__" not in path.parts


def shell_version(directory: Path) -> str:
    """Return a digest of every file the app is made of: the service worker's cache name."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        if not is_app_file(path.relative_to(directory).as_posix()):
            continue
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return "counter-" + digest.hexdigest()[:16]


class CounterFiles(StaticFiles):
    """The app's files, with the caching and headers a service-worker app needs."""

    def __init__(self, *, directory: Path, **kwargs) -> None:
        super().__init__(directory=directory, **kwargs)
        # A browser installs a new worker only when sw.js changes by a byte: the digest
        # written into it makes every changed shell file a new cache, with no manual bump.
        worker = (Path(directory) / "sw.js").read_text()
        self.version = shell_version(directory)
        self.worker = worker.replace('"counter-dev"', f'"{self.version}"', 1).encode()

    async def get_response(self, path: str, scope: Scope):  # type: ignore[override]
        # "" and "." are the app's page (index.html); a folder has no page of its own.
        if path not in ("", ".") and not is_app_file(path):
            raise HTTPException(404, "not a file of the counter app")
        if path == "sw.js":
            response = Response(self.worker, media_type="text/javascript")
        else:
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
