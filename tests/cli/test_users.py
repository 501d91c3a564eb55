"""`fleet user` and `fleet demo-logins` against the real test database, with real commits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from db import auth, fleet
from db.demo import DEMO_LOGINS
from db.errors import NotAuthenticated
from fleet.cli.main import app
from fleet.settings import get_settings

PASSWORD = "correct horse battery"


@pytest.fixture
def fleet_cli(monkeypatch: pytest.MonkeyPatch, database_url: str, committed: Engine):
    """Invoke `fleet ...` with what is typed at the terminal; commits are truncated afterwards."""
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: object, typed: str | None = None) -> Result:
        return runner.invoke(app, [str(a) for a in args], input=typed)

    yield invoke
    get_settings.cache_clear()


@pytest.fixture
def staff(committed: Engine) -> fleet.User:
    """One lot, BER1, and anna, an agent there with a password."""
    with committed.begin() as c:
        ber = fleet.create_location(c, code="BER1", name="Berlin", time_zone="Europe/Berlin")
        anna = fleet.create_user(
            c, username="anna", full_name="Anna Agent", role="agent", home_location_id=ber.id
        )
        auth.set_password(c, user_id=anna.id, password=PASSWORD)
    return anna


def sign_in(engine: Engine, username: str, password: str) -> fleet.User:
    with engine.begin() as c:
        return auth.authenticate(c, username=username, password=password)


def resolve(engine: Engine, token: str) -> fleet.User:
    with engine.begin() as c:
        return auth.resolve_token(c, token=token, kind="api")[0]


def usernames(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return c.execute(text("SELECT username FROM users ORDER BY username")).scalars().all()


def as_json(result: Result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_add_asks_for_the_password_twice_without_echoing_it(fleet_cli, staff, committed):
    out = fleet_cli("user", "add", "carl", "--name", "Carl Count", "--role", "analyst",
                    "--location", "ber1", typed=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "Password:" in out.output and "Repeat for confirmation:" in out.output
    assert PASSWORD not in out.output
    assert "user carl (analyst at BER1) created" in out.stdout
    carl = sign_in(committed, "carl", PASSWORD)
    assert (carl.full_name, carl.role, carl.home_location_id) == (
        "Carl Count",
        "analyst",
        staff.home_location_id,
    )


def test_add_asks_again_when_the_two_passwords_differ(fleet_cli, staff, committed):
    typed = f"{PASSWORD}\n{PASSWORD}x\n{PASSWORD}\n{PASSWORD}\n"
    out = fleet_cli("user", "add", "dora", "--name", "Dora", "--role", "admin", typed=typed)
    assert out.exit_code == 0, out.output
    assert "do not match" in out.output
    assert sign_in(committed, "dora", PASSWORD).role == "admin"


def test_add_reads_the_password_from_stdin_for_scripts(fleet_cli, staff, committed):
    out = fleet_cli("user", "add", "emil", "--name", "Emil Script", "--role", "manager",
                    "--password-stdin", "--json", typed="  spaces count too  \n")  # fmt: skip
    created = as_json(out)
    assert (created["username"], created["role"], created["home_location_id"]) == (
        "emil",
        "manager",
        None,
    )
    assert sign_in(committed, "emil", "  spaces count too  ").id == created["id"]


@pytest.mark.parametrize(
    ("args", "typed", "message"),
    [
        (("Bad Name", "--role", "agent"), PASSWORD, "malformed username 'Bad Name'"),
        (("newbie", "--role", "system"), PASSWORD, "unknown role 'system'"),
        (("newbie", "--role", "clerk"), PASSWORD, "unknown role 'clerk'"),
        (("anna", "--role", "agent"), PASSWORD, "user 'anna' exists already"),
        (("newbie", "--role", "agent", "--location", "XXX9"), PASSWORD, "unknown location"),
        (("newbie", "--role", "agent"), "too short", "password is too short (9 characters)"),
        (("newbie", "--role", "agent"), "", "password is too short (0 characters)"),
    ],
)
def test_add_refuses_bad_input_with_exit_2_and_creates_nobody(
    fleet_cli, staff, committed, args, typed, message
):
    before = usernames(committed)
    out = fleet_cli("user", "add", *args, "--name", "New Body", "--password-stdin",
                    typed=f"{typed}\n")  # fmt: skip
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith(f"error: {message}")
    assert "hint: " in out.stderr
    assert "Traceback" not in out.output
    assert usernames(committed) == before


def test_add_errors_as_json_name_the_field(fleet_cli, staff):
    out = fleet_cli("user", "add", "newbie", "--name", "N", "--role", "agent",
                    "--password-stdin", "--json", typed="short\n")  # fmt: skip
    assert out.exit_code == 2
    err = json.loads(out.stderr)
    assert (err["error"], err["field"]) == ("invalid_input", "password")
    assert err["hint"] == "use at least 10 characters"


def test_unknown_user_is_refused_before_the_password_is_asked(fleet_cli, staff):
    out = fleet_cli("user", "passwd", "nobody", typed=f"{PASSWORD}\n{PASSWORD}\n")
    assert out.exit_code == 2
    assert "error: unknown user 'nobody'" in out.stderr
    assert "Password:" not in out.output


def test_passwd_changes_the_password_and_ends_every_session_and_token(fleet_cli, staff, committed):
    with committed.begin() as c:
        session = auth.issue_token(c, user_id=staff.id, kind="session", lifetime=timedelta(1))
        api = auth.issue_token(c, user_id=staff.id, kind="api", lifetime=timedelta(1))
    new = "a much better password"
    out = fleet_cli("user", "passwd", "anna", typed=f"{new}\n{new}\n")
    assert out.exit_code == 0, out.output
    assert "password of anna changed; signed out everywhere (2 tokens revoked)" in out.stdout
    assert new not in out.output
    with pytest.raises(NotAuthenticated):
        sign_in(committed, "anna", PASSWORD)
    assert sign_in(committed, "anna", new).id == staff.id
    with committed.begin() as c, pytest.raises(NotAuthenticated):
        auth.resolve_token(c, token=session.token)
    with committed.begin() as c, pytest.raises(NotAuthenticated):
        auth.resolve_token(c, token=api.token)

    via_stdin = as_json(
        fleet_cli("user", "passwd", "anna", "--password-stdin", "--json", typed=f"{PASSWORD}\n")
    )
    assert via_stdin["password_changed"] is True and via_stdin["user"]["username"] == "anna"
    assert sign_in(committed, "anna", PASSWORD).id == staff.id


def test_deactivate_revokes_tokens_and_activate_lets_the_user_sign_in_again(
    fleet_cli, staff, committed
):
    with committed.begin() as c:
        api = auth.issue_token(c, user_id=staff.id, kind="api", lifetime=timedelta(1))
    out = fleet_cli("user", "deactivate", "anna")
    assert out.exit_code == 0, out.output
    assert "anna deactivated; signed out everywhere (1 token revoked)" in out.stdout
    with pytest.raises(NotAuthenticated):
        sign_in(committed, "anna", PASSWORD)
    assert as_json(fleet_cli("user", "activate", "anna", "--json")) == {
        "user": "anna",
        "active": True,
    }
    assert sign_in(committed, "anna", PASSWORD).id == staff.id
    # The token revoked with the deactivation stays revoked.
    with committed.begin() as c, pytest.raises(NotAuthenticated):
        auth.resolve_token(c, token=api.token)
    assert fleet_cli("user", "deactivate", "nobody").exit_code == 2


def test_passwd_too_short_keeps_the_old_password(fleet_cli, staff, committed):
    out = fleet_cli("user", "passwd", "anna", "--password-stdin", typed="short\n")
    assert out.exit_code == 2
    assert "error: password is too short" in out.stderr
    assert sign_in(committed, "anna", PASSWORD).id == staff.id


def test_token_prints_only_the_token_on_stdout_and_warns_it_is_shown_once(
    fleet_cli, staff, committed
):
    before = datetime.now(UTC)
    out = fleet_cli("user", "token", "anna", "--label", "night export")
    assert out.exit_code == 0, out.output
    raw = out.stdout.strip()
    assert "\n" not in raw and " " not in raw
    assert resolve(committed, raw).id == staff.id
    assert "shown only this once" in out.stderr
    with committed.connect() as c:
        row = c.execute(text("SELECT id, label, kind, expires_at FROM auth_tokens")).one()
        hashed = c.execute(
            text("SELECT count(*) FROM auth_tokens WHERE strpos(CAST(token_hash AS text), :r) > 0"),
            {"r": raw},
        ).scalar_one()
    assert hashed == 0
    assert f"API token #{row.id} for anna" in out.stderr
    assert (row.label, row.kind) == ("night export", "api")
    # FLEET_TOKEN_DAYS defaults to 90.
    assert abs(row.expires_at - (before + timedelta(days=90))) < timedelta(minutes=1)


def test_token_lifetime_comes_from_days_or_the_setting(fleet_cli, staff, monkeypatch):
    now = datetime.now(UTC)
    short = as_json(fleet_cli("user", "token", "anna", "--days", "0.5", "--json"))
    assert abs(datetime.fromisoformat(short["expires_at"]) - (now + timedelta(hours=12))) < (
        timedelta(minutes=1)
    )
    monkeypatch.setenv("FLEET_TOKEN_DAYS", "3")
    get_settings.cache_clear()
    configured = as_json(fleet_cli("user", "token", "anna", "--json"))
    assert abs(datetime.fromisoformat(configured["expires_at"]) - (now + timedelta(days=3))) < (
        timedelta(minutes=1)
    )
    assert configured["token"] != short["token"] and configured["user_id"] == staff.id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("system",), "user system cannot sign in"),
        (("nobody",), "unknown user 'nobody'"),
        (("anna", "--days", "0"), "token lifetime must be positive"),
    ],
)
def test_token_refusals_exit_2_and_issue_nothing(fleet_cli, staff, committed, args, message):
    with committed.begin() as c:
        fleet.system_user_id(c)
    out = fleet_cli("user", "token", *args)
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith(f"error: {message}")
    assert out.stdout == ""
    with committed.connect() as c:
        assert c.execute(text("SELECT count(*) FROM auth_tokens")).scalar_one() == 0


def test_list_shows_who_can_sign_in_and_their_live_tokens(fleet_cli, staff, committed):
    with committed.begin() as c:
        fleet.create_user(c, username="ben", full_name="Ben Booker", role="agent")
        fleet.system_user_id(c)
    kept = as_json(fleet_cli("user", "token", "anna", "--label", "ci", "--json"))
    gone = as_json(fleet_cli("user", "token", "anna", "--json"))
    assert fleet_cli("user", "revoke", gone["id"]).exit_code == 0

    out = fleet_cli("user", "list")
    assert out.exit_code == 0, out.output
    lines = {line.split()[1]: line for line in out.stdout.splitlines() if "│" in line}
    assert "BER1" in lines["anna"] and "password" in lines["anna"]
    assert "no password" not in lines["anna"]
    assert f"#{kept['id']} api 'ci'" in lines["anna"]
    assert f"#{gone['id']}" not in out.stdout
    assert "no password" in lines["ben"]
    assert "never" in lines["system"]

    listed = as_json(fleet_cli("user", "list", "--json"))
    by_name = {a["user"]["username"]: a for a in listed}
    assert list(by_name) == ["anna", "ben", "system"]
    assert [t["id"] for t in by_name["anna"]["tokens"]] == [kept["id"]]
    assert by_name["anna"]["has_password"] and not by_name["ben"]["has_password"]
    assert kept["token"] not in out.stdout + json.dumps(listed)
    assert "password_hash" not in json.dumps(listed)


def test_revoke_stops_a_token_at_once_and_unknown_ids_exit_2(fleet_cli, staff, committed):
    issued = as_json(fleet_cli("user", "token", "anna", "--json"))
    out = fleet_cli("user", "revoke", issued["id"])
    assert out.exit_code == 0, out.output
    assert f"token #{issued['id']} revoked" in out.stdout
    with pytest.raises(NotAuthenticated):
        resolve(committed, issued["token"])

    missing = fleet_cli("user", "revoke", issued["id"] + 100, "--json")
    assert missing.exit_code == 2
    assert json.loads(missing.stderr)["message"] == f"unknown token {issued['id'] + 100}"


def test_demo_logins_lists_one_sign_in_per_role(fleet_cli):
    out = fleet_cli("demo-logins")
    assert out.exit_code == 0, out.output
    for username, role, password in DEMO_LOGINS:
        row = next(line for line in out.stdout.splitlines() if f" {username} " in line)
        assert role in row and password in row
    listed = as_json(fleet_cli("demo-logins", "--json"))
    assert [(x["username"], x["role"], x["password"]) for x in listed] == list(DEMO_LOGINS)
    assert {x["role"] for x in listed} == {"agent", "manager", "analyst", "admin"}


def test_demo_data_creates_the_demo_logins(fleet_cli, committed):
    loaded = fleet_cli("demo-data", "--vehicles", 10, "--locations", 1, "--json")
    assert loaded.exit_code == 0, loaded.output
    for username, role, password in DEMO_LOGINS:
        assert sign_in(committed, username, password).role == role
