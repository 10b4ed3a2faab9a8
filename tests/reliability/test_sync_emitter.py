"""Sync delivery never deadlocks: consumers that publish to each other from many threads."""

from __future__ import annotations

import threading
from typing import Any

from reactivex import operators as rx

from rxbus import Event, EventBus, Overflow, PublishLoopError
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


class TestRunsHere:
    """``runs_here`` of a sync consumer (what ``close`` and ``dispose`` ask from inside a sink)
    is read from the calling thread's stack: true only in the thread delivering to it."""

    def test_true_inside_its_own_sink_and_in_a_sink_it_publishes_to(self) -> None:
        bus = EventBus(history=0)
        seen: list[tuple[str, bool, bool]] = []
        a = b = None

        def sink_a(e: Event) -> None:
            assert a is not None and b is not None
            seen.append(("a", a.runs_here(), b.runs_here()))
            bus.publish("b.x", {})

        def sink_b(e: Event) -> None:
            assert a is not None and b is not None
            seen.append(("b", a.runs_here(), b.runs_here()))

        a = bus.subscribe(sink_a, topic="a.*")
        b = bus.subscribe(sink_b, rx.map(lambda e: e), topic="b.*")  # a chain: the other push
        bus.publish("a.x", {})
        assert seen == [("a", True, False), ("b", True, True)]
        assert not a.runs_here() and not b.runs_here()

    def test_false_in_another_thread_while_it_delivers(self) -> None:
        bus = EventBus(history=0)
        entered, release = threading.Event(), threading.Event()
        c = bus.subscribe(lambda e: (entered.set(), release.wait(10)), topic="a.*")
        worker = threading.Thread(target=bus.publish, args=("a.x", {}))
        worker.start()
        assert entered.wait(10)
        try:
            assert c.stats.received == 1 and not c.runs_here()
        finally:
            release.set()
            worker.join(10)
        assert not worker.is_alive() and c.stats.delivered == 1

    def test_true_in_user_code_run_by_a_nested_hand_over(self) -> None:
        """The sink publishes to its own topic twice with a queue of one and Overflow.ERROR:
        the second hand-over overflows and reports a dead letter from this very thread, past a
        ``push`` that only handed over; the outer ``push`` is still delivering, so True."""
        bus = EventBus(history=0)
        asked: list[bool] = []
        c = None

        def sink(e: Event) -> None:
            if e.data["n"] == 0:
                bus.publish("a.x", {"n": 1})
                bus.publish("a.x", {"n": 2})

        c = bus.subscribe(sink, topic="a.*", queue_size=1, overflow=Overflow.ERROR)
        bus.dead_letters.subscribe(lambda letter: asked.append(c.runs_here()))
        bus.publish("a.x", {"n": 0})
        assert asked and all(asked), asked
        assert c.stats.dead_lettered >= 1


def _a_busy_in_its_sink() -> tuple[EventBus, Any, list[tuple[int, str]], threading.Thread, Any]:
    """A sync consumer whose thread A is inside the sink with event 0, held there until
    ``let_a_leave()``, which returns once A's publish has returned (A leaves without the lock).
    Returns (bus, consumer, [(n, thread name) delivered], A, let_a_leave)."""
    bus = EventBus(history=0)
    inside, go = threading.Event(), threading.Event()
    got: list[tuple[int, str]] = []

    def sink(e: Event) -> None:
        got.append((e.data["n"], threading.current_thread().name))
        if e.data["n"] == 0:
            inside.set()
            go.wait(10)

    c = bus.subscribe(sink, topic="a.*")
    a = threading.Thread(target=bus.publish, args=("a.x", {"n": 0}), name="A")
    a.start()
    assert inside.wait(10)

    def let_a_leave() -> None:
        go.set()
        a.join(10)

    return bus, c, got, a, let_a_leave


class _PutHook:
    """Wraps a consumer's queue: the first ``put`` runs ``hook`` before it (an interleaving
    made on purpose, not waited for)."""

    def __init__(self, queue: Any, hook: Any) -> None:
        self.queue, self.hook = queue, hook

    def put(self, item: Any, can_wait: bool) -> Any:
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return self.queue.put(item, can_wait)

    def __len__(self) -> int:
        return len(self.queue)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)


def test_a_hand_over_the_emitter_left_without_seeing_is_delivered_by_the_hander() -> None:
    """Thread A is inside the sink; this thread, holding the consumer's lock, has seen A there
    and is handing event 1 over when A leaves (A finds nothing handed over yet). Nobody else
    will deliver event 1, so this thread does, after event 0, and the consumer is idle again."""
    bus, c, got, a, let_a_leave = _a_busy_in_its_sink()
    c._queue = _PutHook(c._queue, let_a_leave)  # type: ignore[attr-defined]
    bus.publish("a.x", {"n": 1})
    assert not a.is_alive()
    me = threading.current_thread().name
    assert got == [(0, "A"), (1, me)]
    s = c.stats
    assert (s.received, s.delivered, s.queued, s.dropped) == (2, 2, 0, 0)


class _ReleaseHook:
    """Wraps a consumer's lock: the first release by ``thread`` runs ``hook`` just after it (an
    interleaving made on purpose, not waited for)."""

    def __init__(self, lock: Any, thread: threading.Thread, hook: Any) -> None:
        self.lock, self.thread, self.hook = lock, thread, hook

    def acquire(self, *args: Any) -> bool:
        return bool(self.lock.acquire(*args))

    def release(self) -> None:
        self.lock.release()
        if threading.current_thread() is self.thread and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_the_emitter_leaving_just_after_a_hand_over_delivers_it_once_in_order() -> None:
    """Thread A is inside the sink; this thread hands event 1 over, and A leaves between the
    hand-over's release of the lock and its look at whether A is still there. Event 1 is
    delivered once, after event 0, and the consumer is idle again (event 2 is delivered by
    this thread itself)."""
    bus, c, got, a, let_a_leave = _a_busy_in_its_sink()
    c._lock = _ReleaseHook(c._lock, threading.current_thread(), let_a_leave)  # type: ignore[attr-defined]
    bus.publish("a.x", {"n": 1})
    assert not a.is_alive()
    bus.publish("a.x", {"n": 2})
    me = threading.current_thread().name
    assert got == [(0, "A"), (1, "A"), (2, me)]
    s = c.stats
    assert (s.received, s.delivered, s.queued, s.dropped) == (3, 3, 0, 0)
