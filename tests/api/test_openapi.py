"""The API's description: schemathesis against the served document, the docs page, the CLI."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from sqlalchemy import Engine
from typer.testing import CliRunner

from api.routes.docs import render
from db import auth
from fleet.cli.main import app as fleet_app
from fleet.settings import get_settings

# Streams never end, so a generated request would hang; tests/api/test_streams.py covers them.
STREAMS = ["/api/availability/events"]


# The agent meets the counter's routes; the admin also gets past the supervisors' role checks.
@pytest.mark.slow
@pytest.mark.parametrize("role", ["agent", "admin"])
def test_generated_requests_get_no_5xx_and_responses_match_the_schema(api, engine, role):
    schema = schemathesis.openapi.from_url(
        f"{api.url}/api/openapi.json",
        headers={"Authorization": f"Bearer {api.tokens[role]}"},
        timeout=20,
    ).exclude(path=STREAMS)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    assert not [op.label for op in operations if op.path in STREAMS]
    for operation in operations:
        # Every operation runs, so one failure does not hide the next.
        try:
            _fuzz(operation, api.url, lambda: _fresh_token(engine, api.users[role].id))
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}\n{exc}")
    assert not failures, "\n\n".join(failures)


def _fuzz(operation, base_url: str, token: Callable[[], str]) -> None:
    """Send generated valid and invalid requests; fail on a 5xx or a response off the schema."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query or operation.headers or operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case) -> None:
        # A token per request: a generated DELETE /api/auth/tokens/{id} may revoke the one in use.
        case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token()}"},
            timeout=20,
            checks=[not_a_server_error, response_schema_conformance],
        )

    run()


def _fresh_token(engine: Engine, user_id: int) -> str:
    with engine.begin() as c:
        issued = auth.issue_token(c, user_id=user_id, kind="api", lifetime=timedelta(hours=1))
    return issued.token


def _page_paths(page: str) -> set[str]:
    return {html.unescape(p) for p in re.findall(r'<span class="path">([^<]*)</span>', page)}


def test_docs_page_lists_every_path_of_the_document(api):
    with api.client("analyst") as c:
        document = c.get("/api/openapi.json").json()
        page = c.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert _page_paths(page.text) == set(document["paths"])
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert f'<span class="m {method}">{method.upper()}</span>' in page.text
            if op.get("summary"):
                assert html.escape(op["summary"]) in page.text, (method, path)


def test_docs_page_is_self_contained(api):
    with api.client("agent") as c:
        page = c.get("/api/docs").text
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "loads something from elsewhere"


def test_docs_page_escapes_the_documents_text(api):
    with api.client("agent") as c:
        page = c.get("/api/docs").text
    # The app's description says "Authorization: Bearer <token>".
    assert "Bearer &lt;token&gt;" in page
    assert "<token>" not in page


def test_render_escapes_every_piece_of_a_hostile_document():
    evil = "<script>alert(1)</script>"
    document = {
        "info": {"title": evil, "version": "1", "description": f"`{evil}` and {evil}"},
        "paths": {
            f"/x/{evil}": {
                "get": {
                    "tags": [evil],
                    "summary": evil,
                    "description": evil,
                    "operationId": evil,
                    "parameters": [
                        {"name": evil, "in": "query", "schema": {"type": "string", "pattern": evil}}
                    ],
                    "responses": {"200": {"description": evil}},
                },
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{evil}"}}
                        }
                    },
                    "responses": {"201": {"description": "ok"}},
                },
            }
        },
        "components": {
            "schemas": {
                evil: {
                    "type": "object",
                    "properties": {evil: {"enum": [evil], "description": evil}},
                    "required": [evil],
                }
            }
        },
    }
    page = render(document)
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10
    assert f"<code>{html.escape(evil)}</code>" in page  # a `code` span, its content escaped


def test_render_shows_a_request_bodys_fields_through_its_ref(api):
    with api.client("agent") as c:
        page = c.get("/api/docs").text
    put = page[page.index('id="op-put_vehicle_status') :]
    put = put[: put.index("</section>")]
    assert "Request body" in put
    for field in ("status", "reason", "expected_version", "expected_available_at"):
        assert f"<code>{field}</code>" in put
    assert "<span class='req'>required</span>" in put
    assert "Idempotency-Key" in put or "idempotency-key" in put
    assert "<strong>409</strong>" in put and "<strong>422</strong>" in put


@pytest.mark.parametrize("path", ["/api/docs", "/api/openapi.json"])
def test_docs_need_authentication(api, path):
    with api.client(None) as c:
        r = c.get(path)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401 and r.json()["instance"] == path


def test_docs_page_opens_in_a_signed_in_browser(api):
    browser = api.login("analyst")
    try:
        r = browser.get("/api/docs")
    finally:
        browser.close()
    assert r.status_code == 200 and "<h1>Fleet availability API" in r.text


def test_fleet_openapi_prints_the_served_document(api, database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLEET_SECRET_KEY", "cli-test-key")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(fleet_app, ["openapi"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    with api.client("agent") as c:
        served = c.get("/api/openapi.json").json()
    assert sorted(printed["paths"]) == sorted(served["paths"])
    assert printed == served
