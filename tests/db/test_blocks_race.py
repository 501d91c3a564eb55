"""A hold that runs out while a booking waits on the constraint: the car is booked, never a 409
that names nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from db import holds, rentals
from db.blocks import Block
from db.errors import BookingConflict
from tests.conftest import World, add_vehicle, build_world

DEADLINE = 20.0


def _poll(engine: Engine, sql: str, params: dict, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        with engine.connect() as c:
            if c.execute(text(sql), params).scalar():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _hold_runs_out_while_booking_waits(
    engine: Engine, world: World, hold: Block, book: Callable
) -> object:
    """Run `book` on its own connection while the hold runs out under it; return its outcome.

    Another transaction changes the hold's row (uncommitted), so the booking's constraint
    check has to wait for it, after the booking already cleared run-out holds (this one was
    still live then). The change makes the hold run out a moment later; once it has, and the
    booking is seen waiting, it commits: the constraint now fires on a hold every read hides.
    """
    outcome: list[object] = []
    pid: list[int] = []
    with engine.connect() as other:
        other.begin()
        expires = other.execute(
            text(
                "UPDATE blocks SET expires_at = clock_timestamp() + interval '300 milliseconds'"
                " WHERE id = :id RETURNING expires_at"
            ),
            {"id": hold.id},
        ).scalar_one()

        def booking() -> None:
            try:
                with engine.begin() as c:
                    pid.append(c.execute(text("SELECT pg_backend_pid()")).scalar_one())
                    outcome.append(book(c))
            except BookingConflict as exc:
                outcome.append(exc)

        clerk = threading.Thread(target=booking)
        clerk.start()
        deadline = time.monotonic() + DEADLINE
        while not pid and time.monotonic() < deadline:
            time.sleep(0.01)
        _poll(
            engine,
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid",
            {"pid": pid[0]},
            "the booking to wait on the hold's row",
        )
        _poll(engine, "SELECT clock_timestamp() > :t", {"t": expires}, "the hold to run out")
        other.commit()
        clerk.join(timeout=DEADLINE)
    assert not clerk.is_alive() and len(outcome) == 1
    return outcome[0]


def _refusal(outcome: object) -> str:
    if isinstance(outcome, BookingConflict):
        return f"{outcome.message} {outcome.details}"
    return ""


def _world_with_hold(engine: Engine, plate: str, start: float, end: float):
    with engine.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, plate)
        hold = holds.place_hold(
            c,
            vehicle_id=car.id,
            start=world.at(start),
            end=world.at(end),
            location_id=world.ber.id,
            held_by=world.agent2.id,
        )
    return world, car, hold


def test_booking_that_raced_a_hold_running_out_is_booked(committed):
    world, car, hold = _world_with_hold(committed, "B RX 1", 2, 26)

    outcome = _hold_runs_out_while_booking_waits(
        committed,
        world,
        hold,
        lambda c: rentals.reserve(
            c,
            vehicle_id=car.id,
            start=world.at(10),
            end=world.at(30),
            pickup_location_id=world.ber.id,
            customer_id=world.alice.id,
            booked_by=world.agent.id,
        ),
    )

    assert isinstance(outcome, Block), _refusal(outcome)
    assert (outcome.kind, outcome.customer_name) == ("reservation", "Alice Schmidt")
    with committed.connect() as c:
        state = c.execute(text("SELECT state FROM blocks WHERE id = :id"), {"id": hold.id})
        assert state.scalar_one() == "expired"


def test_extension_that_raced_a_hold_running_out_is_extended(committed):
    world, car, hold = _world_with_hold(committed, "B RX 2", 8, 12)
    with committed.begin() as c:
        booked = rentals.reserve(
            c,
            vehicle_id=car.id,
            start=world.at(2),
            end=world.at(6),
            pickup_location_id=world.ber.id,
            customer_id=world.alice.id,
            booked_by=world.agent.id,
        )

    outcome = _hold_runs_out_while_booking_waits(
        committed,
        world,
        hold,
        lambda c: rentals.extend_rental(
            c, block_id=booked.id, new_end=world.at(10), extended_by=world.agent.id
        ),
    )

    assert isinstance(outcome, Block), _refusal(outcome)
    assert (outcome.id, outcome.end) == (booked.id, world.at(10))


def test_a_live_hold_is_still_named_when_the_booking_collides(committed):
    world, car, hold = _world_with_hold(committed, "B RX 3", 2, 26)
    with committed.begin() as c, pytest.raises(BookingConflict) as refused:
        rentals.reserve(
            c,
            vehicle_id=car.id,
            start=world.at(10),
            end=world.at(30),
            pickup_location_id=world.ber.id,
            customer_id=world.alice.id,
            booked_by=world.agent.id,
        )
    assert f"hold #{hold.id} on B RX 3" in refused.value.message
    assert [b["id"] for b in refused.value.details["blocking"]] == [hold.id]
