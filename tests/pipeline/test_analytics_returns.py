"""Time from return to available counts from when the car came back, not when it was ingested."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from db import rentals, status
from pipeline import analytics
from tests.conftest import add_vehicle, build_world
from tests.pipeline.test_analytics_docs import sql_blocks

RETURN_TO_AVAILABLE = dict(sql_blocks())["Time from return to available"]


def test_return_to_available_counts_from_returned_at(committed, database_url, tmp_path):
    with committed.begin() as c:
        world = build_world(c)
        v = add_vehicle(c, world, "B RT 1")
        booked = rentals.reserve(
            c,
            vehicle_id=v.id,
            start=world.at(1),
            end=world.at(30),
            pickup_location_id=world.ber.id,
            customer_id=world.alice.id,
            booked_by=world.agent.id,
        )
        rentals.pick_up(c, block_id=booked.id, handed_over_by=world.agent.id, at=world.at(1))
        returned_at = world.at(26)
        rentals.return_vehicle(c, block_id=booked.id, received_by=world.agent.id, at=returned_at)
        freed = status.change_status(
            c, vehicle_id=v.id, new_status="available", changed_by=world.agent.id, reason="clean"
        )
        # The returns feed delivered the check-in three hours late: the log stamps the
        # change with the ingest time, the return's own time stays in its metadata.
        ingested = returned_at + timedelta(hours=3)
        for new_status, at in (
            ("rented", world.at(1)),
            ("cleaning", ingested),
            ("available", ingested + timedelta(minutes=15)),
        ):
            c.execute(
                text(
                    "UPDATE vehicle_status_log SET changed_at = :at"
                    " WHERE vehicle_id = :v AND new_status = :s AND version > 1"
                ),
                {"at": at, "v": v.id, "s": new_status},
            )
        metadata = c.execute(
            text("SELECT metadata FROM vehicle_status_log WHERE new_status = 'cleaning'")
        ).scalar_one()
        assert freed.old_status == "cleaning"
    assert metadata["returned_at"] == returned_at.isoformat()

    con = analytics.connect(
        postgres_url=database_url, extension_directory=tmp_path / "ext", archive_dir=tmp_path
    )
    try:
        result = con.execute(RETURN_TO_AVAILABLE)
        columns = [d[0] for d in result.description]
        rows = [dict(zip(columns, r, strict=True)) for r in result.fetchall()]
    finally:
        con.close()
    assert len(rows) == 1 and rows[0]["returns"] == 1
    # 3 h 15 min from the return to available, not the 15 min since it was ingested.
    assert rows[0]["median_minutes"] == 195
