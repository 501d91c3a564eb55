"""What every command shares: the engine, one transaction per command, errors, rendering."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from psycopg.errors import UndefinedColumn, UndefinedFunction, UndefinedTable
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

from db import fleet, lookup
from db.database import make_engine, resolve_url, session_options
from db.errors import FleetError, InvalidInput, NotFound
from db.events import to_json
from db.timeutil import iso_duration, zone
from fleet.settings import get_settings

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")
]

EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_UNREACHABLE = 3

_engines: dict[str, Engine] = {}
_START_HINT = "start PostgreSQL, or set FLEET_DATABASE_URL to a server that is running"


class Unreachable(Exception):
    """The database cannot be reached, cannot be started, or has no schema yet."""

    def __init__(self, message: str, *, hint: str = _START_HINT) -> None:
        super().__init__(message)
        self.hint = hint


def console() -> Console:
    """Return a console on stdout; made per use so it sees the current terminal and stream."""
    # Markup off: customer names and reasons are data, and "[x]" in them must print as typed.
    return Console(highlight=False, markup=False, emoji=False)


def error_console() -> Console:
    """Return a console on stderr."""
    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def database_url() -> str:
    """Return the SQLAlchemy URL to use, starting the embedded server when none is configured."""
    settings = get_settings()
    try:
        return resolve_url(settings.database_url, settings.data_dir)
    except ValueError as exc:
        raise InvalidInput(
            str(exc), field="database_url", hint="set FLEET_DATABASE_URL=postgresql://user@host/db"
        ) from None
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise Unreachable(
            f"could not start the embedded PostgreSQL in {settings.data_dir}: {exc}"
        ) from None


def engine() -> Engine:
    """Return the process's engine for the configured database."""
    url = database_url()
    if url not in _engines:
        settings = get_settings()
        # A command that meets a lock says so within a minute instead of waiting silently.
        options = session_options(
            lock_timeout_s=settings.db_lock_timeout_seconds,
            idle_in_transaction_s=settings.db_idle_in_transaction_seconds,
        )
        _engines[url] = make_engine(url, options=options)
    return _engines[url]


def shown_url(url: str | URL) -> str:
    """Return the URL with its password masked, fit to print."""
    return make_url(url).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _fail(body: dict[str, Any], *, as_json: bool, code: int) -> typer.Exit:
    if as_json:
        print(to_json(body), file=sys.stderr)
    else:
        err = error_console()
        err.print(f"error: {body['message']}", soft_wrap=True)
        if body.get("hint"):
            err.print(f"hint: {body['hint']}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def reporting(*, as_json: bool = False) -> Iterator[None]:
    """Turn engine errors into a message, a hint and an exit code instead of a traceback."""
    try:
        yield
    except FleetError as err:
        raise _fail(err.as_dict(), as_json=as_json, code=EXIT_INPUT) from None
    except (IntegrityError, DataError) as exc:
        # A rule only the schema checks is still the input's fault, not a crash.
        body = {
            "error": "rejected",
            "message": f"the database refused the change: {_first_line(exc.orig)}",
            "hint": "nothing was written; check the values given",
        }
        raise _fail(body, as_json=as_json, code=EXIT_INPUT) from None
    except OperationalError as exc:
        body = {
            "error": "unreachable",
            "message": f"cannot reach the database: {_first_line(exc.orig)}",
            "hint": _START_HINT,
        }
        raise _fail(body, as_json=as_json, code=EXIT_UNREACHABLE) from None
    except Unreachable as exc:
        body = {"error": "unreachable", "message": str(exc), "hint": exc.hint}
        raise _fail(body, as_json=as_json, code=EXIT_UNREACHABLE) from None


@contextmanager
def transaction(*, as_json: bool = False) -> Iterator[Connection]:
    """Run a command in one transaction: committed when it succeeds, rolled back on any error."""
    with reporting(as_json=as_json):
        eng = engine()
        where = shown_url(eng.url)
        try:
            with eng.begin() as conn:
                yield conn
        except ProgrammingError as exc:
            if isinstance(exc.orig, UndefinedTable):
                raise Unreachable(
                    f"the database at {where} has no fleet schema ({_first_line(exc.orig)})",
                    hint="run `fleet db upgrade` first",
                ) from None
            if isinstance(exc.orig, UndefinedColumn | UndefinedFunction):
                # The schema predates this code: a missed migration, never the user's input.
                raise Unreachable(
                    f"the database at {where} has an older fleet schema ({_first_line(exc.orig)})",
                    hint="run `fleet db upgrade`; `fleet db current` shows the revision",
                ) from None
            raise
        except OperationalError as exc:
            state = getattr(exc.orig, "sqlstate", None)
            if state is None or state.startswith(("08", "57P")):
                raise Unreachable(
                    f"cannot reach the database at {where}: {_first_line(exc.orig)}"
                ) from None
            # A lock timeout, cancellation or serialization failure: nothing was written.
            body = {
                "error": "aborted",
                "message": f"the database could not finish the command: {_first_line(exc.orig)}",
                "hint": "nothing was written; try again",
            }
            raise _fail(body, as_json=as_json, code=EXIT_FAILED) from None


def parse_time(value: str, option: str) -> datetime:
    """Parse an ISO 8601 date and time that carries its UTC offset."""
    example = "for example 2026-12-01T10:00+01:00, or 2026-12-01T09:00Z for UTC"
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} is not an ISO 8601 date and time: {value!r}", field=option, hint=example
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        # A bare wall-clock time is ambiguous across lots in different zones (and at DST).
        raise InvalidInput(
            f"{option} {value!r} has no UTC offset", field=option, hint=f"add one: {example}"
        )
    return parsed


