"""Holds: place, convert, release, expiry without a janitor, and the race for one car."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from db import audit, availability, holds, rentals
from db.errors import (
    BookingConflict,
    HoldConverted,
    HoldExpired,
    HoldTaken,
    InvalidInput,
    NotAvailable,
)
from tests.conftest import add_vehicle, build_world


def _search(conn, world, start, end, category=None):
    return [
        h.plate
        for h in availability.search(
            conn,
            start=start,
            end=end,
            location_id=world.ber.id,
            category_id=(category or world.econ).id,
        )
    ]


def test_held_car_disappears_from_search_and_second_clerk_gets_conflict(conn, world):
    v = add_vehicle(conn, world, "B HD 1")
    hold = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(26),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )
    assert _search(conn, world, world.at(2), world.at(26)) == []
    with pytest.raises(BookingConflict) as err:
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(20),
            end=world.at(30),
            location_id=world.ber.id,
            held_by=world.agent2.id,
        )
    assert f"hold #{hold.id}" in err.value.message
    assert err.value.details["blocking"][0]["id"] == hold.id


def test_prep_buffer_after_a_booking_blocks_the_next_pickup(conn, world):
    v = add_vehicle(conn, world, "B HD 2")  # ECON: 30 minutes prep
    holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(10),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )
    assert _search(conn, world, world.at(10.25), world.at(12)) == []
    assert _search(conn, world, world.at(10.5), world.at(12)) == ["B HD 2"]


def test_expired_hold_never_blocks_and_needs_no_janitor(conn, world):
    v = add_vehicle(conn, world, "B HD 3")
    hold = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(6),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )
    conn.execute(
        text("UPDATE blocks SET expires_at = now() - interval '1 minute' WHERE id = :id"),
        {"id": hold.id},
    )
    assert _search(conn, world, world.at(2), world.at(6)) == ["B HD 3"]
    second = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(3),
        end=world.at(5),
        location_id=world.ber.id,
        held_by=world.agent2.id,
    )
    state = conn.execute(text("SELECT state FROM blocks WHERE id = :id"), {"id": hold.id})
    assert state.scalar() == "expired" and second.kind == "hold"
    with pytest.raises(HoldExpired):
        holds.convert_hold(
            conn, hold_id=hold.id, customer_id=world.alice.id, converted_by=world.agent.id
        )


def test_convert_hold_makes_a_reservation_for_the_customer(conn, world):
    v = add_vehicle(conn, world, "B HD 4")
    hold = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(26),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )
    res = holds.convert_hold(
        conn,
        hold_id=hold.id,
        customer_id=world.alice.id,
        converted_by=world.agent.id,
        reference="RA-1001",
    )
    assert (res.id, res.kind, res.customer_name, res.reference, res.expires_at) == (
        hold.id,
        "reservation",
        "Alice Schmidt",
        "RA-1001",
        None,
    )
    assert holds.list_holds(conn) == []
    with pytest.raises(HoldConverted, match=f"hold #{hold.id} is already booked: reservation"):
        holds.release_hold(conn, hold_id=hold.id, released_by=world.agent.id)


def test_release_frees_the_car_at_once(conn, world):
    v = add_vehicle(conn, world, "B HD 5")
    hold = holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(26),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )
    assert [h.id for h in holds.list_holds(conn, held_by=world.agent.id)] == [hold.id]
    holds.release_hold(conn, hold_id=hold.id, released_by=world.agent.id)
    assert _search(conn, world, world.at(2), world.at(26)) == ["B HD 5"]


def test_hold_validates_its_input(conn, world):
    v = add_vehicle(conn, world, "B HD 6")
    with pytest.raises(InvalidInput, match="ends before it starts"):
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(5),
            end=world.at(2),
            location_id=world.ber.id,
            held_by=world.agent.id,
        )
    with pytest.raises(InvalidInput, match="no time zone"):
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(2).replace(tzinfo=None),
            end=world.at(5),
            location_id=world.ber.id,
            held_by=world.agent.id,
        )
    with pytest.raises(InvalidInput, match="between 10 seconds and 2 hours"):
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(2),
            end=world.at(5),
            location_id=world.ber.id,
            held_by=world.agent.id,
            ttl=timedelta(hours=5),
        )
    with pytest.raises(NotAvailable, match="will be at BER1, not MUC1"):
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(2),
            end=world.at(5),
            location_id=world.muc.id,
            held_by=world.agent.id,
        )


def test_overdue_car_cannot_be_held(conn, world):
    v = add_vehicle(conn, world, "B HD 7")
    from db import blocks

    res = blocks.insert_block(
        conn,
        vehicle_id=v.id,
        kind="reservation",
        start=world.at(-30),
        end=world.at(-5),
        start_location_id=world.ber.id,
        end_location_id=world.ber.id,
        created_by=world.agent.id,
        customer_id=world.bob.id,
    )
    rentals.pick_up(conn, block_id=res.id, handed_over_by=world.agent.id, at=world.at(-30))
    with pytest.raises(NotAvailable, match="not back yet"):
        holds.place_hold(
            conn,
            vehicle_id=v.id,
            start=world.at(48),
            end=world.at(50),
            location_id=world.ber.id,
            held_by=world.agent.id,
        )
    assert _search(conn, world, world.at(48), world.at(50)) == []


def _anna_holds(conn, world, plate: str):
    v = add_vehicle(conn, world, plate)
    return holds.place_hold(
        conn,
        vehicle_id=v.id,
        start=world.at(2),
        end=world.at(26),
        location_id=world.ber.id,
        held_by=world.agent.id,
    )


def _state(conn, block_id: int) -> tuple[str, str]:
    row = conn.execute(text("SELECT kind, state FROM blocks WHERE id = :id"), {"id": block_id})
    return tuple(row.one())


def test_only_the_holder_books_or_extends_their_hold_others_are_told_whose_it_is(conn, world):
    hold = _anna_holds(conn, world, "B HO 1")
    attempts = {
        "book by Ben": lambda: holds.convert_hold(
            conn, hold_id=hold.id, customer_id=world.bob.id, converted_by=world.agent2.id
        ),
        "book by a manager": lambda: holds.convert_hold(
            conn, hold_id=hold.id, customer_id=world.bob.id, converted_by=world.manager.id
        ),
        "extend by Ben": lambda: holds.extend_hold(
            conn, hold_id=hold.id, extended_by=world.agent2.id
        ),
    }
    for what, attempt in attempts.items():
        with pytest.raises(HoldTaken) as err:
            attempt()
        doing = "extend" if what.startswith("extend") else "book"
        assert err.value.message.startswith(f"hold #{hold.id} on B HO 1 is Anna Agent's until "), (
            what
        )
        assert err.value.message.endswith(f"only they can {doing} it"), what
        assert err.value.details == {
            "holder": {"id": world.agent.id, "username": "anna", "full_name": "Anna Agent"},
            "expires_at": hold.expires_at.isoformat(),
        }, what
    assert _state(conn, hold.id) == ("hold", "active")
    mine = holds.convert_hold(
        conn, hold_id=hold.id, customer_id=world.alice.id, converted_by=world.agent.id
    )
    assert (mine.kind, mine.customer_name) == ("reservation", "Alice Schmidt")


def test_holder_extends_their_hold_from_now(conn, world):
    hold = _anna_holds(conn, world, "B HO 2")
    longer = holds.extend_hold(
        conn, hold_id=hold.id, extended_by=world.agent.id, ttl=timedelta(minutes=45)
    )
    clock = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    assert timedelta(minutes=44) < longer.expires_at - clock <= timedelta(minutes=45)
    assert (longer.kind, longer.state, longer.start, longer.end) == (
        "hold",
        "active",
        hold.start,
        hold.end,
    )
    [event] = audit.availability_changes(conn, vehicle_id=hold.vehicle_id, limit=1)
    assert (event.kind, event.actor_id) == ("hold_extended", world.agent.id)
    with pytest.raises(InvalidInput, match="between 10 seconds and 2 hours"):
        holds.extend_hold(conn, hold_id=hold.id, extended_by=world.agent.id, ttl=timedelta(0))


def test_agent_releasing_someone_elses_hold_is_told_whose_it_is(conn, world):
    hold = _anna_holds(conn, world, "B HO 3")
    with pytest.raises(HoldTaken) as err:
        holds.release_hold(conn, hold_id=hold.id, released_by=world.agent2.id, reason="mine now")
    assert "is Anna Agent's until" in err.value.message
    assert err.value.hint.startswith("ask Anna Agent, or a manager")
    assert err.value.details["holder"]["username"] == "anna"
    assert _state(conn, hold.id) == ("hold", "active")


def test_manager_releases_someone_elses_hold_with_a_reason_in_the_audit_trail(conn, world):
    hold = _anna_holds(conn, world, "B HO 4")
    for missing in (None, "", "   "):
        with pytest.raises(InvalidInput) as err:
            holds.release_hold(conn, hold_id=hold.id, released_by=world.manager.id, reason=missing)
        assert err.value.field == "reason"
        assert "a reason is needed to release Anna Agent's hold" in err.value.message
    assert _state(conn, hold.id) == ("hold", "active")

    released = holds.release_hold(
        conn, hold_id=hold.id, released_by=world.manager.id, reason=" customer walked out "
    )

    assert released.state == "cancelled"
    assert _search(conn, world, world.at(2), world.at(26)) == ["B HO 4"]
    [event] = [
        e
        for e in audit.availability_changes(conn, user_id=world.manager.id)
        if e.payload.get("id") == hold.id
    ]
    assert (event.kind, event.actor_name) == ("hold_released", "Maria Manager")
    assert event.payload["reason"] == "customer walked out"
    assert event.payload["released_by"]["full_name"] == "Maria Manager"
    assert event.payload["holder"] == {
        "id": world.agent.id,
        "username": "anna",
        "full_name": "Anna Agent",
    }


def test_releasing_your_own_hold_needs_no_reason_and_stays_a_cancel(conn, world):
    hold = _anna_holds(conn, world, "B HO 5")
    holds.release_hold(conn, hold_id=hold.id, released_by=world.agent.id)
    [event] = audit.availability_changes(conn, vehicle_id=hold.vehicle_id, limit=1)
    assert (event.kind, event.payload["reason"]) == ("hold_cancelled", "hold released")


def test_second_book_of_a_converted_hold_names_the_reservation_it_became(conn, world):
    hold = _anna_holds(conn, world, "B HO 6")
    first = holds.convert_hold(
        conn,
        hold_id=hold.id,
        customer_id=world.alice.id,
        converted_by=world.agent.id,
        reference="RA-7",
    )
    with pytest.raises(HoldConverted) as err:
        holds.convert_hold(
            conn, hold_id=hold.id, customer_id=world.alice.id, converted_by=world.agent.id
        )
    assert err.value.message.startswith(
        f"hold #{hold.id} is already booked: reservation #{hold.id} RA-7 for Alice Schmidt"
    )
    assert err.value.details["reservation"] == first.model_dump(mode="json")
    # A booking that never was a hold is still the wrong id, not a repeated click.
    direct = rentals.reserve(
        conn,
        vehicle_id=add_vehicle(conn, world, "B HO 7").id,
        start=world.at(2),
        end=world.at(6),
        pickup_location_id=world.ber.id,
        customer_id=world.bob.id,
        booked_by=world.agent.id,
    )
    with pytest.raises(InvalidInput, match="is a reservation, not a hold"):
        holds.convert_hold(
            conn, hold_id=direct.id, customer_id=world.bob.id, converted_by=world.agent.id
        )


@pytest.mark.slow
def test_twenty_clerks_racing_for_one_car_exactly_one_wins(committed):
    engine = committed
    with engine.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, "B RACE 1")
    barrier = threading.Barrier(20)
    results: list[object] = []
    lock = threading.Lock()

    def clerk(i: int) -> None:
        barrier.wait()
        try:
            with engine.begin() as c:
                hold = holds.place_hold(
                    c,
                    vehicle_id=car.id,
                    start=world.at(2 + i % 5),
                    end=world.at(30 + i % 7),
                    location_id=world.ber.id,
                    held_by=world.agent.id if i % 2 else world.agent2.id,
                )
            outcome: object = hold
        except BookingConflict as exc:
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=clerk, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [r for r in results if not isinstance(r, BookingConflict)]
    losers = [r for r in results if isinstance(r, BookingConflict)]
    assert len(results) == 20 and len(winners) == 1 and len(losers) == 19
    assert all(f"hold #{winners[0].id}" in e.message for e in losers)
    with engine.begin() as c:
        live = c.execute(text("SELECT count(*) FROM blocks WHERE state = 'active'")).scalar()
    assert live == 1


@pytest.mark.slow
def test_twenty_concurrent_reservations_on_one_car_exactly_one_commits(committed):
    engine = committed
    with engine.begin() as c:
        world = build_world(c)
        car = add_vehicle(c, world, "B RACE 2")
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def book(i: int) -> None:
        barrier.wait()
        try:
            with engine.begin() as c:
                rentals.reserve(
                    c,
                    vehicle_id=car.id,
                    start=world.at(10 + i),
                    end=world.at(40 + i),
                    pickup_location_id=world.ber.id,
                    customer_id=world.alice.id,
                    booked_by=world.agent.id,
                )
            outcomes.append("booked")
        except BookingConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=book, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["booked"] + ["conflict"] * 19
