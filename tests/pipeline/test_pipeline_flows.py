"""The pipeline end to end under Prefect's test harness: feeds in, fleet changed, alerts out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from pipeline import flows
from tests.conftest import add_vehicle, build_world
from tests.db.factories import rental_under_way
from tests.pipeline.sinks import SmtpSink, WebhookSink

HEADER = (
    "external_id,version,updated_at,event,plate,customer_name,customer_phone,customer_email,"
    "pickup_location,return_location,pickup_at,return_at\n"
)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="minutes")


def _contract(eid: str, version: int, event: str, plate: str, start, end) -> str:
    updated = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=version)
    return (
        f"{eid},{version},{_iso(updated)},{event},{plate},Alice Schmidt,+49 30 1,"
        f"alice@example.com,BER1,BER1,{_iso(start)},{_iso(end)}\n"
    )


@pytest.fixture
def inbox(fleet_env, tmp_path: Path) -> Path:
    # fleet_env points FLEET_DATA_DIR at tmp_path; the inbox is its default place.
    path = tmp_path / "inbox"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def cars(committed: Engine):
    with committed.begin() as c:
        world = build_world(c)
        fleet = [add_vehicle(c, world, f"B PF {i}") for i in range(1, 6)]
    return world, fleet


def _status(engine: Engine, vehicle_id: int):
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT s.current_status, s.expected_available_at, l.code AS location,"
                " d.code AS destination FROM vehicle_status_realtime s"
                " LEFT JOIN locations l ON l.id = s.location_id"
                " LEFT JOIN locations d ON d.id = s.destination_location_id"
                " WHERE s.vehicle_id = :v"
            ),
            {"v": vehicle_id},
        ).one()


def test_ingest_flow_loads_once_quarantines_and_keeps_the_newest_version(
    harness, inbox, cars, committed
):
    _, fleet = cars
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    rows = []
    for i in range(20):
        start = base + timedelta(days=3 * (i // 5))
        rows.append(
            _contract(f"K-{i}", 2, "modified", fleet[i % 5].plate, start, start + timedelta(days=1))
        )
    rows[4] = rows[4].replace(fleet[4].plate, "NO SUCH")  # 10% bad rows
    rows[9] = rows[9].replace("+00:00", "", 1)  # a time without offset
    data = (HEADER + "".join(rows)).encode()
    (inbox / "contracts-001.csv").write_bytes(data)
    (inbox / "contracts-001-copy.csv").write_bytes(data)  # the same file delivered twice
    # An older version of K-0 arrives later: it must not roll the contract back.
    old = _contract("K-0", 1, "created", fleet[0].plate, base, base + timedelta(days=5))
    (inbox / "contracts-002.csv").write_bytes((HEADER + old).encode())

    summary = flows.ingest_feeds_flow()

    by_name = {Path(f.name).name: f for f in summary.files}
    assert by_name["contracts-001-copy.csv"].status == "loaded"
    assert by_name["contracts-001.csv"].status == "duplicate"
    loaded = by_name["contracts-001-copy.csv"]
    assert (loaded.rows, loaded.applied, loaded.rejected) == (20, 18, 2)
    assert (by_name["contracts-002.csv"].applied, by_name["contracts-002.csv"].stale) == (0, 1)
    with committed.connect() as c:
        k0 = c.execute(
            text(
                "SELECT upper(b.period) FROM contracts k JOIN blocks b ON b.id = k.block_id"
                " WHERE k.external_id = 'K-0'"
            )
        ).scalar_one()
        rejects = c.execute(text("SELECT line, reason FROM feed_rejects ORDER BY line")).all()
    assert k0 == base + timedelta(days=1)
    assert [r.line for r in rejects] == [6, 11]
    # Local inbox files move out of the way once done.
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == []
    assert len(list((inbox / "processed").rglob("*.csv"))) == 3
    # Nothing left: the next scheduled run is a no-op.
    assert flows.ingest_feeds_flow().files == []


def test_a_contract_modified_into_a_collision_becomes_an_alert_with_suggestions(
    harness, inbox, cars, committed
):
    _, fleet = cars
    plate = fleet[0].plate
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    (inbox / "contracts-a.csv").write_text(
        HEADER
        + _contract("M-1", 1, "created", plate, base, base + timedelta(days=1))
        + _contract("M-2", 1, "created", plate, base + timedelta(days=2), base + timedelta(days=3))
    )
    flows.ingest_feeds_flow()
    (inbox / "contracts-b.csv").write_text(
        HEADER + _contract("M-1", 2, "extended", plate, base, base + timedelta(days=2, hours=12))
    )
    summary = flows.ingest_feeds_flow()
    assert summary.files[0].conflicted == 1
    with committed.connect() as c:
        alert = c.execute(
            text("SELECT kind, details FROM conflict_alerts WHERE cleared_at IS NULL")
        ).one()
    assert alert.kind == "feed_collision:M-1"
    assert {s["action"] for s in alert.details["suggestions"]} >= {"swap"}


def test_a_return_turns_the_car_to_cleaning_then_available(harness, inbox, committed):
    with committed.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, "B RT 1")
        rental_under_way(c, world, car, start=world.at(-30), end=world.at(2))
    # Returned 40 minutes ago; economy cars need 30 minutes of prep.
    returned = datetime.now(UTC) - timedelta(minutes=40)
    (inbox / "returns-1.ndjson").write_text(
        json.dumps(
            {
                "external_id": "R-1",
                "returned_at": _iso(returned),
                "plate": "B RT 1",
                "location": "MUC1",
                "odometer_km": 12345,
                "fuel_percent": 75,
                "damage_notes": "scratch on rear bumper",
            }
        )
        + "\n"
    )
    summary = flows.ingest_feeds_flow()
    assert summary.files[0].applied == 1
    state = _status(committed, car.id)
    assert (state.current_status, state.location) == ("cleaning", "MUC1")
    assert state.expected_available_at == returned.replace(second=0, microsecond=0) + timedelta(
        minutes=30
    )
    refreshed = flows.refresh_overdue_flow()
    assert refreshed.prepared == 1
    assert _status(committed, car.id).current_status == "available"
    with committed.connect() as c:
        log = c.execute(
            text(
                "SELECT l.new_status, l.source, u.username, l.change_reason"
                " FROM vehicle_status_log l JOIN users u ON u.id = l.changed_by"
                " WHERE l.vehicle_id = :v ORDER BY l.id DESC LIMIT 2"
            ),
            {"v": car.id},
        ).all()
        odometer = c.execute(
            text("SELECT odometer_km FROM vehicles WHERE id = :v"), {"v": car.id}
        ).scalar_one()
    assert [(r.new_status, r.source, r.username) for r in log] == [
        ("available", "system", "system"),
        ("cleaning", "feed", "feed-returns"),
    ]
    assert "scratch on rear bumper" in log[1].change_reason
    assert odometer == 12345
    # The same return again (another file, same record) changes nothing.
    (inbox / "returns-2.ndjson").write_text(
        json.dumps(
            {
                "external_id": "R-1",
                "returned_at": _iso(returned),
                "plate": "B RT 1",
                "location": "MUC1",
            }
        )
        + "\n"
    )
    again = flows.ingest_feeds_flow()
    assert (again.files[0].applied, again.files[0].stale) == (0, 1)


def test_maintenance_and_transfer_feeds_block_and_move_the_car(harness, inbox, cars, committed):
    _, fleet = cars
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    (inbox / "maintenance-1.csv").write_text(
        "external_id,version,updated_at,event,plate,location,starts_at,ends_at,description\n"
        f"W-1,1,{_iso(now)},scheduled,{fleet[0].plate},BER1,{_iso(now + timedelta(days=1))},"
        f"{_iso(now + timedelta(days=1, hours=4))},brakes\n"
        f"W-2,1,{_iso(now)},started,{fleet[1].plate},BER1,{_iso(now - timedelta(minutes=5))},"
        f"{_iso(now + timedelta(hours=3))},tyres\n"
    )
    (inbox / "transfers-1.csv").write_text(
        "external_id,version,updated_at,event,plate,from_location,to_location,departed_at,eta,"
        "arrived_at\n"
        f"T-1,1,{_iso(now)},dispatched,{fleet[2].plate},BER1,MUC1,"
        f"{_iso(now - timedelta(minutes=10))},"
        f"{_iso(now + timedelta(hours=5))},\n"
    )
    summary = flows.ingest_feeds_flow()
    assert sum(f.applied for f in summary.files) == 3
    assert _status(committed, fleet[1].id).current_status == "maintenance"
    moving = _status(committed, fleet[2].id)
    assert (moving.current_status, moving.destination) == ("in_transit", "MUC1")
    assert moving.expected_available_at == now + timedelta(hours=5)
    with committed.connect() as c:
        planned = c.execute(
            text(
                "SELECT kind, lower(period) FROM blocks"
                " WHERE reference = 'W-1' AND state = 'active'"
            )
        ).one()
    assert planned == ("maintenance", now + timedelta(days=1))
    (inbox / "transfers-2.csv").write_text(
        "external_id,version,updated_at,event,plate,from_location,to_location,departed_at,eta,"
        "arrived_at\n"
        f"T-1,2,{_iso(now + timedelta(minutes=1))},arrived,{fleet[2].plate},BER1,MUC1,"
        f"{_iso(now - timedelta(minutes=10))},{_iso(now + timedelta(hours=5))},{_iso(now)}\n"
    )
    flows.ingest_feeds_flow()
    arrived = _status(committed, fleet[2].id)
    assert (arrived.current_status, arrived.location) == ("available", "MUC1")


def test_an_overdue_escalation_sends_exactly_one_notification(
    harness, fleet_env, committed, monkeypatch
):
    with committed.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, "B OD 1")
        rental_under_way(c, world, car, start=world.at(-26), end=world.at(-2))
    smtp = SmtpSink().start()
    hook = WebhookSink().start()
    try:
        monkeypatch.setenv("FLEET_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("FLEET_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("FLEET_NOTIFY_EMAIL_TO", '["desk@example.com"]')
        monkeypatch.setenv("FLEET_NOTIFY_WEBHOOK_URLS", json.dumps([hook.url]))
        for _ in range(2):  # two scheduled rounds: the second finds nothing new to send
            flows.refresh_overdue_flow()
            flows.deliver_notifications_flow()
    finally:
        smtp.stop()
        hook.stop()
    assert len(smtp.messages) == 1
    assert "B OD 1" in smtp.messages[0].message["Subject"]
    assert smtp.messages[0].rcpt_tos == ["desk@example.com"]
    assert len(hook.requests) == 1
    assert "B OD 1" in json.dumps(hook.requests[0].json())