def user(conn: Connection, username: str) -> fleet.User:
    """Return the staff user with this username."""
    found = fleet.get_user(conn, username=username)
    if not found.active:
        raise InvalidInput(f"user {username!r} is deactivated", field="user")
    return found


def location(conn: Connection, code: str) -> fleet.Location:
    """Return the location with this code."""
    return fleet.get_location(conn, code=code)


def category(conn: Connection, code: str) -> fleet.Category:
    """Return the category with this code."""
    return fleet.get_category(conn, code=code)


def vehicle(conn: Connection, plate: str) -> fleet.Vehicle:
    """Return the vehicle with exactly this plate; on a miss, name the plates that come close."""
    try:
        return fleet.get_vehicle(conn, plate=plate)
    except NotFound:
        close = lookup.find_by_plate(conn, query=plate, limit=5)
        hint = (
            f"did you mean {', '.join(m.plate for m in close)}?"
            if close
            else "`fleet status PART-OF-PLATE` finds a vehicle from part of its plate"
        )
        raise NotFound(f"no vehicle with plate {plate!r}", field="plate", hint=hint) from None


def locations_by_id(conn: Connection) -> dict[int, fleet.Location]:
    """Return every location keyed by id, to render times in each lot's zone."""
    return {loc.id: loc for loc in fleet.list_locations(conn)}


def local(value: datetime | None, tz: str | None) -> str:
    """Render an instant as wall-clock time in a location's zone, with the zone's abbreviation."""
    if value is None:
        return "—"
    return value.astimezone(zone(tz or "UTC")).strftime("%Y-%m-%d %H:%M %Z")


def duration(value: timedelta | None) -> str:
    """Render a span as staff say it: 1 d 3 h, 2 h 15 min."""
    if value is None:
        return "—"
    days, rest = divmod(int(value.total_seconds() // 60), 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if minutes or not parts:
        parts.append(f"{minutes} min")
    return " ".join(parts)


def plain(value: Any) -> Any:
    """Turn engine results (models, dataclasses, lists of them) into plain data."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, timedelta):
        # The form the API sends (db.timeutil.Duration), not to_json's bare seconds.
        return iso_duration(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def table(
    title: str | None,
    columns: Iterable[str],
    *,
    wrap: Iterable[str] = (),
    right: Iterable[str] = (),
) -> Table:
    """Make a table whose plates, times and numbers never wrap; only the `wrap` columns do."""
    wrap, right = set(wrap), set(right)
    out = Table(title=title)
    for name in columns:
        out.add_column(name, no_wrap=name not in wrap, justify="right" if name in right else "left")
    return out


def counted(n: int, noun: str) -> str:
    """Say how many: 1 hold, 2 holds."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def print_json(data: Any) -> None:
    """Print engine results as one JSON document on stdout."""
    print(to_json(plain(data)))


def progress_bar(as_json: bool) -> tuple[Progress, Callable[[str, int, int], None]]:
    """A bar per stage on stderr, and the (stage, done, total) callback that drives it.

    The bar goes to stderr so --json output on stdout stays one clean document.
    """
    bar = Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=error_console(),
        transient=as_json,
    )
    stages: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in stages:
            stages[stage] = bar.add_task(stage, total=total)
        bar.update(stages[stage], completed=done, total=total)

    return bar, progress
