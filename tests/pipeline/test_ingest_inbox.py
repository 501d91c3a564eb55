"""One bad file never stops the others: rows PostgreSQL cannot hold, files set aside, odd dates."""

from __future__ import annotations

import codecs
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from db import feeds
from fleet.settings import Settings
from pipeline import flows, ingest
from pipeline.ingest import INGEST_LOCK, ingest_file, ingest_inbox
from tests.conftest import add_vehicle, build_world

HEADER = (
    "external_id,version,updated_at,event,plate,customer_name,customer_phone,customer_email,"
    "pickup_location,return_location,pickup_at,return_at\n"
)
MAINT = "external_id,version,updated_at,event,plate,location,starts_at,ends_at\n"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="minutes")


@pytest.fixture
def lot(committed: Engine):
    with committed.begin() as c:
        world = build_world(c)
        cars = [add_vehicle(c, world, f"B NB {i}") for i in range(1, 5)]
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    return committed, cars, base


def _contract(eid: str, plate: str, start: datetime, *, who: str = "Alice Schmidt", end=None):
    end = end or _iso(start + timedelta(days=1))
    return (
        f"{eid},1,{_iso(datetime.now(UTC) - timedelta(days=1))},created,{plate},{who},,,"
        f"BER1,BER1,{_iso(start)},{end}\n"
    )


def _job(eid: str, plate: str, start: datetime) -> str:
    end = start + timedelta(hours=4)
    updated = _iso(start - timedelta(days=1))
    return f"{eid},1,{updated},scheduled,{plate},BER1,{_iso(start)},{_iso(end)}\n"


def _rejects(engine: Engine, file_id: int) -> list[tuple[int, str]]:
    with engine.connect() as c:
        return [(r.line, r.reason) for r in feeds.list_rejects(c, file_id=file_id)]


