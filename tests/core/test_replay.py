"""replay(): the past from the ring or a store, then live events, with no gap and no duplicate."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import reactivex

from rxbus import Event, EventBus
from rxbus.topics import matches


def test_replay_without_live_emits_the_ring_and_completes() -> None:
    with EventBus() as bus:
        for i in range(5):
            bus.publish("hook.tool" if i % 2 else "cli.exit", {"i": i})
        got: list[int] = []
        done: list[bool] = []
        bus.replay("hook.*").subscribe(
            lambda e: got.append(e.data["i"]), on_completed=lambda: done.append(True)
        )
        assert got == [1, 3] and done == [True]


def test_replay_since_a_time_or_an_id() -> None:
    with EventBus() as bus:
        events = [bus.publish("a", {"i": i}) for i in range(6)]
        by_time: list[Event] = []
        bus.replay(since=events[3].timestamp).subscribe(by_time.append)
        by_id: list[Event] = []
        bus.replay(since=events[4].id).subscribe(by_id.append)
        assert by_time[-3:] == events[3:] and by_time[0].timestamp >= events[3].timestamp
        assert by_id == events[4:]


class ListStore:
    """A minimal ReplayStore that records how it was called."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.flushed = 0

    def flush(self, timeout: float = 5.0) -> None:
        self.flushed += 1

    def query(
        self, pattern: str = "**", since: Any = None, until: Any = None, limit: int | None = None
    ) -> Iterable[Event]:
        return [
            e
            for e in self.events
            if matches(pattern, e.topic) and (since is None or e.timestamp >= since)
        ]


def test_replay_from_a_store_flushes_it_first() -> None:
    old = [Event(topic="a.b", data={"i": i}) for i in range(3)]
    store = ListStore(old)
    with EventBus() as bus:
        got: list[Event] = []
        bus.replay("a.*", store=store).subscribe(got.append)
        assert got == old and store.flushed == 1


def test_live_replay_under_concurrent_publishing_has_no_gap_and_no_duplicate() -> None:
    """Four threads publish while replays with live=True start; each replay must see every
    event from its first one onward exactly once, in each producer's order.

    Just before each replay starts, each producer is let publish ``BURST`` more events, so every
    replay starts while all four are publishing. (Producers that ran free until the last replay
    had started published 700,000 events each on a loaded machine, each replay longer than the
    one before: past the 1,000,000-event ring, which then dropped the oldest and failed the
    test for a reason of its own, after a minute.)"""
    burst, replay_count = 2_000, 10
    bus = EventBus(history=1_000_000)
    turn = threading.Condition()
    allowed = [burst]  # events each producer may have published so far
    done = threading.Event()
    counts = [0] * 4

    def may_publish(n: int) -> bool:
        """Wait (60 s at most) until event ``n`` is allowed; False once the test is done."""
        with turn:
            if not turn.wait_for(lambda: n < allowed[0] or done.is_set(), timeout=60):
                raise AssertionError(f"producer held at {n} for 60 s")
            return n < allowed[0]

    def produce(k: int) -> None:
        n = 0
        while may_publish(n):
            bus.publish("load.x", {"k": k, "n": n})
            n += 1
        counts[k] = n

    producers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in producers:
        t.start()
    replays: list[list[Event]] = []
    subscriptions = []
    for _ in range(replay_count):
        got: list[Event] = []
        replays.append(got)
        with turn:
            allowed[0] += burst
            turn.notify_all()
        subscriptions.append(bus.replay("load.*", live=True).subscribe(got.append))
    with turn:
        allowed[0] += burst  # publishing goes on after the last replay has started
        done.set()
        turn.notify_all()
    for t in producers:
        t.join()
    assert counts == [(replay_count + 2) * burst] * 4
    assert bus.close(timeout=30) == []
    for got in replays:
        ids = [e.id for e in got]
        assert len(ids) == len(set(ids)), "duplicate at the seam"
        for k in range(4):
            ns = [e.data["n"] for e in got if e.data["k"] == k]
            # the ring held everything, so each replay has each producer's full history
            assert ns == list(range(counts[k])), f"gap or reorder for producer {k}"


def test_live_replay_from_a_store_joins_the_seam_by_id() -> None:
    """Events in both the store and the live buffer are emitted once."""
    with EventBus() as bus:
        store_events: list[Event] = []
        bus.subscribe(store_events.append, name="store")
        store = ListStore(store_events)
        first = [bus.publish("s.x", {"i": i}) for i in range(3)]
        got: list[Event] = []
        bus.replay(
            "s.*",
            store=store,
            live=True,
            since=datetime.min.replace(tzinfo=first[0].timestamp.tzinfo),
        ).subscribe(got.append)
        more = [bus.publish("s.x", {"i": i}) for i in range(3, 6)]
        assert got == first + more


def test_an_old_event_in_flight_at_the_seam_is_emitted_once() -> None:
    """An event created long before it is published (relayed from elsewhere) and still being
    delivered when a replay subscribes is in the ring and reaches the replay live: once."""
    from datetime import UTC, timedelta

    bus = EventBus()
    inside = threading.Event()
    release = threading.Event()

    def slow(e: Event) -> None:
        inside.set()
        release.wait(10)

    bus.subscribe(slow, topic="t.*", name="slow")
    old = Event(topic="t.x", data={"n": 1}, timestamp=datetime.now(UTC) - timedelta(minutes=5))
    publisher = threading.Thread(target=bus.publish, args=(old,))
    publisher.start()
    assert inside.wait(10)  # the event is in the ring; its publisher is inside the slow sink
    seen: list[str] = []
    bus.replay("t.*", live=True).subscribe(lambda e: seen.append(e.id))
    release.set()
    publisher.join(10)
    assert seen.count(old.id) == 1
    bus.close()


def test_a_past_event_that_also_arrived_live_keeps_its_producers_order() -> None:
    """The seam emits a past event in its place even when its live copy was buffered first: a
    later past event of the same producer must not overtake it (seen under load: 811 before
    810), and each event is still emitted once."""
    from rxbus.bus._replay import Seam

    got: list[int] = []
    seam = Seam(reactivex.Observer(lambda e: got.append(e.data["n"])), lambda letter: None)
    e = [Event(topic="load.x", data={"n": n}) for n in range(4)]
    seam.emit_past(e[0], remember=True)
    seam.on_next(e[1])  # live copy of 1 arrives while the past is still being emitted
    seam.emit_past(e[1], remember=True)
    seam.emit_past(e[2], remember=True)  # 2's live copy is still on its way
    seam.on_next(e[2])
    seam.on_next(e[3])  # only live
    seam.go_live()
    seam.on_next(e[2])  # a late live copy after the drain: still skipped
    assert got == [0, 1, 2, 3]
