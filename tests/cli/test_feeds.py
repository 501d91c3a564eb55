"""`fleet feeds`: demo feeds into the inbox, ingest with a report, files, the rejects report."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from db.demo import load_demo
from fleet.cli.main import app
from fleet.settings import Settings, get_settings
from pipeline.ingest import ingest_inbox


@pytest.fixture
def feeds_cli(monkeypatch: pytest.MonkeyPatch, database_url: str, committed: Engine, tmp_path):
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_INBOX", str(tmp_path / "inbox"))
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    with committed.begin() as c:
        load_demo(c, vehicles=30, locations=2, seed=7)
    runner = CliRunner()

    def invoke(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    yield invoke
    get_settings.cache_clear()


def test_demo_feeds_ingest_and_the_rejects_report(feeds_cli, committed, tmp_path):
    inbox = tmp_path / "inbox"
    written = json.loads(feeds_cli("feeds", "demo", "--json").stdout)
    assert {Path(p).name.split("-")[0] for p in written} == {
        "contracts",
        "maintenance",
        "returns",
        "transfers",
    }
    # --once writes nothing more while files wait in the inbox.
    assert json.loads(feeds_cli("feeds", "demo", "--once", "--json").stdout) == []

    done = feeds_cli("feeds", "ingest", "--json")
    assert done.exit_code == 0, done.output
    files = json.loads(done.stdout)["files"]
    assert {f["status"] for f in files} == {"loaded"}
    # The demo writer puts one deliberately bad row in each file and one collision.
    assert sum(f["rejected"] for f in files) >= 4
    assert sum(f["conflicted"] for f in files) == 1
    assert not [p for p in inbox.iterdir() if p.is_file()]

    report = feeds_cli("feeds", "rejects")
    assert report.exit_code == 0
    assert "unknown plate" in report.stdout
    listed = json.loads(feeds_cli("feeds", "files", "--json").stdout)
    assert len(listed) == len(files)
    with committed.connect() as c:
        fed = c.execute(
            text(
                "SELECT count(*) FROM vehicle_status_log l JOIN users u ON u.id = l.changed_by"
                " WHERE u.username LIKE 'feed-%' AND l.source = 'feed'"
            )
        ).scalar_one()
    assert fed > 0  # returns, started maintenance, dispatched transfers changed statuses


def test_ingesting_named_files_and_bad_arguments(feeds_cli, tmp_path):
    sample = Path(__file__).parents[2] / "samples" / "feeds" / "contracts-sample.ndjson"
    first = feeds_cli("feeds", "ingest", sample)
    assert first.exit_code == 0, first.output
    assert "loaded" in first.stdout
    again = json.loads(feeds_cli("feeds", "ingest", sample, "--json").stdout)
    assert again["files"][0]["status"] == "duplicate"
    missing = feeds_cli("feeds", "ingest", tmp_path / "nope.csv")
    assert missing.exit_code == 2
    assert "is not a file" in missing.output
    unknown = feeds_cli("feeds", "files", "--feed", "invoices")
    assert unknown.exit_code == 2
    assert "unknown feed 'invoices'" in unknown.output


def test_an_fsspec_inbox_is_read_and_left_in_place(committed, monkeypatch):
    with committed.begin() as c:
        load_demo(c, vehicles=10, locations=2, seed=7)
        plate = c.execute(text("SELECT plate FROM vehicles ORDER BY id LIMIT 1")).scalar_one()
    fs = fsspec.filesystem("memory")
    fs.pipe(
        "/fleet-inbox/returns-remote.ndjson",
        (
            json.dumps(
                {
                    "external_id": "X-1",
                    "returned_at": "2026-01-01T10:00+01:00",
                    "plate": plate,
                    "location": "NOPE1",
                }
            )
            + "\n"
        ).encode(),
    )
    fs.pipe("/fleet-inbox/invoices-7.csv", b"a,b\n1,2\n")
    settings = Settings(inbox="memory://fleet-inbox")
    first = ingest_inbox(committed, settings)
    assert [(f.status, f.rejected) for f in first.files] == [("loaded", 1), ("unreadable", 0)]
    assert "invoices" in first.files[1].note and first.files[1].file_id is None
    assert fs.exists("/fleet-inbox/returns-remote.ndjson")  # remote inboxes are not moved
    again = ingest_inbox(committed, settings)
    # A file that is no feed is noted once, not again every run while it stays as it was.
    assert [f.status for f in again.files] == ["duplicate"]
    fs.rm("/fleet-inbox", recursive=True)


def test_demo_data_with_feeds_fills_the_inbox(monkeypatch, database_url, committed, tmp_path):
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEET_INBOX", str(tmp_path / "box"))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(
            app, ["demo-data", "--vehicles", "30", "--locations", "2", "--feeds", "--json"]
        )
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    written = json.loads(out.stdout)["feeds"]
    assert len(written) == 4
    assert all(Path(p).parent == tmp_path / "box" and Path(p).exists() for p in written)