def _references(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return list(c.execute(text("SELECT reference FROM blocks ORDER BY reference")).scalars())


# --- NUL bytes anywhere ------------------------------------------------------------------------


def test_nul_bytes_in_good_and_bad_rows_are_quarantined_and_the_rest_loads(lot):
    engine, cars, base = lot
    rows = [
        _contract("N-1", cars[0].plate, base),
        _contract("N-2", cars[1].plate, base, who="Alice\x00Schmidt"),  # a good row but for NUL
        _contract("N-3", "NO\x00SUCH", base),  # a bad row with a NUL too
        _contract("N-4", cars[2].plate, base),
    ]
    result = ingest_file(engine, name="contracts-nul.csv", data=(HEADER + "".join(rows)).encode())
    assert (result.status, result.rows, result.applied, result.rejected) == ("loaded", 4, 2, 2)
    reasons = _rejects(engine, result.file_id)
    assert [line for line, _ in reasons] == [3, 4]
    assert reasons[0][1].startswith("customer_name contains a NUL character")
    assert _references(engine) == ["N-1", "N-4"]
    with engine.connect() as c:
        raw = feeds.list_rejects(c, file_id=result.file_id)[0].raw
    assert raw["customer_name"] == "Alice\u2400Schmidt"  # shown, not lost


def test_an_ndjson_nul_escape_and_a_utf16_export_load_their_good_rows(lot):
    engine, cars, base = lot
    record = {
        "external_id": "W-1",
        "version": 1,
        "updated_at": _iso(base - timedelta(days=1)),
        "event": "scheduled",
        "plate": cars[0].plate,
        "location": "BER1",
        "starts_at": _iso(base),
        "ends_at": _iso(base + timedelta(hours=3)),
    }
    lines = [
        json.dumps(record),
        json.dumps(dict(record, external_id="W-2", description="oil\u0000change")),
    ]
    result = ingest_file(engine, name="maintenance-1.ndjson", data="\n".join(lines).encode())
    assert (result.applied, result.rejected) == (1, 1)
    utf16 = codecs.BOM_UTF16_LE + (MAINT + _job("W-3", cars[1].plate, base)).encode("utf-16-le")
    result = ingest_file(engine, name="maintenance-2.csv", data=utf16)
    assert (result.status, result.applied, result.rejected) == ("loaded", 1, 0)
    assert _references(engine) == ["W-1", "W-3"]


# --- files that cannot be read at all ---------------------------------------------------------


@pytest.fixture
def inbox(tmp_path: Path) -> tuple[Path, Settings]:
    path = tmp_path / "inbox"
    path.mkdir()
    return path, Settings(inbox=str(path), data_dir=tmp_path)


def test_an_unreadable_file_is_set_aside_with_one_reason_and_the_next_file_loads(lot, inbox):
    engine, cars, base = lot
    folder, settings = inbox
    good = HEADER + _contract("G-1", cars[0].plate, base)
    (folder / "contracts-a-semicolon.csv").write_text(good.replace(",", ";"))
    (folder / "contracts-b-binary.csv").write_bytes(b"PK\x03\x04" + bytes(range(256)))
    (folder / "contracts-c-utf16.csv").write_bytes(good.encode("utf-16-le"))
    (folder / "contracts-d-returns.csv").write_text(
        f"external_id,returned_at,plate,location\nR-1,{_iso(base)},{cars[0].plate},BER1\n"
    )
    (folder / "contracts-e-good.csv").write_text(good)
    (folder / "maintenance-f.csv").write_text(MAINT + _job("J-1", cars[1].plate, base))

    summary = ingest_inbox(engine, settings)

    status = {Path(f.name).name: (f.status, f.note) for f in summary.files}
    assert status["contracts-e-good.csv"] == ("loaded", None)
    assert status["maintenance-f.csv"] == ("loaded", None)
    assert status["contracts-a-semicolon.csv"] == (
        "rejected",
        "the file is separated by ';', not by commas: export it comma-separated (CSV)",
    )
    assert status["contracts-b-binary.csv"][1].startswith("the file is a ZIP archive")
    assert status["contracts-c-utf16.csv"][1].startswith("the file is UTF-16 text without")
    assert status["contracts-d-returns.csv"][1] == (
        "the header has no version, updated_at, event, customer_name, pickup_location,"
        " return_location, pickup_at, return_at columns (it names external_id, returned_at,"
        " plate, location): these are the columns of a returns file; name it returns-....csv"
    )
    assert _references(engine) == ["G-1", "J-1"]
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert sorted(p.name for p in (folder / "rejected" / day).iterdir()) == [
        "contracts-a-semicolon.csv",
        "contracts-b-binary.csv",
        "contracts-c-utf16.csv",
        "contracts-d-returns.csv",
    ]
    assert sorted(p.name for p in (folder / "processed" / day).iterdir()) == [
        "contracts-e-good.csv",
        "maintenance-f.csv",
    ]
    with engine.connect() as c:
        files = {Path(f.name).name: f for f in feeds.list_files(c)}
    semicolon = files["contracts-a-semicolon.csv"]
    assert (semicolon.rows_total, semicolon.rows_rejected) == (0, 1)
    assert _rejects(engine, semicolon.id) == [(1, status["contracts-a-semicolon.csv"][1])]
    assert "4 set aside" in summary.describe()


@pytest.fixture
def poisoned(committed: Engine):
    # A real PostgreSQL error on one file's contract, raised where no check of ours looks:
    # whatever breaks a file, the inbox run must go on.
    with committed.begin() as c:
        c.execute(
            text(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF NEW.external_id = 'POISON' THEN RAISE EXCEPTION 'poisoned row %',"
                " NEW.external_id; END IF; RETURN NEW; END $$;"
                " CREATE TRIGGER poison BEFORE INSERT ON contracts FOR EACH ROW"
                " EXECUTE FUNCTION poison()"
            )
        )
    yield
    with committed.begin() as c:
        c.execute(text("DROP TRIGGER poison ON contracts; DROP FUNCTION poison()"))


def test_a_file_that_fails_to_load_is_set_aside_and_the_inbox_run_goes_on(lot, inbox, poisoned):
    engine, cars, base = lot
    folder, settings = inbox
    (folder / "contracts-1.csv").write_text(HEADER + _contract("POISON", cars[0].plate, base))
    (folder / "contracts-2.csv").write_text(HEADER + _contract("OK-2", cars[1].plate, base))
    (folder / "maintenance-3.csv").write_text(MAINT + _job("OK-3", cars[2].plate, base))
    said: list[str] = []

    summary = ingest_inbox(engine, settings, log=said.append)

    [first, *rest] = summary.files
    assert first.status == "rejected"
    assert first.note == (
        "the file could not be loaded (poisoned row POISON): it was set aside; fix it and"
        " send it again"
    )
    assert [f.status for f in rest] == ["loaded", "loaded"]
    assert _references(engine) == ["OK-2", "OK-3"]
    assert (
        folder / "rejected" / datetime.now(UTC).strftime("%Y-%m-%d") / "contracts-1.csv"
    ).exists()
    assert any("contracts-1.csv" in line and "set aside" in line for line in said)
    assert not any("Traceback" in line for line in said)
    assert _rejects(engine, first.file_id) == [(1, first.note)]


def test_the_flow_run_completes_and_says_which_file_was_set_aside(
    harness, fleet_env, lot, poisoned, tmp_path
):
    _, cars, base = lot
    folder = tmp_path / "inbox"
    folder.mkdir(exist_ok=True)
    (folder / "contracts-1.csv").write_text(HEADER + _contract("POISON", cars[0].plate, base))
    (folder / "contracts-2.csv").write_text(HEADER + _contract("OK-2", cars[1].plate, base))

    def run():
        state = flows.ingest_feeds_flow(return_state=True)
        return state.is_completed(), state.result()

    # In a thread of its own: after a browser test, Playwright keeps an event loop running in
    # this one, and Prefect would then hand back a coroutine instead of the result.
    with ThreadPoolExecutor(max_workers=1) as pool:
        completed, summary = pool.submit(run).result()
    assert completed
    assert [f.status for f in summary.files] == ["rejected", "loaded"]
    assert summary.describe_set_aside() == (
        "set aside in rejected/: contracts-1.csv (the file could not be loaded (poisoned row"
        " POISON): it was set aside; fix it and send it again)"
    )


# --- files that give no record say why --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "note"),
    [
        (b"", "the file is empty"),
        (HEADER.encode(), "the file has a header but no rows"),
        ((HEADER + ",,,,,,,,,,,\n").encode(), "the lines after the header hold no values"),
    ],
)
def test_a_file_without_records_says_why(lot, data, note):
    engine, *_ = lot
    result = ingest_file(engine, name="contracts-empty.csv", data=data)
    assert (result.status, result.rows) == ("loaded", 0)
    assert result.note.startswith(note)


