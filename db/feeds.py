"""Feed files, their quarantined rows, and the maintenance, return and transfer records.

A file is registered by its content hash before anything of it is loaded, in the same
transaction as its rows: a second delivery of the same bytes finds the hash and does nothing,
and a load that fails leaves no trace, so the next run tries again. Records are keyed by
(feed, external id); only a higher version replaces a stored one. Each newly stored version is
applied through the engine functions staff use, attributed to the feed's own account.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, text

from db import conflicts, maintenance, rentals, transfers
from db.blocks import get_block, move_block
from db.errors import BookingConflict, FleetError, InvalidInput
from db.events import to_json
from db.fleet import feed_user_id, system_user_id
from db.status import change_status

FEEDS = ("contracts", "maintenance", "returns", "transfers")
RECORD_FEEDS = ("maintenance", "returns", "transfers")
NUL_SHOWN = "\u2400"  # ␀, where a quarantined row held a NUL character
NOTED_STATE = "ingest.noted_files"

Progress = Callable[[int, int], None]


class FeedFile(BaseModel):
    """One received file and what became of its rows."""

    id: int
    feed: str
    name: str
    format: str
    size_bytes: int
    received_at: datetime
    finished_at: datetime | None
    rows_total: int
    rows_applied: int
    rows_stale: int
    rows_rejected: int
    rows_conflicted: int


class RejectRow(BaseModel):
    """A quarantined row: file, line, the raw values and why it was not loaded."""

    id: int
    file_id: int
    file_name: str
    feed: str
    line: int
    raw: dict[str, Any]
    reason: str
    created_at: datetime


@dataclass
class RecordSummary:
    """What the changed records of one feed did."""

    applied: int = 0
    unchanged: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def require_feed(feed: str) -> str:
    """Return the feed name or raise InvalidInput naming the known feeds."""
    if feed not in FEEDS:
        raise InvalidInput(f"unknown feed {feed!r}", field="feed", hint=", ".join(FEEDS))
    return feed


def register_file(
    conn: Connection, *, feed: str, name: str, fmt: str, sha256: bytes, size: int
) -> int | None:
    """Register a file by content hash; None when the same bytes were ingested before.

    A concurrent run registering the same file waits on the unique index and then sees it.
    """
    require_feed(feed)
    return conn.execute(
        text(
            "INSERT INTO feed_files (feed, name, format, content_sha256, size_bytes)"
            " VALUES (:feed, :name, :fmt, :sha, :size)"
            " ON CONFLICT (feed, content_sha256) DO NOTHING RETURNING id"
        ),
        {"feed": feed, "name": name, "fmt": fmt, "sha": sha256, "size": size},
    ).scalar()


def finish_file(
    conn: Connection,
    *,
    file_id: int,
    total: int,
    applied: int,
    stale: int,
    rejected: int,
    conflicted: int,
) -> None:
    """Record a file's row counts and when its load finished."""
    conn.execute(
        text(
            "UPDATE feed_files SET rows_total = :total, rows_applied = :applied,"
            " rows_stale = :stale, rows_rejected = :rejected, rows_conflicted = :conflicted,"
            " finished_at = clock_timestamp() WHERE id = :id"
        ),
        {
            "id": file_id,
            "total": total,
            "applied": applied,
            "stale": stale,
            "rejected": rejected,
            "conflicted": conflicted,
        },
    )


def quarantine(
    conn: Connection, *, file_id: int, feed: str, rejects: Iterable[tuple[int, dict, str]]
) -> int:
    """Store bad rows (line, raw values, reason) with COPY; return how many.

    A NUL character, which neither text nor jsonb can hold, is stored as the visible ␀
    (U+2400): the row is kept as it came, only that character shown instead.
    """
    buffer = io.StringIO()
    count = 0
    for line, raw, reason in rejects:
        values = (str(file_id), feed, str(line), json.dumps(_storable(raw), default=str), reason)
        buffer.write("\t".join(_copy_text(v.replace("\x00", NUL_SHOWN)) for v in values))
        buffer.write("\n")
        count += 1
    if count:
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy("COPY feed_rejects (file_id, feed, line, raw, reason) FROM STDIN") as cp:
            cp.write(buffer.getvalue())
    return count


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", NUL_SHOWN)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _copy_text(value: str) -> str:
    # COPY's text format: backslash, tab and newlines must be escaped.
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def list_files(conn: Connection, *, feed: str | None = None, limit: int = 50) -> list[FeedFile]:
    """Return received files, newest first."""
    rows = conn.execute(
        text(
            "SELECT id, feed, name, format, size_bytes, received_at, finished_at, rows_total,"
            " rows_applied, rows_stale, rows_rejected, rows_conflicted FROM feed_files"
            " WHERE CAST(:feed AS text) IS NULL OR feed = :feed ORDER BY id DESC LIMIT :limit"
        ),
        {"feed": feed, "limit": limit},
    ).mappings()
    return [FeedFile.model_validate(dict(r)) for r in rows]


