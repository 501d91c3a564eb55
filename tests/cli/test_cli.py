"""The `fleet` command line against the real test database, with real commits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from db import rentals
from db.events import CHANNEL
from fleet.cli import board
from fleet.cli.main import app
from fleet.settings import get_settings
from tests.conftest import World, add_vehicle, build_world

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def fleet_cli(monkeypatch: pytest.MonkeyPatch, database_url: str, committed: Engine):
    """Invoke `fleet ...` on the test database; whatever it commits is truncated afterwards."""
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that rich never folds a plate
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    yield invoke
    get_settings.cache_clear()


@dataclass
class Lot:
    """The committed fleet the CLI tests work on."""

    world: World
    late_rental_id: int
    threatened_id: int

    def iso(self, hours: float) -> str:
        """Return a time `hours` from now as Berlin wall-clock time with its offset."""
        return self.world.at(hours).astimezone(BERLIN).isoformat(timespec="minutes")


@pytest.fixture
def lot(committed: Engine) -> Lot:
    """Four cars; B AB 1235 is out with Alice, 2 h 50 min late, and Bob's booking on it is next."""
    with committed.begin() as c:
        w = build_world(c)
        add_vehicle(c, w, "B AB 1234", features=("gps",))
        late = add_vehicle(c, w, "B AB 1235")
        add_vehicle(c, w, "B CD 500", category=w.suv, features=("awd",))
        add_vehicle(c, w, "M XY 77", location=w.muc)
        clock = datetime.now(UTC)
        threatened = rentals.reserve(
            c,
            vehicle_id=late.id,
            start=w.at(1),
            end=w.at(6),
            pickup_location_id=w.ber.id,
            customer_id=w.bob.id,
            booked_by=w.agent.id,
        )
        rental = rentals.reserve(
            c,
            vehicle_id=late.id,
            start=clock - timedelta(hours=8),
            end=clock - timedelta(hours=2, minutes=50),
            pickup_location_id=w.ber.id,
            customer_id=w.alice.id,
            booked_by=w.agent.id,
        )
        rentals.pick_up(
            c, block_id=rental.id, handed_over_by=w.agent.id, at=clock - timedelta(hours=8)
        )
    return Lot(w, rental.id, threatened.id)


def written(engine: Engine) -> tuple[int, int, int]:
    """Count what a command could have written: blocks, status changes, events."""
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT (SELECT count(*) FROM blocks), (SELECT count(*) FROM vehicle_status_log),"
                " (SELECT count(*) FROM availability_events)"
            )
        ).one()