def test_cr_only_line_ends_load_instead_of_vanishing(lot):
    engine, cars, base = lot
    data = HEADER + _contract("CR-1", cars[0].plate, base) + _contract("CR-2", cars[1].plate, base)
    result = ingest_file(engine, name="contracts-mac.csv", data=data.replace("\n", "\r").encode())
    assert (result.rows, result.applied) == (2, 2)


# --- dates the engine can hold -----------------------------------------------------------------


def test_a_contract_dated_9999_is_quarantined_and_later_files_touching_the_car_load(lot):
    engine, cars, base = lot
    plate = cars[0].plate
    far = _contract("F-1", plate, base, end="9999-12-31T23:00-05:00")
    result = ingest_file(engine, name="contracts-far.csv", data=(HEADER + far).encode())
    assert (result.applied, result.rejected) == (0, 1)
    assert _rejects(engine, result.file_id) == [
        (2, "return_at 9999-12-31T23:00-05:00 is more than 730 days after now: check the year")
    ]
    fixed = ingest_file(
        engine, name="contracts-fixed.csv", data=(HEADER + _contract("F-1", plate, base)).encode()
    )
    later = ingest_file(
        engine,
        name="contracts-later.csv",
        data=(HEADER + _contract("F-2", plate, base + timedelta(days=3))).encode(),
    )
    assert (fixed.applied, later.applied) == (1, 1)


