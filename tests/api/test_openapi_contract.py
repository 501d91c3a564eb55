"""The served document says how each operation authenticates, what it can fail with, and the
form of its values: durations in RFC 3339 form, the same in the API and `fleet ... --json`."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from db.timeutil import iso_duration
from fleet.cli.main import app as fleet_app
from fleet.settings import get_settings
from tests.db.factories import rental_under_way

PROBLEM = "application/problem+json"
# RFC 3339 Appendix A's `duration`, whole seconds (its grammar has no fractions).
RFC3339_DURATION = re.compile(
    r"^P(?:(?:\d+D)?T(?:\d+H(?:\d+M(?:\d+S)?)?|\d+M(?:\d+S)?|\d+S)|\d+D|\d+W)$"
)
DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


@pytest.fixture
def document(api) -> dict:
    with api.client("analyst") as c:
        return c.get("/api/openapi.json").json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_every_authenticated_operation_names_its_schemes_and_problems(document):
    schemes = document["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert schemes["session"]["in"] == "cookie" and schemes["csrf"]["in"] == "header"
    open_paths = {"/api/auth/token", "/healthz", "/readyz"}
    for path, method, op in _operations(document):
        responses = op["responses"]
        if path in open_paths:
            continue
        assert op.get("security"), (method, path)
        assert {"bearer": []} in op["security"], (method, path)
        if method in ("post", "put", "patch", "delete") and path != "/api/auth/token":
            # A browser's write needs its CSRF header with the cookie.
            assert {"session": [], "csrf": []} in op["security"], (method, path)
        for status in ("401", "403", "503"):
            content = responses[status]["content"]
            assert list(content) == [PROBLEM], (method, path, status)
            assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
        assert "WWW-Authenticate" in responses["401"]["headers"]
        assert "Retry-After" in responses["503"]["headers"]


def test_inputs_bring_422_and_bodies_bring_400_with_problem_content(document):
    for path, method, op in _operations(document):
        responses = op["responses"]
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in responses, (method, path)
        if op.get("requestBody"):
            assert "400" in responses, (method, path)
        for status, response in responses.items():
            if status[0] in "45":
                assert PROBLEM in response["content"], (method, path, status)
                assert "application/json" not in response["content"], (method, path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_optional_parameters_are_described_without_null(document):
    # A query string or header cannot carry a JSON null: "null" would be sent as text.
    for path, method, op in _operations(document):
        for parameter in op.get("parameters", ()):
            schema = json.dumps(parameter["schema"])
            assert '"null"' not in schema, (method, path, parameter["name"], schema)
    put = document["paths"]["/api/vehicles/{vehicle_id}/status"]["put"]
    [if_match] = [p for p in put["parameters"] if p["name"].lower() == "if-match"]
    assert if_match["schema"]["type"] == "string" and "pattern" in if_match["schema"]


def test_duration_fields_are_declared_as_rfc3339_durations(document):
    schemas = document["components"]["schemas"]
    declared = {
        (name, prop)
        for name, schema in schemas.items()
        for prop, spec in schema.get("properties", {}).items()
        if "duration" in json.dumps(spec)
    }
    assert {("OverdueOut", "overdue_by"), ("Category", "prep_buffer"), ("Transfer", "late_by")} <= (
        declared
    )


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(hours=21, minutes=4, seconds=1.45355), "PT21H4M1S"),
        (timedelta(minutes=30), "PT30M"),
        (timedelta(days=1, hours=2, minutes=5), "P1DT2H5M"),
        (timedelta(days=3), "P3D"),
        (timedelta(seconds=45, microseconds=999_999), "PT45S"),
        (timedelta(0), "PT0S"),
        (timedelta(microseconds=3), "PT0S"),
    ],
)
def test_durations_are_written_in_whole_seconds(span, text):
    assert iso_duration(span) == text
    assert RFC3339_DURATION.match(text)


def _seconds(text: str) -> int:
    found = DURATION.match(text)
    assert found, text
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def test_overdue_by_has_one_form_in_the_api_and_the_cli(
    api, engine, database_url, monkeypatch, tmp_path
):
    w = api.world
    with engine.begin() as c:
        rental = rental_under_way(c, w, api.vehicles[0], start=w.at(-20), end=w.at(-3))
    with api.client("agent") as c:
        [served] = c.get("/api/availability/overdue").json()
        categories = c.get("/api/categories").json()
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(fleet_app, ["overdue", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    [printed] = json.loads(result.stdout)
    assert served["block_id"] == printed["block_id"] == rental.id
    for text in (served["overdue_by"], printed["overdue_by"]):
        assert isinstance(text, str) and RFC3339_DURATION.match(text), text
    # Read moments apart: the same span to within the time between the two reads.
    assert abs(_seconds(served["overdue_by"]) - _seconds(printed["overdue_by"])) < 120
    assert _seconds(served["overdue_by"]) > 2 * 3600  # due back 3 h before the world's now
    for category in categories:
        assert RFC3339_DURATION.match(category["prep_buffer"]), category
        assert RFC3339_DURATION.match(category["grace_period"]), category


def test_a_filter_by_id_documents_the_404_it_can_give(api, document):
    for path, method, op in _operations(document):
        ids = [
            p for p in op.get("parameters", ()) if p["in"] == "query" and p["name"].endswith("_id")
        ]
        if ids:
            assert "404" in op["responses"], (method, path, [p["name"] for p in ids])
    with api.client("agent") as c:
        r = c.get("/api/availability/realtime", params={"location_id": 999_999})
    assert r.status_code == 404 and r.json()["field"] == "location"
