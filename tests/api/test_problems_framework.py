"""Framework routes answer bad names with their own status: Panel's component files, /counter/."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import pytest

PROBLEM = "application/problem+json"
# A standard-library module no page (nor Panel, Bokeh or Tornado) imports.
UNLOADED = "tabnanny"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("panel/Row", 400),  # Panel wants /components/<module>/<Class>/<kind>/<file>
        ("..x/A/b/c", 404),  # not a module name at all (was a 500 from importlib)
        ("/A/b/c", 404),
        ("a..b/A/b/c", 404),
        ("no_such_module_here/A/b/c", 404),
        (f"{UNLOADED}/A/b/c", 404),  # a module, but no page loaded it: not imported by a URL
        ("%C3%A9/A/b/c", 404),
        ("panel/NoSuchClass/__css__/x.css", 404),
        ("panel/Row/not_a_resource_kind/x", 403),
        ("panel/Row/_stylesheets/not-listed.css", 403),
        ("panel/Row/_stylesheets/%2E%2E/%2E%2E/%2E%2E/etc/passwd", 403),
    ],
)
def test_bad_component_paths_keep_their_status(api, path, status):
    assert UNLOADED not in sys.modules
    browser = api.login("agent")
    try:
        r = browser.get(f"/components/{path}")
    finally:
        browser.close()
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["status"] == status and "Traceback" not in r.text
    # The server runs in this process: a URL naming a module must not have imported it.
    assert UNLOADED not in sys.modules


class ListsFiles:
    """A component whose stylesheets are this file and one that is not there."""

    _stylesheets: ClassVar[list[str]] = [Path(__file__).name, "missing.css"]


def test_a_loaded_components_listed_file_is_served_and_nothing_else(api):
    base = f"/components/{__name__}/ListsFiles/_stylesheets"
    browser = api.login("agent")
    try:
        served = browser.get(f"{base}/{Path(__file__).name}")
        missing = browser.get(f"{base}/missing.css")
    finally:
        browser.close()
    assert served.status_code == 200 and "class ListsFiles" in served.text
    # Panel lists only the files that exist: a missing one is "not listed".
    assert missing.status_code == 403, missing.text
    assert missing.headers["content-type"].startswith(PROBLEM)


def test_component_files_need_a_signed_in_browser(api):
    with api.client(None, follow_redirects=False) as c:
        r = c.get("/components/panel/Row/_stylesheets/x.css")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


@pytest.mark.parametrize(
    "name", ["__init__.py", "make_icons.py", "vendor.sh", "package.json", "package-lock.json"]
)
def test_counter_serves_none_of_the_folders_other_files(api, name):
    with api.client(None) as c:
        r = c.get(f"/counter/{name}")
    assert r.status_code == 404, r.text[:200]
    assert r.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("", "text/html"),
        ("index.html", "text/html"),
        ("app.js", "javascript"),
        ("app.css", "text/css"),
        ("manifest.webmanifest", "manifest"),
        ("icon.svg", "image/svg"),
        ("icon-192.png", "image/png"),
        ("vendor/jsQR.js", "javascript"),
    ],
)
def test_counter_serves_the_apps_own_files(api, path, kind):
    with api.client(None) as c:
        r = c.get(f"/counter/{path}")
    assert r.status_code == 200
    assert kind in r.headers["content-type"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/preferences", "GET, PATCH"),
        ("POST", "/api/vehicles", "GET"),
        ("POST", "/api/vehicles/1/status", "GET, PUT"),
        ("GET", "/api/auth/token", "POST"),
    ],
)
def test_a_wrong_method_names_every_allowed_one(api, method, path, allow):
    with api.client("agent") as c:
        r = c.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.headers["content-type"].startswith(PROBLEM)