def list_rejects(
    conn: Connection,
    *,
    file_id: int | None = None,
    feed: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[RejectRow]:
    """Return quarantined rows, newest file first and in line order within a file."""
    rows = conn.execute(
        text(
            "SELECT r.id, r.file_id, f.name AS file_name, r.feed, r.line, r.raw, r.reason,"
            " r.created_at FROM feed_rejects r JOIN feed_files f ON f.id = r.file_id"
            " WHERE (CAST(:file_id AS bigint) IS NULL OR r.file_id = :file_id)"
            " AND (CAST(:feed AS text) IS NULL OR r.feed = :feed)"
            " AND (CAST(:since AS timestamptz) IS NULL OR r.created_at >= :since)"
            " ORDER BY r.file_id DESC, r.line LIMIT :limit"
        ),
        {"file_id": file_id, "feed": feed, "since": since, "limit": limit},
    ).mappings()
    return [RejectRow.model_validate(dict(r)) for r in rows]


def noted_inbox_files(conn: Connection) -> dict[str, int]:
    """Return the inbox files already reported as no feed, with their size then.

    Locks the entry, so two runs at once report a file once.
    """
    value = conn.execute(
        text("SELECT value FROM pipeline_state WHERE name = :n FOR UPDATE"), {"n": NOTED_STATE}
    ).scalar()
    return dict(value or {})


def set_noted_inbox_files(conn: Connection, files: dict[str, int]) -> None:
    """Remember which inbox files were reported as no feed (path to size)."""
    conn.execute(
        text(
            "INSERT INTO pipeline_state (name, value, updated_at)"
            " VALUES (:n, CAST(:v AS jsonb), now())"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
        ),
        {"n": NOTED_STATE, "v": json.dumps(files)},
    )


def known_references(conn: Connection) -> tuple[set[str], set[str]]:
    """Return the plates and location codes a feed row may name."""
    plates = set(conn.execute(text("SELECT plate FROM vehicles")).scalars())
    codes = set(conn.execute(text("SELECT code FROM locations")).scalars())
    return plates, codes


def upsert_records(
    conn: Connection, *, feed: str, file_id: int, records: list[dict[str, Any]]
) -> tuple[list[tuple[str, int]], int]:
    """Store each record's newest version; return ((external_id, line) changed, stale count).

    `records` carry external_id, version, updated_at, event, plate, line and the rest as data.
    """
    if feed not in RECORD_FEEDS:
        raise InvalidInput(f"{feed!r} has no generic records", field="feed")
    # Within one file the highest version (then latest update, then last line) wins.
    newest: dict[str, dict[str, Any]] = {}
    for r in records:
        key = (r["version"], r["updated_at"], r["line"])
        have = newest.get(r["external_id"])
        if have is None or key > (have["version"], have["updated_at"], have["line"]):
            newest[r["external_id"]] = r
    changed: list[tuple[str, int]] = []
    for r in newest.values():
        data = {
            k: v
            for k, v in r.items()
            if k not in ("external_id", "version", "updated_at", "event", "line")
        }
        hit = conn.execute(
            text(
                "INSERT INTO feed_records AS f (feed, external_id, version, updated_at, event,"
                " vehicle_id, data, file_id, line)"
                " SELECT :feed, :eid, :version, :updated_at, :event, v.id, CAST(:data AS jsonb),"
                " :file_id, :line FROM vehicles v WHERE v.plate = :plate"
                " ON CONFLICT (feed, external_id) DO UPDATE SET version = EXCLUDED.version,"
                " updated_at = EXCLUDED.updated_at, event = EXCLUDED.event,"
                " vehicle_id = EXCLUDED.vehicle_id, data = EXCLUDED.data,"
                " file_id = EXCLUDED.file_id, line = EXCLUDED.line, received_at = now()"
                " WHERE f.version < EXCLUDED.version RETURNING external_id"
            ),
            {
                "feed": feed,
                "eid": r["external_id"],
                "version": r["version"],
                "updated_at": r["updated_at"],
                "event": r.get("event") or "returned",
                "data": to_json(data),
                "file_id": file_id,
                "line": r["line"],
                "plate": r["plate"],
            },
        ).scalar()
        if hit is not None:
            changed.append((hit, r["line"]))
    return changed, len(records) - len(changed)


def apply_records(
    conn: Connection,
    *,
    feed: str,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RecordSummary:
    """Apply every stored record of a feed whose newest version has not taken effect yet."""
    clock = now or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    by = feed_user_id(conn, feed)
    rows = (
        conn.execute(
            text(
                "SELECT f.*, v.plate FROM feed_records f JOIN vehicles v ON v.id = f.vehicle_id"
                " WHERE f.feed = :feed AND f.applied_version < f.version"
                " ORDER BY f.updated_at, f.external_id"
            ),
            {"feed": feed},
        )
        .mappings()
        .all()
    )
    summary = RecordSummary()
    effect = {"maintenance": _maintenance, "returns": _return, "transfers": _transfer}[feed]
    for i, row in enumerate(rows, start=1):
        try:
            with conn.begin_nested():
                outcome = effect(conn, row, now=clock, by=by)
                conflicts.clear_feed_collision(conn, external_id=f"{feed}/{row['external_id']}")
            if outcome.startswith("no effect"):
                summary.unchanged += 1
            else:
                summary.applied += 1
        except BookingConflict as exc:
            outcome = f"conflict: {exc.message}"
            summary.conflicts.append(_report(conn, feed, row, exc))
        except FleetError as exc:
            outcome = f"refused: {exc.message}"
            summary.refused.append(
                {
                    "external_id": row["external_id"],
                    "file_id": row["file_id"],
                    "line": row["line"] or 1,
                    "reason": exc.message,
                    "raw": {**row["data"], "external_id": row["external_id"]},
                }
            )
        conn.execute(
            text(
                "UPDATE feed_records SET applied_version = version, outcome = :o"
                " WHERE feed = :feed AND external_id = :eid AND version = :version"
            ),
            {
                "o": outcome[:200],
                "feed": feed,
                "eid": row["external_id"],
                "version": row["version"],
            },
        )
        if progress:
            progress(i, len(rows))
    return summary


def _report(conn: Connection, feed: str, row: Any, exc: BookingConflict) -> dict[str, Any]:
    blocking = (exc.details or {}).get("blocking") or []
    report = {
        "external_id": f"{feed}/{row['external_id']}",
        "vehicle_id": row["vehicle_id"],
        "reason": exc.message,
        "blocking_block_ids": [b["id"] for b in blocking],
        "suggestions": [],
    }
    if blocking:
        first = get_block(conn, block_id=blocking[0]["id"])
        report["pickup_at"] = first.start
        if first.kind in ("reservation", "rental"):
            # The booking in the way needs another car: the ways out are for it.
            report["suggestions"] = [
                s.model_dump(mode="json")
                for s in conflicts.suggest(
                    conn,
                    start=first.start,
                    end=first.end,
                    location_id=first.start_location_id,
                    category_id=_category(conn, first.vehicle_id),
                )
            ]
        conflicts.record_feed_collision(
            conn,
            block_id=first.id,
            vehicle_id=row["vehicle_id"],
            location_id=first.start_location_id,
            details=report,
        )
    return report


def _category(conn: Connection, vehicle_id: int) -> int:
    return conn.execute(
        text("SELECT category_id FROM vehicles WHERE id = :v"), {"v": vehicle_id}
    ).scalar_one()


def _location_id(conn: Connection, code: str) -> int:
    found = conn.execute(text("SELECT id FROM locations WHERE code = :c"), {"c": code}).scalar()
    if found is None:
        raise InvalidInput(f"unknown location {code!r}", field="location")
    return found


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _set_block(conn: Connection, feed: str, external_id: str, block_id: int) -> None:
    conn.execute(
        text("UPDATE feed_records SET block_id = :b WHERE feed = :f AND external_id = :e"),
        {"b": block_id, "f": feed, "e": external_id},
    )


def _maintenance(conn: Connection, row: Any, *, now: datetime, by: int) -> str:
    data, event = row["data"], row["event"]
    start, end = _time(data["starts_at"]), _time(data["ends_at"])
    at = min(row["updated_at"], now)
    block = get_block(conn, block_id=row["block_id"]) if row["block_id"] else None
    if block is None or block.state != "active":
        if block is not None:
            return f"no effect: maintenance #{block.id} is already {block.state}"
        if event == "cancelled":
            return "no effect: cancelled before it was scheduled here"
        block = maintenance.schedule_maintenance(
            conn,
            vehicle_id=row["vehicle_id"],
            start=start,
            end=end,
            created_by=by,
            reference=row["external_id"],
            notes=data.get("description") or "",
        )
        _set_block(conn, "maintenance", row["external_id"], block.id)
        if event == "scheduled":
            return "scheduled"
    elif (block.start, block.end) != (start, end) and block.started_at is None:
        block = move_block(conn, block_id=block.id, start=start, end=end, changed_by=by)
        if event == "scheduled":
            return "moved"
    if event == "scheduled":
        return "no effect: the planned window is unchanged"
    if event == "cancelled":
        maintenance.cancel_maintenance(conn, block_id=block.id, changed_by=by)
        return "cancelled"
    if block.started_at is None:
        maintenance.start_maintenance(conn, block_id=block.id, changed_by=by, at=at)
    if event == "completed":
        maintenance.complete_maintenance(conn, block_id=block.id, changed_by=by, at=at)
        return "completed"
    return "started"


def _return(conn: Connection, row: Any, *, now: datetime, by: int) -> str:
    data = row["data"]
    returned_at = _time(data["returned_at"])
    notes = "; ".join(
        p
        for p in (
            f"fuel {data['fuel_percent']:g}%" if data.get("fuel_percent") is not None else "",
            f"damage: {data['damage_notes']}" if data.get("damage_notes") else "",
        )
        if p
    )
    if row["block_id"] is not None and row["applied_version"] > 0:
        # A higher version of a return already made: the check-in's readings were corrected.
        # The car came back once; its time and place stay as first reported.
        rentals.amend_return(
            conn,
            block_id=row["block_id"],
            amended_by=by,
            odometer_km=data.get("odometer_km"),
            notes=notes,
            why=f"corrected by {row['external_id']} version {row['version']}",
        )
        return "amended"
    open_rental = conn.execute(
        text(
            "SELECT b.id, lower(b.period) AS start, c.external_id AS contract_id FROM blocks b"
            " LEFT JOIN contracts c ON c.block_id = b.id"
            " WHERE b.vehicle_id = :v AND b.kind = 'rental' AND b.state = 'active'"
        ),
        {"v": row["vehicle_id"]},
    ).first()
    if open_rental is None:
        raise InvalidInput(
            f"{row['plate']} has no open rental to return",
            hint="check the plate; a return already processed is not processed twice",
        )
    contract = data.get("contract_id")
    if contract and open_rental.contract_id and contract != open_rental.contract_id:
        raise InvalidInput(
            f"{row['plate']} is out on contract {open_rental.contract_id}, not {contract}",
            field="contract_id",
        )
    if returned_at <= open_rental.start:
        raise InvalidInput(
            f"returned_at {returned_at.isoformat()} is before the rental's pickup"
            f" {open_rental.start.isoformat()}",
            field="returned_at",
        )
    rentals.return_vehicle(
        conn,
        block_id=open_rental.id,
        received_by=by,
        at=returned_at,
        location_id=_location_id(conn, data["location"]),
        odometer_km=data.get("odometer_km"),
        notes=notes,
    )
    conn.execute(
        text("UPDATE contracts SET outcome = 'returned' WHERE block_id = :b"),
        {"b": open_rental.id},
    )
    _set_block(conn, "returns", row["external_id"], open_rental.id)
    return "returned"


def _transfer(conn: Connection, row: Any, *, now: datetime, by: int) -> str:
    data, event = row["data"], row["event"]
    block = get_block(conn, block_id=row["block_id"]) if row["block_id"] else None
    if block is not None and block.state != "active":
        return f"no effect: transfer #{block.id} is already {block.state}"
    departed = _time(data.get("departed_at"))
    arrived = _time(data.get("arrived_at"))
    if block is None:
        depart = departed or arrived
        block = transfers.schedule_transfer(
            conn,
            vehicle_id=row["vehicle_id"],
            to_location_id=_location_id(conn, data["to_location"]),
            depart_at=depart,
            eta=_time(data.get("eta")) or arrived,
            created_by=by,
            reference=row["external_id"],
        )
        _set_block(conn, "transfers", row["external_id"], block.id)
    if block.started_at is None:
        transfers.dispatch(conn, block_id=block.id, changed_by=by, at=departed or block.start)
    if event == "arrived":
        transfers.arrive(conn, block_id=block.id, changed_by=by, at=arrived)
        return "arrived"
    return "dispatched"


def finish_prep(conn: Connection, *, now: datetime | None = None) -> int:
    """Make cars whose prep buffer after a return is over available again; return how many.

    A returned car is `cleaning` until its category's buffer ends; search already offers it
    from then on, and this makes the board say so too.
    """
    clock = now or conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    by = system_user_id(conn)
    due = conn.execute(
        text(
            "SELECT vehicle_id FROM vehicle_status_realtime WHERE current_status = 'cleaning'"
            " AND expected_available_at <= :now ORDER BY vehicle_id"
        ),
        {"now": clock},
    ).scalars()
    count = 0
    for vehicle_id in list(due):
        try:
            with conn.begin_nested():
                change_status(
                    conn,
                    vehicle_id=vehicle_id,
                    new_status="available",
                    changed_by=by,
                    reason="prep time after return is over",
                )
            count += 1
        except FleetError:
            continue  # changed by staff meanwhile; their change stands
    return count
