"""`fleet user`: staff accounts, their passwords and API tokens."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Connection

from db import auth, fleet
from db.errors import InvalidInput, NotFound
from fleet.cli import common
from fleet.cli.common import (
    JsonFlag,
    console,
    error_console,
    local,
    print_json,
    reporting,
    transaction,
)
from fleet.settings import get_settings

app = typer.Typer(help="Staff accounts: passwords and API tokens.", no_args_is_help=True)

# The users table checks the same rule; checking here first gives a message instead of a refusal.
USERNAME_RE = re.compile(r"^[a-z0-9_.-]{2,40}$")
STAFF_ROLES = tuple(r for r in fleet.ROLES if r != "system")

Username = Annotated[str, typer.Argument(help="The user's sign-in name.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin (for scripts)."
    ),
]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # Only the line end goes: spaces may be part of a password.
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@app.command()
def add(
    username: Username,
    full_name: Annotated[str, typer.Option("--name", help="Full name, as colleagues see it.")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(STAFF_ROLES)}.")],
    location: Annotated[str | None, typer.Option(help="Home location code.")] = None,
    password_stdin: PasswordStdin = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a staff user with a password; they can sign in at once."""
    with reporting(as_json=as_json):
        if not USERNAME_RE.match(username):
            raise InvalidInput(
                f"malformed username {username!r}",
                field="username",
                hint="2-40 lower-case letters, digits, '.', '_' or '-'",
            )
        if role not in STAFF_ROLES:
            raise InvalidInput(
                f"unknown role {role!r}", field="role", hint=f"one of {', '.join(STAFF_ROLES)}"
            )
    # Checked before asking for the password, so nobody types it twice for nothing.
    with transaction(as_json=as_json) as conn:
        _require_new(conn, username)
        if location:
            common.location(conn, location)
    password = _read_password(password_stdin)
    with transaction(as_json=as_json) as conn:
        _require_new(conn, username)
        home = common.location(conn, location) if location else None
        created = fleet.create_user(
            conn,
            username=username,
            full_name=full_name,
            role=role,
            home_location_id=home.id if home else None,
        )
        auth.set_password(conn, user_id=created.id, password=password)
    if as_json:
        print_json(created)
        return
    where = f" at {home.code}" if home else ""
    console().print(f"user {created.username} ({created.role}{where}) created; they can sign in")


def _require_new(conn: Connection, username: str) -> None:
    try:
        fleet.get_user(conn, username=username)
    except NotFound:
        return
    raise InvalidInput(
        f"user {username!r} exists already",
        field="username",
        hint=f"`fleet user passwd {username}` sets a new password",
    )


@app.command()
def passwd(
    username: Username, password_stdin: PasswordStdin = False, as_json: JsonFlag = False
) -> None:
    """Set a user's password; every session and token they hold ends (open pages within 5 s)."""
    with transaction(as_json=as_json) as conn:
        fleet.get_user(conn, username=username)
    password = _read_password(password_stdin)
    with transaction(as_json=as_json) as conn:
        staff = fleet.get_user(conn, username=username)
        revoked = auth.set_password(conn, user_id=staff.id, password=password)
    if as_json:
        print_json({"user": staff, "password_changed": True, "tokens_revoked": revoked})
        return
    console().print(
        f"password of {staff.username} changed;"
        f" signed out everywhere ({common.counted(revoked, 'token')} revoked)"
    )


@app.command()
def deactivate(username: Username, as_json: JsonFlag = False) -> None:
    """Stop a user signing in; their open pages, apps and streams end within 5 s."""
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        revoked = auth.set_active(conn, user_id=staff.id, active=False)
    if as_json:
        print_json({"user": staff.username, "active": False, "tokens_revoked": revoked})
        return
    console().print(
        f"{staff.username} deactivated;"
        f" signed out everywhere ({common.counted(revoked, 'token')} revoked)"
    )


@app.command()
def activate(username: Username, as_json: JsonFlag = False) -> None:
    """Let a deactivated user sign in again (with a new sign-in: old tokens stay revoked)."""
    with transaction(as_json=as_json) as conn:
        staff = fleet.get_user(conn, username=username)
        auth.set_active(conn, user_id=staff.id, active=True)
    if as_json:
        print_json({"user": staff.username, "active": True})
        return
    console().print(f"{staff.username} can sign in again")


@app.command()
def token(
    username: Username,
    label: Annotated[str, typer.Option(help="What the token is for, e.g. the script.")] = "",
    days: Annotated[
        float | None, typer.Option(help="Lifetime in days [default: FLEET_TOKEN_DAYS].")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue an API token for a user; it is printed once and stored only as a hash."""
    lifetime = timedelta(days=get_settings().token_days if days is None else days)
    with transaction(as_json=as_json) as conn:
        staff = common.user(conn, username)
        issued = auth.issue_token(
            conn, user_id=staff.id, kind="api", lifetime=lifetime, label=label
        )
    if as_json:
        print_json({"token": issued.token, **issued.info.model_dump()})
        return
    # The token alone on stdout, so `TOKEN=$(fleet user token ...)` captures just it.
    console().print(issued.token, soft_wrap=True)
    error_console().print(
        f"API token #{issued.info.id} for {staff.username},"
        f" valid until {local(issued.info.expires_at, 'UTC')}."
        " It is shown only this once: store it now (the database keeps only its hash).",
        soft_wrap=True,
    )


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """List the users, whether they can sign in, and their live tokens."""
    with transaction(as_json=as_json) as conn:
        accounts = auth.list_accounts(conn)
        lots = common.locations_by_id(conn)
    if as_json:
        print_json(accounts)
        return
    console().print(_table(accounts, lots))


def _table(accounts: list[auth.Account], lots: dict[int, fleet.Location]) -> Table:
    table = common.table(
        common.counted(len(accounts), "user"),
        ("user", "name", "role", "home", "sign-in", "live tokens"),
        wrap=("name", "live tokens"),
    )
    for a in accounts:
        u = a.user
        home = lots[u.home_location_id].code if u.home_location_id else "—"
        if not u.active:
            sign_in = "deactivated"
        elif u.role == "system":
            sign_in = "never"
        else:
            sign_in = "password" if a.has_password else "no password"
        tokens = ", ".join(
            f"#{t.id} {t.kind}" + (f" {t.label!r}" if t.label else "") for t in a.tokens
        )
        table.add_row(u.username, u.full_name, u.role, home, sign_in, tokens or "—")
    return table


@app.command()
def revoke(
    token_id: Annotated[int, typer.Argument(help="The token's number (`fleet user list`).")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token at once, whoever it belongs to."""
    with transaction(as_json=as_json) as conn:
        auth.revoke_token(conn, token_id=token_id)
    if as_json:
        print_json({"revoked": token_id})
        return
    console().print(f"token #{token_id} revoked")