def test_the_plausible_window_comes_from_the_settings(lot):
    engine, cars, base = lot
    data = (HEADER + _contract("S-1", cars[0].plate, base + timedelta(days=40))).encode()
    narrow = Settings(feed_days_ahead=30)
    result = ingest_file(engine, name="contracts-narrow.csv", data=data, settings=narrow)
    assert result.rejected == 1
    assert "is more than 30 days after now" in _rejects(engine, result.file_id)[0][1]


# --- files that are no feed, and two runs at once --------------------------------------------


def test_a_file_that_is_no_feed_is_noted_once_until_it_changes(lot, inbox):
    engine, *_ = lot
    folder, settings = inbox
    (folder / "notes.txt").write_text("call the workshop about B NB 1")

    said: list[str] = []
    first = ingest_inbox(engine, settings, log=said.append)
    again: list[str] = []
    second = ingest_inbox(engine, settings, log=again.append)
    (folder / "notes.txt").write_text("call the workshop about B NB 1 and B NB 2")
    changed: list[str] = []
    third = ingest_inbox(engine, settings, log=changed.append)

    [noted] = first.files
    assert (Path(noted.name).name, noted.status) == ("notes.txt", "unreadable")
    assert noted.note.startswith("cannot tell the feed of 'notes.txt'")
    assert sum("notes.txt: left in the inbox, not loaded" in line for line in said) == 1
    assert second.files == [] and not any("notes.txt" in line for line in again)
    assert [Path(f.name).name for f in third.files] == ["notes.txt"]
    assert (folder / "notes.txt").exists()  # left where it was: it may be someone's


def _waiting_on_locks(engine: Engine) -> int:
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
        ).scalar_one()


def test_two_ingest_runs_at_once_load_a_file_once_and_both_complete(lot, inbox):
    engine, cars, base = lot
    folder, settings = inbox
    (folder / "contracts-1.csv").write_text(HEADER + _contract("TW-1", cars[0].plate, base))
    results: dict[str, object] = {}

    def run(who: str) -> None:
        try:
            results[who] = ingest_inbox(engine, settings)
        except Exception as e:  # the failure under test: reported, not lost in the thread
            results[who] = e

    # Holding the loader's lock makes both runs read the file before either moves it.
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": INGEST_LOCK})
        runs = [threading.Thread(target=run, args=(who,)) for who in ("a", "b")]
        for t in runs:
            t.start()
        deadline = time.monotonic() + 30
        while _waiting_on_locks(engine) < 2:
            assert time.monotonic() < deadline, "the two runs never both waited for the file"
            time.sleep(0.05)
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": INGEST_LOCK})
        holder.commit()
    for t in runs:
        t.join(timeout=60)
        assert not t.is_alive()

    assert not [r for r in results.values() if isinstance(r, Exception)], results
    statuses = sorted(f.status for r in results.values() for f in r.files)
    assert statuses == ["duplicate", "loaded"]
    assert _references(engine) == ["TW-1"]
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert [p.name for p in (folder / "processed" / day).iterdir()] == ["contracts-1.csv"]


def test_a_file_another_run_took_after_the_listing_is_skipped(lot, inbox, monkeypatch):
    engine, cars, base = lot
    folder, settings = inbox
    (folder / "contracts-2.csv").write_text(HEADER + _contract("TW-2", cars[0].plate, base))
    listed = ingest.inbox_files

    def stale_listing(location: str):
        fs, names = listed(location)
        return fs, [str(folder / "contracts-1.csv"), str(folder / "notes-gone.txt"), *names]

    monkeypatch.setattr(ingest, "inbox_files", stale_listing)
    said: list[str] = []
    summary = ingest_inbox(engine, settings, log=said.append)

    assert [(Path(f.name).name, f.status) for f in summary.files] == [("contracts-2.csv", "loaded")]
    assert any("contracts-1.csv: taken by another ingest run meanwhile" in line for line in said)
