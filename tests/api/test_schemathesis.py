"""schemathesis against the running server with all its checks: agent, analyst and admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import schemathesis
from click.testing import CliRunner
from hypothesis import strategies as st
from schemathesis.auths import unregister
from schemathesis.cli import schemathesis as st_cli
from schemathesis.specs.openapi.formats import unregister_string_format
from sqlalchemy import Engine

from db import auth

# Streams never end, so a generated request would hang; tests/api/test_streams.py covers them.
STREAMS = "/api/availability/events"
# Examples per operation and phase: what bounds the run (with the coverage phase's own cases).
MAX_EXAMPLES = 8
# The coverage phase (every boundary and near-boundary value of every field, ~1,800 cases) is
# most of a run's time and does not depend on who asks: it runs for the admin, whom no role
# check stops short of the logic. Every role runs the examples, the fuzzing (valid and
# invalid data) and the stateful sequences, with all checks.
PHASES = {
    "agent": "examples,fuzzing,stateful",
    "analyst": "examples,fuzzing,stateful",
    "admin": "examples,coverage,fuzzing,stateful",
}

# Rules JSON Schema cannot state: schema-valid bodies these operations refuse with a 422
# that names the field (the other checks, and every other status, still apply to them).
CROSS_FIELD = {
    "/api/availability/search": "the end must be after the start",
    "/api/availability/lock": "the end must be after the start",
    "/api/availability/lock/{hold_id}/extend": "the new end must be after the hold's start",
    "/api/reservations": "either hold_id or vehicle_id, start, end and location_id",
    "/api/rentals/{rental_id}/extend": "the new return must be after the pickup",
    "/api/push/subscriptions/{device_id}": "the endpoint must be at a configured push service",
    "/api/transfers": "the destination must differ from the origin; the end after the start",
    # Rules that depend on the data: a sequence number the server has not reached yet, and
    # location ids that must name existing locations.
    "/api/availability/realtime": "since must not be ahead of the newest event",
    "/api/preferences": "location_ids must name existing locations",
    # A key already used for another change is refused (422, as the Idempotency-Key draft says).
    "/api/vehicles/{vehicle_id}/status": "an Idempotency-Key is not reused for another change",
}
# The API's times are years 2000-2099 (the document says so with a pattern next to
# `format: date-time`). Drawn from every year and filtered by that pattern, nearly all
# values were thrown away (Hypothesis's filter_too_much); drawn in range, none are.
OFFSETS = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
DATE_TIMES = st.builds(
    lambda when, tz: when.replace(tzinfo=tz).isoformat(),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.sampled_from(OFFSETS),
)


def _config(path) -> str:
    lines = []
    for operation in CROSS_FIELD:
        lines += [
            "[[operations]]",
            f'include-path = "{operation}"',
            "checks.positive_data_acceptance.expected-statuses = "
            '["2xx", "401", "403", "404", "409", "422", "429"]',
            "",
        ]
    path.write_text("\n".join(lines))
    return str(path)


@pytest.fixture
def api_date_times() -> Iterator[None]:
    schemathesis.openapi.format("date-time", DATE_TIMES)
    try:
        yield
    finally:
        unregister_string_format("date-time")


# The one operation that can end the token a request is signed with.
REVOKE = ("DELETE", "/api/auth/tokens/{token_id}")


@pytest.fixture
def fresh_tokens(engine: Engine) -> Iterator[dict[str, int]]:
    """Sign generated requests in with a token of the user in `who["user_id"]`.

    A generated DELETE /api/auth/tokens/{id} may revoke the token in use, so the request after
    one is signed with a new token; the others share one (a token per request was a database
    write per request, a third of the run's time).
    """
    who: dict[str, int] = {}
    held: dict[str, str] = {}

    @schemathesis.auth(refresh_interval=None)
    class FreshToken:
        def get(self, case, ctx) -> str:
            if "token" not in held or held.pop("revoking", None):
                with engine.begin() as c:
                    issued = auth.issue_token(
                        c, user_id=who["user_id"], kind="api", lifetime=timedelta(hours=1)
                    )
                held["token"] = issued.token
            if (case.method.upper(), case.path) == REVOKE:
                held["revoking"] = "yes"
            return held["token"]

        def set(self, case, data: str, ctx) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    try:
        yield who
    finally:
        unregister()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["agent", "analyst", "admin"])
def test_schemathesis_with_all_checks_passes(api, fresh_tokens, api_date_times, role, tmp_path):
    fresh_tokens["user_id"] = api.users[role].id
    result = CliRunner().invoke(
        st_cli,
        [
            "--no-color",
            "--config-file",
            _config(tmp_path / "schemathesis.toml"),
            "run",
            f"{api.url}/api/openapi.json",
            # The document itself is behind authentication.
            "--header",
            f"Authorization: Bearer {api.tokens[role]}",
            "--checks",
            "all",
            "--exclude-path",
            STREAMS,
            "--phases",
            PHASES[role],
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20261204",
            "--generation-database",
            "none",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--output-truncate",
            "false",
        ],
        catch_exceptions=False,
    )
    (tmp_path / "schemathesis.txt").write_text(result.output)
    assert result.exit_code == 0, result.output[-25000:]
    # Warnings (ids that are not there, writes an analyst may not make) are shown, not failed:
    # they say where generated data stops short, not that the API broke its contract.
    final = result.output.rstrip().splitlines()[-1]
    assert not re.search(r"\d+ (failure|error)", final), result.output[-25000:]
    assert re.search(r"\d+ generated", result.output), result.output[-3000:]
