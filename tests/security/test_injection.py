"""Hostile text in every string field of every write (from the served OpenAPI document's
request schemas) and in every string parameter: no 5xx, and stored markup never runs in a page
or in the counter app."""

from __future__ import annotations

from typing import Any

import httpx

from dashboard.app import PAGES
from tests.counter.conftest import open_app
from tests.dashboard.conftest import sign_in
from tests.security.conftest import Sweep
from tests.security.routes import (
    CORPUS,
    MARKUP,
    Examples,
    Operation,
    Schemas,
    fill_path,
    json_bytes,
    operations,
    request_schema,
    string_leaves,
    url_text,
    with_value,
)
from tests.security.test_credentials_sweep import signed_in

JSON = {"Content-Type": "application/json"}
# Bodies that are not what any schema asks for: broken, the wrong shape, nested too deep.
MALFORMED = (b"{", b"[]", b'"text"', b"null", b"[" * 50_000, b'{"a":' * 20_000, b"\xff\xfe")


# The longest a URL the client sends may be: the 2 MB string goes in cut to this.
URL_LIMIT = 30_000


def header_safe(value: str) -> bool:
    return not any(c in value for c in "\r\n\x00") and value.isprintable() and len(value) < 8000


def string_params(op: Operation) -> list[dict[str, Any]]:
    return [
        p
        for p in op.spec.get("parameters", [])
        if p.get("schema", {}).get("type") == "string" or "anyOf" in p.get("schema", {})
    ]


def tries(op: Operation, sweep: Sweep) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Return (what, method, url, request arguments) for each hostile input to `op`."""
    ex = Examples(sweep.ids)
    schemas = Schemas(sweep.document)
    schema = request_schema(op)
    body = None if schema is None else schemas.example(schema, ex)
    base = {"content": json_bytes(body), "headers": JSON} if body is not None else {}
    method = op.method.upper()
    out = []
    for at in string_leaves(body):
        for name, value in CORPUS:
            args = {"content": json_bytes(with_value(body, at, value)), "headers": JSON}
            what = f"{name} in body {'.'.join(map(str, at))}"
            out.append((what, method, fill_path(op, ex), args))
    for p in string_params(op):
        for name, text in CORPUS:
            value = text[:URL_LIMIT]
            what = f"{name} in {p['in']} {p['name']}"
            if p["in"] == "path":
                out.append((what, method, fill_path(op, ex, {p["name"]: value}), base))
            elif p["in"] == "query":
                url = f"{fill_path(op, ex)}?{p['name']}={url_text(value)}"
                out.append((what, method, url, base))
            elif p["in"] == "header" and header_safe(value):
                headers = {**base.get("headers", {}), p["name"]: value.encode()}
                out.append((what, method, fill_path(op, ex), {**base, "headers": headers}))
    if schema is not None:
        for raw in MALFORMED:
            args = {"content": raw, "headers": JSON}
            out.append((f"body {raw[:12]!r}", method, fill_path(op, ex), args))
    return out


def test_hostile_text_in_every_field_gives_no_5xx(sweep: Sweep, log_tap) -> None:
    ops = [op for op in operations(sweep.document) if op.path != "/api/availability/events"]
    problems: list[str] = []
    sent = 0
    with sweep.api.client("admin") as client:
        for op in ops:
            for what, method, url, args in tries(op, sweep):
                sent += 1
                try:
                    r = client.request(method, url, **args)
                except httpx.RemoteProtocolError as exc:  # the server dropped the connection
                    problems.append(f"{op.id}: {what} -> connection dropped ({exc})")
                    continue
                if r.status_code >= 500:
                    problems.append(f"{op.id}: {what} -> {r.status_code} {r.text[:120]}")
    assert sent > 500, f"only {sent} hostile requests were built from the document"
    assert problems == []
    # Refused input is an answer, not a crash: nothing the server logged carries a traceback.
    assert log_tap.tracebacks() == []


def test_hostile_asset_and_page_paths_give_no_5xx(sweep: Sweep) -> None:
    problems: list[str] = []
    with signed_in(sweep, "agent") as browser:
        for name, text in CORPUS:
            value = text[:URL_LIMIT]
            for path in (
                f"/components/{url_text(value)}/x.js",
                f"/components/panel/{url_text(value)}",
                f"/static/{url_text(value)}",
                f"/board?id={url_text(value)}",
                f"/counter/{url_text(value)}",
            ):
                r = browser.get(path)
                if r.status_code >= 500:
                    problems.append(f"{name}: GET {path[:60]} -> {r.status_code}")
        for path in ("/components/no.such.module/x.js", "/components/..%2F..%2Fetc%2Fpasswd"):
            r = browser.get(path)
            if r.status_code >= 500:
                problems.append(f"GET {path} -> {r.status_code}")
    assert problems == []


def store_markup(sweep: Sweep) -> int:
    """Write each markup string where pages show it back; return how many writes took."""
    stored = 0
    vehicle = sweep.ids["vehicle_id"]
    with sweep.api.client("admin") as admin:
        for i, markup in enumerate(MARKUP):
            status = ("cleaning", "available")[i % 2]
            r = admin.put(
                f"/api/vehicles/{vehicle}/status", json={"status": status, "reason": markup}
            )
            stored += r.status_code == 200
            criteria = {"location": "BER1"}
            r = admin.post("/api/saved-searches", json={"name": markup, "criteria": criteria})
            stored += r.status_code == 201
    return stored


def test_stored_markup_never_runs_in_any_page_or_the_counter_app(sweep: Sweep, browser) -> None:
    assert store_markup(sweep) >= len(MARKUP), "the markup was not stored: nothing to show"
    dialogs: list[str] = []

    def record(dialog: Any) -> None:
        dialogs.append(f"{dialog.page.url}: {dialog.message}")
        dialog.dismiss()

    context, page = sign_in(browser, sweep.api, "admin", "/board")
    try:
        page.on("dialog", record)
        for path in [*PAGES, "/labels", "/api/docs"]:
            page.goto(f"{sweep.api.url}{path}?id={sweep.ids['vehicle_id']}")
            if path in PAGES:
                page.wait_for_selector(".topbar [data-state=live]", timeout=20_000)
        # The audit trail lists every status change with its reason: the markup is shown, as
        # text, in a page (else this test could not fail).
        page.goto(f"{sweep.api.url}/audit")
        page.get_by_text(MARKUP[0]).first.wait_for(timeout=20_000)
    finally:
        context.close()
    context, page = open_app(browser, sweep.api, "agent")
    try:
        page.on("dialog", record)
        page.goto(f"{sweep.api.url}/counter/#/vehicle/{sweep.ids['vehicle_id']}")
        page.locator("body").wait_for(timeout=10_000)
    finally:
        context.close()
    assert dialogs == []
