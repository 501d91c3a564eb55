"""Property: search agrees with a brute-force reference over random fleets and blocks."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from db import availability, blocks, status
from db.errors import BookingConflict
from tests.conftest import add_vehicle

HOUR = timedelta(hours=1)

block_st = st.tuples(
    st.integers(0, 3),  # vehicle index
    st.sampled_from(["reservation", "maintenance", "transfer", "hold", "expired_hold"]),
    st.integers(-30, 60),  # start, hours from world.now
    st.integers(1, 30),  # length in hours
    st.integers(0, 1),  # end location index (for reservations and transfers)
)
fleet_st = st.tuples(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=4),
    st.lists(block_st, max_size=12),
    st.lists(
        st.sampled_from([None, None, None, "cleaning", "out_of_service", "rented_late"]),
        min_size=4,
        max_size=4,
    ),
    st.integers(-5, 60),  # query start, unless anchored to a block below
    st.integers(1, 48),  # query length
    st.integers(0, 1),  # query location
    st.sampled_from([0, 1, None]),  # query category
    # Anchor the query at a block's end plus an offset, where buffers and handovers bite.
    st.one_of(st.none(), st.tuples(st.integers(0, 11), st.sampled_from([0, 0.25, 0.5, 1, 3, -1]))),
    st.lists(st.integers(0, 11), max_size=3),  # blocks to cancel afterwards
)


def reference(conn, world, vehicle_ids, start, end, location_id, category_id):
    """Decide availability one vehicle at a time, the slow and obvious way."""
    now = conn.execute(text("SELECT now()")).scalar_one()
    free = set()
    for vid in vehicle_ids:
        v = conn.execute(
            text(
                "SELECT v.category_id, c.prep_buffer FROM vehicles v JOIN vehicle_categories c"
                " ON c.id = v.category_id WHERE v.id = :v"
            ),
            {"v": vid},
        ).one()
        if category_id is not None and v.category_id != category_id:
            continue
        s = status.get_status(conn, vehicle_id=vid)
        if s.status == "out_of_service":
            continue
        late = s.status in ("rented", "maintenance", "in_transit") and (
            s.expected_available_at is None or s.expected_available_at < now
        )
        if late:
            continue
        if (
            s.expected_available_at
            and s.status in ("rented", "maintenance", "in_transit", "cleaning")
            and (s.expected_available_at > start)
        ):
            continue
        live = [
            b
            for b in blocks.vehicle_blocks(conn, vehicle_id=vid)
            if not (b.kind == "hold" and b.expires_at <= now)
        ]
        want_end = end + v.prep_buffer
        if any(b.start < want_end and b.blocked_until > start for b in live):
            continue
        # Only moves (one-way bookings, transfers; never holds) take a car to another lot.
        moves = [
            b
            for b in live
            if b.kind != "hold"
            and b.start_location_id != b.end_location_id
            and now < b.end <= start
        ]
        last_move = max(moves, key=lambda b: b.end, default=None)
        where = last_move.end_location_id if last_move else s.location_id
        if where == location_id:
            free.add(vid)
    return free


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fleet_st)
def test_search_matches_brute_force(conn, world, case):
    specs, block_specs, statuses, q_start, q_len, q_loc, q_cat, anchor, cancel = case
    made = []
    if anchor is not None and anchor[0] < len(block_specs):
        _, _, b_start, b_len, _ = block_specs[anchor[0]]
        q_start = b_start + b_len + anchor[1]
    locs = [world.ber, world.muc]
    cats = [world.econ, world.suv]
    with conn.begin_nested() as sp:
        ids = []
        for i, (loc, cat) in enumerate(specs):
            ids.append(
                add_vehicle(conn, world, f"P Q {i}", location=locs[loc], category=cats[cat]).id
            )
        for vi, kind, s, length, eloc in block_specs:
            if vi >= len(ids):
                continue
            real_kind = "hold" if kind == "expired_hold" else kind
            start_loc = blocks.location_at(conn, vehicle_id=ids[vi], at=world.at(s))
            end_loc = locs[eloc].id if kind in ("reservation", "transfer") else start_loc
            if real_kind == "transfer" and end_loc == start_loc:
                continue
            expires = None
            if real_kind == "hold":
                delta = -HOUR if kind == "expired_hold" else HOUR
                expires = conn.execute(text("SELECT now() + :d"), {"d": delta}).scalar_one()
            with contextlib.suppress(BookingConflict):
                made.append(
                    blocks.insert_block(
                        conn,
                        vehicle_id=ids[vi],
                        kind=real_kind,
                        start=world.at(s),
                        end=world.at(s + length),
                        start_location_id=start_loc,
                        end_location_id=end_loc,
                        created_by=world.agent.id,
                        customer_id=world.alice.id if real_kind == "reservation" else None,
                        expires_at=expires,
                    )
                )
        # Cancel some again: a cancelled move must stop deciding where the car is.
        for i in sorted(set(cancel)):
            if i < len(made) and made[i].kind != "hold":
                blocks.end_block(
                    conn,
                    block_id=made[i].id,
                    state="cancelled",
                    changed_by=world.agent.id,
                    reason="t",
                )
        for vid, st_ in zip(ids, statuses, strict=False):
            if st_ == "rented_late":
                status.change_status(
                    conn,
                    vehicle_id=vid,
                    new_status="rented",
                    changed_by=world.agent.id,
                    reason="t",
                    customer_id=world.bob.id,
                    expected_available_at=world.at(-3),
                )
            elif st_ == "cleaning":
                status.change_status(
                    conn,
                    vehicle_id=vid,
                    new_status="cleaning",
                    changed_by=world.agent.id,
                    reason="t",
                    expected_available_at=world.at(2),
                )
            elif st_:
                status.change_status(
                    conn, vehicle_id=vid, new_status=st_, changed_by=world.agent.id, reason="t"
                )
        start, end = world.at(q_start), world.at(q_start + q_len)
        category_id = cats[q_cat].id if q_cat is not None else None
        got = {
            h.vehicle_id
            for h in availability.search(
                conn, start=start, end=end, location_id=locs[q_loc].id, category_id=category_id
            )
        }
        want = reference(conn, world, ids, start, end, locs[q_loc].id, category_id)
        sp.rollback()
    assert got == want
