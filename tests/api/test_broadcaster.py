"""The per-process fan-out: bounded queues, reload for stuck clients, filters, handover."""

from __future__ import annotations

from datetime import UTC, datetime

from api.streams import Broadcaster, follow, sse_frame
from tests.aio import run_async


def _message(seq: int, vehicle_id: int = 1, location_id: int = 1) -> dict:
    return {
        "type": "event",
        "seq": seq,
        "kind": "status_changed",
        "vehicle_id": vehicle_id,
        "location_id": location_id,
        "actor_id": None,
        "at": datetime.now(UTC).isoformat(),
        "data": {},
    }


def _broadcaster(engine, queue_size: int = 1000) -> Broadcaster:
    b = Broadcaster(engine, "postgresql:///unused", queue_size)
    b.last_seq = 100
    return b


def test_a_stuck_client_is_told_to_reload_and_never_holds_more_than_its_queue(engine):
    async def run() -> list[dict]:
        b = _broadcaster(engine, queue_size=5)
        stream = follow(b, since=None, location_id=None, vehicle_id=None, heartbeat=30)
        hello = await anext(stream)
        sub = next(iter(b.subscribers))
        b.publish([_message(s) for s in range(101, 120)])  # 19 events, nobody reading
        assert sub.queue.qsize() <= 5
        got = [hello, await anext(stream)]
        await stream.aclose()
        assert b.subscribers == set()  # unsubscribed when the stream ends
        return got

    hello, reload = run_async(run())
    assert hello == {"type": "hello", "seq": 100, "heartbeat": 30}
    assert reload["type"] == "reload" and reload["seq"] == 119


def test_fast_clients_keep_receiving_while_a_slow_one_overflows(engine):
    async def run() -> list[int]:
        b = _broadcaster(engine, queue_size=3)
        slow = follow(b, since=None, location_id=None, vehicle_id=None, heartbeat=30)
        fast = follow(b, since=None, location_id=None, vehicle_id=None, heartbeat=30)
        await anext(slow)
        await anext(fast)
        seen = []
        for start in range(101, 113, 2):
            b.publish([_message(start), _message(start + 1)])
            seen += [(await anext(fast))["seq"], (await anext(fast))["seq"]]
        await slow.aclose()
        await fast.aclose()
        return seen

    assert run_async(run()) == list(range(101, 113))


def test_location_filter_and_heartbeat(engine):
    async def run() -> list[dict]:
        b = _broadcaster(engine)
        stream = follow(b, since=None, location_id=2, vehicle_id=None, heartbeat=0.05)
        await anext(stream)
        b.publish([_message(101, location_id=1), _message(102, location_id=2)])
        out = [await anext(stream), await anext(stream)]
        await stream.aclose()
        return out

    event, beat = run_async(run())
    assert event["seq"] == 102
    assert beat["type"] == "heartbeat" and beat["seq"] == 102


def test_sse_frames_carry_the_sequence_as_id():
    assert sse_frame(_message(7)).startswith("id: 7\ndata: ")
    assert sse_frame({"type": "heartbeat", "seq": 7}).startswith("event: heartbeat\n")
