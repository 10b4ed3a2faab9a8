"""Sync delivery never deadlocks: consumers that publish to each other from many threads."""

from __future__ import annotations

import threading
from typing import Any

from reactivex import operators as rx

from rxbus import BusClosedError, Event, EventBus, Overflow, PublishLoopError
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


class _Held:
    """A sync consumer on ``a.*`` whose sink (this object) records ``(n, thread name)`` of each
    event and holds the events named in ``holds`` inside until ``release(n)``: a thread made
    busy in the sink on purpose, for the interleavings below (every wait has a deadline, none
    is a sleep). ``completed`` names the thread that completed the sink."""

    def __init__(self, *holds: int) -> None:
        self.bus = EventBus(history=0)
        self.got: list[tuple[int, str]] = []
        self.completed: list[str] = []
        self._gates = {n: (threading.Event(), threading.Event()) for n in holds}
        self.c = self.bus.subscribe(self, topic="a.*")

    def on_completed(self) -> None:
        self.completed.append(threading.current_thread().name)

    def on_next(self, e: Event) -> None:
        n = e.data["n"]
        self.got.append((n, threading.current_thread().name))
        gate = self._gates.get(n)
        if gate is not None:
            gate[0].set()
            gate[1].wait(10)

    def start(self, name: str, n: int) -> threading.Thread:
        """Thread ``name`` publishes event ``n`` (returns at once)."""
        t = threading.Thread(target=self.bus.publish, args=("a.x", {"n": n}), name=name)
        t.start()
        return t

    def inside(self, n: int) -> None:
        """Wait until a thread holds event ``n`` inside the sink."""
        assert self._gates[n][0].wait(10), f"event {n} never reached the sink"

    def release(self, n: int) -> None:
        self._gates[n][1].set()

    def counts(self) -> tuple[int, int, int, int]:
        s = self.c.stats
        return (s.received, s.delivered, s.queued, s.dropped)


def _a_busy_in_its_sink() -> tuple[_Held, threading.Thread, Any]:
    """Thread A inside the sink with event 0, held there until ``let_a_leave()``, which returns
    once A's publish has returned. Returns (held, A, let_a_leave)."""
    held = _Held(0)
    a = held.start("A", 0)
    held.inside(0)

    def let_a_leave() -> None:
        held.release(0)
        a.join(10)

    return held, a, let_a_leave


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
    held, a, let_a_leave = _a_busy_in_its_sink()
    held.c._queue = _PutHook(held.c._queue, let_a_leave)
    held.bus.publish("a.x", {"n": 1})
    assert not a.is_alive()
    me = threading.current_thread().name
    assert held.got == [(0, "A"), (1, me)]
    assert held.counts() == (2, 2, 0, 0)


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
    held, a, let_a_leave = _a_busy_in_its_sink()
    held.c._lock = _ReleaseHook(held.c._lock, threading.current_thread(), let_a_leave)
    held.bus.publish("a.x", {"n": 1})
    assert not a.is_alive()
    held.bus.publish("a.x", {"n": 2})
    me = threading.current_thread().name
    assert held.got == [(0, "A"), (1, "A"), (2, me)]
    assert held.counts() == (3, 3, 0, 0)


class _TokenHook:
    """Wraps a consumer's emit token: the first look at it (``if token``, ``at="look"``) or the
    first ``pop`` of it (``at="pop"``) by ``thread`` runs ``hook`` just after (a look returns
    what it saw before the hook), so another thread acts between that step and the next (an
    interleaving made on purpose, not waited for)."""

    def __init__(self, token: Any, thread: threading.Thread, hook: Any, at: str = "look") -> None:
        self.token, self.thread, self.hook, self.at = token, thread, hook, at

    def _step(self, at: str) -> None:
        if at == self.at and threading.current_thread() is self.thread and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()

    def __bool__(self) -> bool:
        there = bool(self.token)
        self._step("look")
        return there

    def pop(self) -> Any:
        item = self.token.pop()
        self._step("pop")
        return item

    def append(self, item: Any) -> None:
        self.token.append(item)


def test_a_publisher_that_loses_the_token_after_looking_hands_its_event_over() -> None:
    """This thread sees the consumer idle, and thread A takes the emit token before this thread
    can (A then stays inside the sink with event 0). This thread hands event 1 over and its
    publish returns; A delivers event 1 after event 0 before its own publish returns."""
    held = _Held(0)
    threads: list[threading.Thread] = []

    def a_takes_it() -> None:
        threads.append(held.start("A", 0))
        held.inside(0)

    held.c._token = _TokenHook(held.c._token, threading.current_thread(), a_takes_it)
    held.bus.publish("a.x", {"n": 1})
    assert held.got == [(0, "A")] and held.counts() == (2, 0, 1, 0)  # 0 in flight, 1 queued
    held.release(0)
    threads[0].join(10)
    assert not threads[0].is_alive()
    assert held.got == [(0, "A"), (1, "A")]
    assert held.counts() == (2, 2, 0, 0)


def test_a_hander_that_loses_the_token_after_looking_leaves_the_work_to_its_taker() -> None:
    """Thread A leaves the sink (event 0) and finds event 1 handed over; between A's look at the
    token and its ``pop``, thread B publishes event 2, finds work handed over, queues its event
    behind it and takes the token to deliver both (B stays inside with event 1). A's ``pop``
    fails and A leaves: the work is B's, which delivers 1 then 2."""
    held = _Held(0, 1)
    a = held.start("A", 0)
    held.inside(0)
    held.bus.publish("a.x", {"n": 1})  # handed over to A
    assert held.counts() == (2, 0, 1, 0)
    threads: list[threading.Thread] = []

    def b_takes_it() -> None:
        threads.append(held.start("B", 2))
        held.inside(1)

    held.c._token = _TokenHook(held.c._token, a, b_takes_it)
    held.release(0)
    a.join(10)
    assert not a.is_alive()  # A left while B holds event 1
    assert held.got == [(0, "A"), (1, "B")] and held.counts() == (3, 1, 1, 0)
    held.release(1)
    threads[0].join(10)
    assert not threads[0].is_alive()
    assert held.got == [(0, "A"), (1, "B"), (2, "B")]
    assert held.counts() == (3, 3, 0, 0)


def test_a_close_while_a_publisher_holds_the_token_a_moment_still_ends_the_consumer() -> None:
    """This thread takes the emit token to deliver event 0; before it looks at whether the
    consumer still accepts, thread C closes it (C's ending is left to the token's holder). This
    thread refuses event 0 (dropped, a dead letter) and gives the token back: the ending is
    still run, and the sink completed."""
    held = _Held()

    def c_closes_it() -> None:
        c = threading.Thread(target=held.c.begin_close, name="C")
        c.start()
        c.join(10)
        assert not c.is_alive()

    held.c._token = _TokenHook(held.c._token, threading.current_thread(), c_closes_it, at="pop")
    held.bus.publish("a.x", {"n": 0})
    me = threading.current_thread().name
    assert held.got == [] and held.completed == [me] and held.c.done
    assert held.counts() == (1, 0, 0, 1)
    assert [type(d.error) for d in held.bus.recent_dead_letters()] == [BusClosedError]
