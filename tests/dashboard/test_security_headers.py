"""Security headers: every page runs under its Content-Security-Policy with no violation."""

from __future__ import annotations

import re

import httpx

from api.app import create_app
from api.headers import API_POLICY, tile_origin
from dashboard.app import PAGES
from tests.api.conftest import ServerThread, free_port, server_settings
from tests.counter.conftest import open_app
from tests.dashboard.conftest import sign_in

# Violations as the page sees them, kept where the test can read them.
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def _policy(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.partition(" ")[2] for d in policy.split("; ")}


def test_pages_and_data_carry_their_policies_and_no_framing(api):
    c = api.login("manager")
    try:
        page = c.get("/board")
        data = c.get("/api/auth/me")
        login = c.get("/login")
    finally:
        c.close()
    for r in (page, data, login):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert "strict-transport-security" not in r.headers  # plain HTTP here
    board = _policy(page)
    assert board["frame-ancestors"] == "'none'" and board["object-src"] == "'none'"
    # Code from our own origin only: no other host may supply a script.
    assert board["script-src"].split() == ["'self'", "'unsafe-inline'", "'unsafe-eval'", "blob:"]
    assert board["connect-src"] == "'self' blob:"
    assert "https://tile.openstreetmap.org" in board["img-src"].split()
    assert data.headers["content-security-policy"] == API_POLICY
    assert _policy(login)["form-action"] == "'self'"


def test_strict_transport_security_when_cookies_are_secure(database_url, tmp_path):
    settings = server_settings(database_url, tmp_path, cookie_secure=True)
    server = ServerThread(create_app(settings, pages=False), free_port()).start()
    try:
        r = httpx.get(f"{server.url}/healthz")
    finally:
        server.stop()
    assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_tile_origins_cover_the_servers_a_template_names():
    assert tile_origin("https://tile.openstreetmap.org/{z}/{x}/{y}.png") == (
        "https://tile.openstreetmap.org"
    )
    assert tile_origin("https://{s}.tile.opentopomap.org/{z}/{x}/{y}.png") == (
        "https://*.tile.opentopomap.org"
    )
    assert tile_origin("file:///tiles/{z}.png") is None


def test_every_page_runs_under_its_policy_without_a_violation(browser, api):
    context, page = sign_in(browser, api, "manager", "/board")
    context.add_init_script(LISTEN)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security" in m.text else None)
    try:
        for path in PAGES:
            page.goto(f"{api.url}{path}")
            # Live means Bokeh built the page and its socket is open: the policy let it run.
            page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
            page.wait_for_load_state("networkidle")
            seen = page.evaluate("window.__csp")
            assert seen == [], f"{path}: {seen}"
        assert errors == []
    finally:
        context.close()


def test_the_counter_app_runs_under_its_policy_without_a_violation(browser, api):
    context, page = open_app(browser, api, prepare=lambda c: c.add_init_script(LISTEN))
    try:
        for screen in ("#/board", "#/search", "#/overdue", "#/alerts"):
            page.goto(f"{api.url}/counter/{screen}")
            page.wait_for_load_state("networkidle")
            seen = page.evaluate("window.__csp")
            assert seen == [], f"{screen}: {seen}"
    finally:
        context.close()


def test_hashed_scripts_are_kept_for_a_year_other_assets_an_hour_data_never(api):
    c = api.login("agent")
    try:
        page = c.get("/board")
        assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
        hashed = [a for a in assets if "v=" in a]
        plain = [a for a in assets if "v=" not in a]
        assert hashed and plain, assets
        for path in hashed:
            r = c.get(f"/{path}")
            assert r.status_code == 200
            assert r.headers["cache-control"] == "private, max-age=31536000, immutable"
        r = c.get(f"/{plain[0]}")
        assert r.headers["cache-control"] == "private, max-age=3600"
        missing = c.get("/static/js/no-such-file.js?v=1")
        data = c.get("/api/auth/me")
    finally:
        c.close()
    # A missing file must not be remembered as missing for a year; pages and data are fresh.
    assert "immutable" not in missing.headers.get("cache-control", "")
    assert "max-age" not in page.headers.get("cache-control", "")
    assert "max-age" not in data.headers.get("cache-control", "")
    # Signed-out browsers get no asset at all (and nothing cached for them).
    anonymous = httpx.get(f"{api.url}/{hashed[0]}", follow_redirects=False)
    assert anonymous.status_code == 303 and "cache-control" not in anonymous.headers
