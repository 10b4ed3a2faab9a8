"""Sync delivery never deadlocks: consumers that publish to each other from many threads."""

from __future__ import annotations

import threading

from rxbus import Event, EventBus, PublishLoopError
from rxbus.consumer import MAX_PUBLISH_DEPTH

RUNS = 100
PER_THREAD = 200


def _ping_pong_run() -> tuple[bool, dict[str, int], dict[str, int]]:
    """Consumer A (on ``a.*``) republishes to ``b.*`` and B back to ``a.*`` once; two threads
    publish to both at once. Returns (finished, stats of A, stats of B)."""
    bus = EventBus(history=0)
    inside = {"a": 0, "b": 0}
    overlap = []

    def make(mine: str, other: str):
        def sink(e: Event) -> None:
            inside[mine] += 1
            if inside[mine] != 1:
                overlap.append(mine)
            if e.data["hop"] == 0:
                bus.publish(f"{other}.x", {"hop": 1})
            inside[mine] -= 1

        return sink

    a = bus.subscribe(make("a", "b"), topic="a.*", name="A")
    b = bus.subscribe(make("b", "a"), topic="b.*", name="B")
    barrier = threading.Barrier(2)

    def produce(first: str) -> None:
        barrier.wait()
        for _ in range(PER_THREAD):
            bus.publish(f"{first}.x", {"hop": 0})

    threads = [threading.Thread(target=produce, args=(t,), daemon=True) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    finished = not any(t.is_alive() for t in threads)
    assert not overlap, "on_next ran concurrently"
    bus.close()
    return finished, a.stats.as_dict(), b.stats.as_dict()


def test_two_sync_consumers_that_publish_to_each_other_never_hang() -> None:
    """100 runs: 0 hangs, on_next never concurrent, every event delivered exactly once."""
    hangs = 0
    for _ in range(RUNS):
        finished, sa, sb = _ping_pong_run()
        hangs += not finished
        for s in (sa, sb):
            # each consumer gets its own producer's PER_THREAD events and as many hops
            assert s["received"] == s["delivered"] == 2 * PER_THREAD, s
            assert s["failed"] == s["dropped"] == s["queued"] == 0
    assert hangs == 0


def test_each_producers_order_is_kept_per_consumer() -> None:
    bus = EventBus(history=0)
    got: list[tuple[int, int]] = []
    bus.subscribe(lambda e: got.append((e.data["p"], e.data["i"])), name="ordered")
    barrier = threading.Barrier(4)

    def produce(p: int) -> None:
        barrier.wait()
        for i in range(2_000):
            bus.publish("o.x", {"p": p, "i": i})

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    bus.close()
    assert len(got) == 8_000
    for p in range(4):
        assert [i for q, i in got if q == p] == list(range(2_000))


def test_a_consumer_that_publishes_to_itself_without_end_is_stopped_with_a_dead_letter() -> None:
    """The loop ends after MAX_PUBLISH_DEPTH rounds: the next event is dropped with a
    PublishLoopError dead letter, and the publisher returns."""
    bus = EventBus(history=0)

    def echo(e: Event) -> None:
        bus.publish("loop.x", {"n": e.data["n"] + 1})

    c = bus.subscribe(echo, topic="loop.*", name="echo")
    bus.publish("loop.x", {"n": 0})
    s = c.stats
    letters = bus.recent_dead_letters()
    assert s.dropped == 1 and s.dropped == s.dead_lettered == len(letters)
    assert isinstance(letters[0].error, PublishLoopError)
    assert letters[0].event.data["n"] == MAX_PUBLISH_DEPTH + 1
    assert s.received == s.delivered + s.dropped == MAX_PUBLISH_DEPTH + 2
    # Bus-wide too (issue 12 found 6 failures but 1 dead letter): each failure or drop is one.
    m = bus.metrics()
    assert m["failed"] + m["dropped"] == m["dead_lettered"] == len(letters) == 1
    bus.close()


def test_a_ring_of_two_consumers_is_stopped_the_same_way() -> None:
    bus = EventBus(history=0)
    bus.subscribe(lambda e: bus.publish("r.b", {}), topic="r.a", name="A")
    bus.subscribe(lambda e: bus.publish("r.a", {}), topic="r.b", name="B")
    bus.publish("r.a")
    m = bus.metrics()
    assert m["dropped"] == m["dead_lettered"] == 1
    assert all(isinstance(d.error, PublishLoopError) for d in bus.recent_dead_letters())
    bus.close()


def test_finite_republishing_is_not_a_loop() -> None:
    """A consumer that derives a few events from each one is ordinary: nothing fails."""
    bus = EventBus(history=0)
    seen: list[int] = []

    def derive(e: Event) -> None:
        seen.append(e.data["n"])
        if e.data["n"] < 50:
            bus.publish("d.x", {"n": e.data["n"] + 1})

    bus.subscribe(derive, topic="d.*")
    bus.publish("d.x", {"n": 0})
    assert seen == list(range(51))
    assert bus.metrics()["dead_lettered"] == 0
    bus.close()