def as_json(result: Result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_demo_data_loads_a_fleet_once_and_if_empty_leaves_it(fleet_cli, committed):
    loaded = as_json(
        fleet_cli("demo-data", "--vehicles", 30, "--locations", 2, "--seed", 3, "--json")
    )
    assert loaded["loaded"] is True and loaded["vehicles"] == 30

    again = fleet_cli("demo-data", "--vehicles", 30, "--locations", 2, "--seed", 3, "--if-empty")
    assert again.exit_code == 0
    assert "has vehicles already" in again.stdout

    refused = fleet_cli("demo-data", "--vehicles", 30, "--locations", 2, "--seed", 3)
    assert refused.exit_code == 2
    assert "error: database already has vehicles" in refused.stderr
    with committed.connect() as c:
        assert c.execute(text("SELECT count(*) FROM vehicles")).scalar_one() == 30

    board_ = as_json(fleet_cli("status", "--json"))
    assert 0 < len(board_["vehicles"]) <= 30
    assert sum(c["vehicles"] for c in board_["counts"]) == len(board_["vehicles"])


def test_status_board_lists_fleet_overdue_first_with_counts(fleet_cli, lot):
    out = fleet_cli("status")
    assert out.exit_code == 0, out.output
    for plate in ("B AB 1234", "B AB 1235", "B CD 500", "M XY 77"):
        assert plate in out.stdout
    assert out.stdout.index("B AB 1235") < out.stdout.index("B AB 1234")
    assert "OVERDUE" in out.stdout

    data = as_json(fleet_cli("status", "--location", "ber1", "--json"))
    assert [v["plate"] for v in data["vehicles"]] == ["B AB 1235", "B AB 1234", "B CD 500"]
    assert {(c["location"], c["status"], c["vehicles"]) for c in data["counts"]} == {
        ("BER1", "available", 2),
        ("BER1", "overdue", 1),
    }


def test_status_of_a_partial_plate_shows_the_customer_and_overdue_flag(fleet_cli, lot):
    out = fleet_cli("status", "ab1235")
    assert out.exit_code == 0, out.output
    for fact in ("B AB 1235", "Alice Schmidt", "+49 30 1234567", "alice@example.com", "OVERDUE"):
        assert fact in out.stdout
    assert "Anna Agent" in out.stdout  # who last changed it

    vehicle = as_json(fleet_cli("status", "CD5", "--json"))["vehicle"]
    assert vehicle["plate"] == "B CD 500"
    assert vehicle["whereabouts"] == "on lot BER1"

    several = as_json(fleet_cli("status", "AB 123", "--json"))
    assert {m["plate"] for m in several["matches"]} == {"B AB 1234", "B AB 1235"}


def test_search_json_returns_the_free_cars_and_saves_the_criteria(fleet_cli, lot):
    found = as_json(
        fleet_cli(
            "search", "--from", lot.iso(24), "--to", lot.iso(48), "--location", "BER1",
            "--category", "ECON", "--json", "--save", "weekend", "--user", "anna",
        )
    )  # fmt: skip
    # The overdue car is never promised; the Munich car is not on this lot.
    assert [h["plate"] for h in found["results"]] == ["B AB 1234"]
    assert found["alternatives"] is None

    with_gps = as_json(
        fleet_cli("search", "--from", lot.iso(24), "--to", lot.iso(48), "--location", "BER1",
                  "--feature", "gps", "--feature", "awd", "--json")
    )  # fmt: skip
    assert with_gps["results"] == []

    saved = as_json(fleet_cli("searches", "--user", "anna", "--json"))
    assert [s["name"] for s in saved] == ["weekend"]
    assert saved[0]["criteria"]["location"] == "BER1"
    assert saved[0]["criteria"]["category"] == "ECON"
    assert saved[0]["criteria"]["duration_hours"] == 24


def test_search_with_nothing_free_offers_a_transfer_from_another_lot(fleet_cli, lot):
    args = ("search", "--from", lot.iso(24), "--to", lot.iso(30), "--location", "MUC1")
    found = as_json(fleet_cli(*args, "--category", "SUV", "--json"))
    assert found["results"] == []
    transfer = found["alternatives"]["other_locations"][0]
    assert (transfer["location_code"], transfer["vehicle"]["plate"]) == ("BER1", "B CD 500")

    shown = fleet_cli(*args, "--category", "SUV")
    assert "nothing free at MUC1" in shown.stdout
    assert "B CD 500" in shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "--from", "+30", "--to", "+20", "--location", "BER1"), "ends before it starts"),
        (("search", "--from", "2026-12-01T10:00", "--to", "+20", "--location", "BER1"),
         "--from '2026-12-01T10:00' has no UTC offset"),
        (("search", "--from", "+20", "--to", "+30", "--location", "BER1", "--category", "XXL"),
         "unknown category 'XXL'"),
        (("hold", "place", "B AB 1234", "--from", "+20", "--to", "+30", "--location", "NOPE",
          "--user", "anna"), "unknown location 'NOPE'"),
        (("hold", "place", "B AB 1234", "--from", "+20", "--to", "+30", "--location", "BER1",
          "--user", "nobody"), "unknown user 'nobody'"),
        (("status", "B@D!"), "malformed plate search 'B@D!'"),
        (("set-status", "B#1", "maintenance", "--reason", "x", "--user", "anna"),
         "malformed plate 'B#1'"),
        (("set-status", "B AB 1234", "flying", "--reason", "x", "--user", "anna"),
         "unknown status 'flying'"),
        (("set-status", "B AB 1234", "maintenance", "--reason", "x", "--user", "anna",
          "--until", "tomorrow"), "--until is not an ISO 8601 date and time"),
        (("hold", "place", "B AB 1235", "--from", "+20", "--to", "+30", "--location", "BER1",
          "--user", "anna"), "B AB 1235 is not back yet"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(
    fleet_cli, lot, committed, args, message
):
    args = [lot.iso(float(a)) if a.startswith("+") else a for a in args]
    before = written(committed)
    out = fleet_cli(*args)
    assert out.exit_code == 2, out.output
    assert message in out.stderr
    assert out.stderr.startswith("error: ")
    assert "Traceback" not in out.output
    assert written(committed) == before


def test_errors_as_json_carry_code_hint_and_field(fleet_cli, lot):
    out = fleet_cli("search", "--from", lot.iso(5), "--to", lot.iso(1), "--location", "ber1",
                    "--json")  # fmt: skip
    assert out.exit_code == 2
    err = json.loads(out.stderr)
    assert (err["error"], err["field"]) == ("invalid_input", "end")
    assert err["hint"] == "the end must be after the start"


def test_unreachable_database_exits_3_without_a_traceback(fleet_cli, monkeypatch):
    monkeypatch.setenv("FLEET_DATABASE_URL", "postgresql://fleet:secret@127.0.0.1:9/fleet")
    get_settings.cache_clear()
    out = fleet_cli("status")
    assert out.exit_code == 3
    assert "error: cannot reach the database at" in out.stderr
    assert "secret" not in out.output


def test_hold_place_convert_and_release(fleet_cli, lot, committed):
    place = ("hold", "place", "B AB 1234", "--from", lot.iso(24), "--to", lot.iso(48),
             "--location", "BER1", "--user", "anna")  # fmt: skip
    hold = as_json(fleet_cli(*place, "--minutes", 5, "--json"))
    assert (hold["kind"], hold["state"], hold["plate"]) == ("hold", "active", "B AB 1234")

    clash = fleet_cli(*place[:-1], "ben")
    assert clash.exit_code == 2
    assert f"hold #{hold['id']}" in clash.stderr

    listed = fleet_cli("hold", "list")
    assert f"#{hold['id']}" in listed.stdout and "B AB 1234" in listed.stdout

    converted = fleet_cli("hold", "convert", hold["id"], "--customer", lot.world.alice.id,
                          "--user", "anna")  # fmt: skip
    assert converted.exit_code == 0, converted.output
    assert f"reservation #{hold['id']} for Alice Schmidt on B AB 1234" in converted.stdout
    assert as_json(fleet_cli("hold", "list", "--json")) == []

    twice = fleet_cli("hold", "release", hold["id"], "--user", "anna")
    assert twice.exit_code == 2
    assert f"hold #{hold['id']} is already booked: reservation #{hold['id']}" in twice.stderr

    other = as_json(
        fleet_cli("hold", "place", "B CD 500", "--from", lot.iso(24), "--to", lot.iso(48),
                  "--location", "BER1", "--user", "ben", "--json")
    )  # fmt: skip
    released = as_json(fleet_cli("hold", "release", other["id"], "--user", "ben", "--json"))
    assert released["state"] == "cancelled"

    unknown = fleet_cli("hold", "convert", other["id"] + 100, "--customer", 999999, "--user", "ben")
    assert unknown.exit_code == 2
    assert "unknown customer 999999" in unknown.stderr


def test_set_status_then_rollback_both_show_in_history(fleet_cli, lot):
    change = as_json(
        fleet_cli("set-status", "b cd 500", "maintenance", "--reason", "brake check",
                  "--user", "maria", "--until", lot.iso(5), "--expected-version", 1, "--json")
    )  # fmt: skip
    assert change["status"]["status"] == "maintenance"
    assert change["status"]["version"] == 2

    stale = fleet_cli("set-status", "B CD 500", "available", "--reason", "done", "--user", "anna",
                      "--expected-version", 1)  # fmt: skip
    assert stale.exit_code == 2
    assert "changed since you loaded it" in stale.stderr

    undone = fleet_cli("rollback", change["log_id"], "--user", "maria", "--reason", "wrong car")
    assert undone.exit_code == 0, undone.output
    assert "B CD 500 is available again" in undone.stdout

    entries = as_json(fleet_cli("history", "B CD 500", "--json"))
    assert [e["new_status"] for e in entries] == ["available", "maintenance", "available"]
    assert entries[0]["reverts_log_id"] == change["log_id"]
    assert entries[1]["reverted_by_log_id"] == entries[0]["id"]
    assert entries[1]["changed_by_name"] == "Maria Manager"

    by_maria = fleet_cli("history", "--user", "maria", "--days", 1)
    assert "brake check" in by_maria.stdout and "rollback of" in by_maria.stdout

    again = fleet_cli("rollback", change["log_id"], "--user", "maria", "--reason", "again")
    assert again.exit_code == 2
    assert "already rolled back" in again.stderr


def test_overdue_names_customer_fee_and_threatened_booking(fleet_cli, lot):
    late = as_json(fleet_cli("overdue", "--json"))
    assert len(late) == 1
    assert late[0]["block_id"] == lot.late_rental_id
    assert late[0]["customer_phone"] == "+49 30 1234567"
    assert late[0]["escalation_level"] == 2  # past the 2 h threshold
    assert late[0]["next_block_id"] == lot.threatened_id
    # ECON: 3 started hours at 12 an hour, the 30 min grace used up.
    assert late[0]["estimated_late_fee"] == "36.00"

    shown = fleet_cli("overdue", "--location", "BER1")
    for fact in ("B AB 1235", "Alice Schmidt", "alice@example.com", "36.00",
                 f"#{lot.threatened_id}"):  # fmt: skip
        assert fact in shown.stdout
    assert as_json(fleet_cli("overdue", "--location", "MUC1", "--json")) == []

    summary = as_json(fleet_cli("overdue", "refresh", "--json"))
    assert (summary["open"], summary["new"]) == (1, 1)


def test_conflicts_suggest_swapping_to_a_free_car(fleet_cli, lot):
    found = as_json(fleet_cli("conflicts", "--hours", 12, "--json"))
    assert [(c["block_id"], c["kind"]) for c in found] == [(lot.threatened_id, "overdue_return")]
    swaps = [s["plate"] for s in found[0]["suggestions"] if s["action"] == "swap"]
    assert swaps == ["B AB 1234"]

    shown = fleet_cli("conflicts", "--location", "BER1")
    assert "Bob Meyer" in shown.stdout
    assert "move the booking to B AB 1234" in shown.stdout


def test_find_customer_shows_current_rental_and_booking(fleet_cli, lot):
    found = as_json(fleet_cli("find-customer", "schmidt", "--json"))
    assert [(m["kind"], m["plate"]) for m in found] == [("rental", "B AB 1235")]
    shown = fleet_cli("find-customer", "Bob")
    assert f"reservation #{lot.threatened_id}" in shown.stdout


def test_board_once_draws_counts_and_vehicles(fleet_cli, lot):
    out = fleet_cli("board", "--once", "--location", "BER1")
    assert out.exit_code == 0, out.output
    assert "vehicles per location and status" in out.stdout
    assert out.stdout.index("B AB 1235") < out.stdout.index("B AB 1234")
    assert "M XY 77" not in out.stdout


def test_board_wakes_on_a_committed_change(database_url, committed):
    listener = board.listen(board.libpq_url(database_url))
    assert listener is not None
    try:
        with committed.begin() as c:
            c.execute(text("SELECT pg_notify(:ch, '1')"), {"ch": CHANNEL})
        started = datetime.now(UTC)
        assert board.wait_for_change(listener, timeout=10)
        assert datetime.now(UTC) - started < timedelta(seconds=5)
    finally:
        listener.close()
    assert not board.wait_for_change(listener, timeout=1)  # a dropped connection says so


def test_db_commands_report_revision_and_url(fleet_cli, lot, database_url):
    current = as_json(fleet_cli("db", "current", "--json"))
    assert current["up_to_date"] is True
    upgrade = fleet_cli("db", "upgrade")
    assert upgrade.exit_code == 0 and "already at" in upgrade.stdout
    shown = fleet_cli("db", "url")
    assert make_url(database_url).database in shown.stdout


def test_conflicts_refresh_announces_each_conflict_once(fleet_cli, lot):
    first = fleet_cli("conflicts", "--hours", 12, "--refresh")
    assert "refreshed: 1 new" in first.stderr
    second = fleet_cli("conflicts", "--hours", 12, "--refresh")
    assert "refreshed: 0 new" in second.stderr
