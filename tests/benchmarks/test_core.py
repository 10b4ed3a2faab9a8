"""Core bus benchmarks, each measured next to its floor in the same run (issue 2, points 2, 3, 9).

Every round runs a batch of ``BATCH`` operations, identically for the subject and its floor, and
every benchmark checks that its consumers saw exactly the expected number of events, so a broken
bus cannot post a fast number. Ratios (subject / floor) are printed at the end of the session by
``tests/benchmarks/conftest.py``; no timing is asserted.

- (a) ``bus.publish(prebuilt_event)`` to 1 and 10 ``sync`` consumers vs ``for cb in callbacks``.
- (b) 20 topics, 40 consumers (20 exact, 20 wildcard) vs a pre-resolved ``dict[topic, list]``.
- (c) ``bus.publish(topic, data)`` (event creation included), 1 consumer, vs (a)'s floor.
- (d) end to end into one ``async`` consumer vs an ``asyncio.Queue`` and one consumer task.
- (e) publish-return latency p50/p99 with 10 ``async`` consumers vs ``put_nowait`` into 10
  ``asyncio.Queue``.
- (f) routing: 1,000 subscribed patterns of which 5 match vs 10 of which 5 match.
- (g) ``Event(...)`` and ``Event._trusted(...)`` vs a dict literal and a tuple of the same fields.

Run measured: ``python -m pytest tests/benchmarks/test_core.py --benchmark-only``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from time import perf_counter_ns
from typing import Any

import pytest

from rxbus import Event, EventBus
from rxbus.event import new_event_id
from rxbus.metrics import percentiles
from rxbus.topics import matches
from tests.benchmarks.conftest import Recorder

BATCH = 1_000  # operations per benchmark round, for subject and floor alike
TOPIC = "bench.one"
DATA = {"n": 1, "tool": "Bash"}


class Tally:
    """A sink that counts what it receives; the floors call the very same method."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def hit(self, _event: object) -> None:
        self.n += 1


class Signal(Tally):
    """A counting sink that resolves ``done`` once it has seen ``target`` events."""

    __slots__ = ("done", "target")

    def __init__(self) -> None:
        super().__init__()
        self.target = -1
        self.done: asyncio.Future[None] | None = None

    def arm(self, loop: asyncio.AbstractEventLoop, more: int) -> asyncio.Future[None]:
        self.target = self.n + more
        self.done = loop.create_future()
        return self.done

    def hit(self, _event: object) -> None:
        self.n += 1
        if self.n == self.target:
            self.done.set_result(None)  # type: ignore[union-attr]


@pytest.fixture
def new_bus() -> Iterator[Callable[[], EventBus]]:
    """Make buses that are closed (and checked to lose nothing) after the test."""
    made: list[EventBus] = []

    def make() -> EventBus:
        made.append(EventBus(name=f"bench{len(made)}"))
        return made[-1]

    yield make
    for b in made:
        assert b.close(timeout=5.0) == []


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A private event loop, driven with ``run_until_complete`` between rounds."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def total(tallies: list[Tally] | list[Signal]) -> int:
    return sum(t.n for t in tallies)


# -- (a) fan-out of a prebuilt event to 1 and 10 sync consumers ----------------------------------


@pytest.mark.parametrize("n", [1, 10])
def test_a_floor_callbacks(bench: Recorder, n: int) -> None:
    """Floor: a plain list of callbacks, each called with the event."""
    event = Event(topic=TOPIC, data=DATA)
    tallies = [Tally() for _ in range(n)]
    callbacks = [t.hit for t in tallies]

    def run() -> None:
        for _ in range(BATCH):
            for cb in callbacks:
                cb(event)

    calls = bench.measure(f"a{n}.floor", run, ops=BATCH)
    assert [t.n for t in tallies] == [calls * BATCH] * n


@pytest.mark.parametrize("n", [1, 10])
def test_a_publish_prebuilt(bench: Recorder, new_bus: Callable[[], EventBus], n: int) -> None:
    """``bus.publish(event)`` to ``n`` sync consumers of the event's exact topic."""
    bus = new_bus()
    event = Event(topic=TOPIC, data=DATA)
    tallies = [Tally() for _ in range(n)]
    for t in tallies:
        bus.subscribe(t.hit, topic=TOPIC)
    publish = bus.publish

    def run() -> None:
        for _ in range(BATCH):
            publish(event)

    calls = bench.measure(f"a{n}.bus", run, ops=BATCH)
    assert [t.n for t in tallies] == [calls * BATCH] * n
    assert all(c.stats.delivered == calls * BATCH for c in bus.consumers)
    bench.compare(
        f"(a) publish prebuilt event, {n} sync consumer{'s' if n > 1 else ''}",
        subject=f"a{n}.bus",
        floor=f"a{n}.floor",
        target=3.0,
    )


# -- (b) 20 topics, 40 consumers (20 exact, 20 wildcard) -----------------------------------------

B_TOPICS = [f"app.s{i:02d}.done" for i in range(20)]
B_PATTERNS = (
    B_TOPICS  # 20 exact
    + [f"app.s{i:02d}.*" for i in range(10)]
    + [f"*.s{i:02d}.done" for i in range(10, 15)]
    + ["app.**", "**", "*.*.done", "app.*.done", "**.done"]  # 20 wildcard
)


def _b_events() -> list[Event]:
    """``BATCH`` prebuilt events cycling over the 20 topics."""
    per_topic = [Event(topic=t, data=DATA) for t in B_TOPICS]
    return [per_topic[i % len(per_topic)] for i in range(BATCH)]


def _b_expected_per_round(events: list[Event]) -> int:
    return sum(sum(matches(p, e.topic) for p in B_PATTERNS) for e in events)


def test_b_floor_resolved_dict(bench: Recorder) -> None:
    """Floor: a dict topic -> list of callbacks, resolved before the run."""
    assert len(B_PATTERNS) == 40
    events = _b_events()
    tallies = [Tally() for _ in B_PATTERNS]
    routes = {
        t: [s.hit for p, s in zip(B_PATTERNS, tallies, strict=True) if matches(p, t)]
        for t in B_TOPICS
    }

    def run() -> None:
        for event in events:
            for cb in routes[event.topic]:
                cb(event)

    calls = bench.measure("b.floor", run, ops=BATCH)
    assert total(tallies) == calls * _b_expected_per_round(events)


def test_b_publish_routed(bench: Recorder, new_bus: Callable[[], EventBus]) -> None:
    """``bus.publish(event)`` over 20 topics to 20 exact and 20 wildcard sync consumers."""
    bus = new_bus()
    events = _b_events()
    tallies = [Tally() for _ in B_PATTERNS]
    for pattern, t in zip(B_PATTERNS, tallies, strict=True):
        bus.subscribe(t.hit, topic=pattern)
    publish = bus.publish

    def run() -> None:
        for event in events:
            publish(event)

    calls = bench.measure("b.bus", run, ops=BATCH)
    expected = _b_expected_per_round(events)
    assert expected > BATCH * 6  # every topic reaches its exact consumer and 5+ wildcards
    assert total(tallies) == calls * expected
    for pattern, t in zip(B_PATTERNS, tallies, strict=True):
        per_round = sum(matches(pattern, e.topic) for e in events)
        assert t.n == calls * per_round, pattern
    bench.compare(
        "(b) 20 topics, 20 exact + 20 wildcard consumers",
        subject="b.bus",
        floor="b.floor",
        target=3.0,
    )


# -- (c) publish(topic, data): event creation included --------------------------------------------


def test_c_publish_topic_data(bench: Recorder, new_bus: Callable[[], EventBus]) -> None:
    """``bus.publish(topic, data)``: validation, size check, Event creation, one sync consumer."""
    bus = new_bus()
    tally = Tally()
    bus.subscribe(tally.hit, topic=TOPIC)
    publish = bus.publish

    def run() -> None:
        for _ in range(BATCH):
            publish(TOPIC, DATA)

    calls = bench.measure("c.bus", run, ops=BATCH, group="a1")
    assert tally.n == calls * BATCH
    last = bus.history(limit=1)[0]
    assert (last.topic, last.type, last.data) == (TOPIC, "one", DATA)
    bench.compare(
        "(c) publish(topic, data) incl. event creation, 1 sync consumer",
        subject="c.bus",
        floor="a1.floor",
        target=6.0,
    )


# -- (d) end to end into one async consumer ------------------------------------------------------


def test_d_floor_asyncio_queue(bench: Recorder, loop: asyncio.AbstractEventLoop) -> None:
    """Floor: ``put_nowait`` into an ``asyncio.Queue`` drained by one task calling the sink."""
    event = Event(topic=TOPIC, data=DATA)
    sink = Signal()
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def consume() -> None:
        while True:
            sink.hit(await queue.get())

    task = loop.create_task(consume())

    async def one_round() -> None:
        done = sink.arm(loop, BATCH)
        put = queue.put_nowait
        for _ in range(BATCH):
            put(event)
        await done

    try:
        calls = bench.measure("d.floor", lambda: loop.run_until_complete(one_round()), ops=BATCH)
    finally:
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    assert sink.n == calls * BATCH


def test_d_publish_async_consumer(bench: Recorder, loop: asyncio.AbstractEventLoop) -> None:
    """``bus.publish(event)`` from inside the loop until one ``async`` consumer saw every event."""
    event = Event(topic=TOPIC, data=DATA)
    sink = Signal()

    async def start() -> EventBus:
        bus = EventBus(name="bench-d")  # created in the loop: its async consumers run here
        bus.subscribe(sink.hit, topic=TOPIC, mode="async")
        return bus

    bus = loop.run_until_complete(start())
    assert bus.loop is loop

    async def one_round() -> None:
        done = sink.arm(loop, BATCH)
        publish = bus.publish
        for _ in range(BATCH):
            publish(event)
        await done

    try:
        calls = bench.measure("d.bus", lambda: loop.run_until_complete(one_round()), ops=BATCH)
    finally:
        assert loop.run_until_complete(bus.aclose()) == []
    assert sink.n == calls * BATCH
    (consumer,) = bus.consumers
    s = consumer.stats
    assert (s.received, s.delivered, s.dropped, s.queued) == (calls * BATCH, calls * BATCH, 0, 0)
    bench.compare(
        "(d) end to end, 1 async consumer",
        subject="d.bus",
        floor="d.floor",
        target=3.0,
    )


# -- (e) publish-return latency with 10 async consumers ------------------------------------------

E_CONSUMERS = 10
E_YIELD_EVERY = 10  # the producer yields to the loop every 10 publishes: consumers then wait


def _latency_round(
    loop: asyncio.AbstractEventLoop,
    sinks: list[Signal],
    publish_one: Callable[[], object],
    samples: list[int],
) -> Coroutine[Any, Any, None]:
    async def one_round() -> None:
        done = [s.arm(loop, BATCH) for s in sinks]
        record = samples.append
        for i in range(BATCH):
            t0 = perf_counter_ns()
            publish_one()
            record(perf_counter_ns() - t0)
            if i % E_YIELD_EVERY == E_YIELD_EVERY - 1:
                await asyncio.sleep(0)
        await asyncio.gather(*done)

    return one_round()


def _record_latency(bench: Recorder, key: str, samples: list[int]) -> None:
    p = percentiles(samples, (50, 99))
    bench.record(f"{key}.p50", p["p50"])
    bench.record(f"{key}.p99", p["p99"])


def test_e_floor_put_nowait(bench: Recorder, loop: asyncio.AbstractEventLoop) -> None:
    """Floor: ``put_nowait`` of the event into 10 ``asyncio.Queue``, each drained by a task."""
    event = Event(topic=TOPIC, data=DATA)
    sinks = [Signal() for _ in range(E_CONSUMERS)]
    queues: list[asyncio.Queue[Event]] = [asyncio.Queue() for _ in sinks]

    async def consume(queue: asyncio.Queue[Event], sink: Signal) -> None:
        while True:
            sink.hit(await queue.get())

    tasks = [loop.create_task(consume(q, s)) for q, s in zip(queues, sinks, strict=True)]
    puts = [q.put_nowait for q in queues]

    def publish_one() -> None:
        for put in puts:
            put(event)

    samples: list[int] = []
    try:
        calls = bench.measure(
            "e.floor",
            lambda: loop.run_until_complete(_latency_round(loop, sinks, publish_one, samples)),
            ops=BATCH,
        )
    finally:
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    assert [s.n for s in sinks] == [calls * BATCH] * E_CONSUMERS
    assert len(samples) == calls * BATCH
    _record_latency(bench, "e.floor", samples)


def test_e_publish_latency(bench: Recorder, loop: asyncio.AbstractEventLoop) -> None:
    """How long ``bus.publish(event)`` takes to return with 10 ``async`` consumers."""
    event = Event(topic=TOPIC, data=DATA)
    sinks = [Signal() for _ in range(E_CONSUMERS)]

    async def start() -> EventBus:
        bus = EventBus(name="bench-e")
        for s in sinks:
            bus.subscribe(s.hit, topic=TOPIC, mode="async")
        return bus

    bus = loop.run_until_complete(start())
    samples: list[int] = []
    try:
        calls = bench.measure(
            "e.bus",
            lambda: loop.run_until_complete(
                _latency_round(loop, sinks, lambda: bus.publish(event), samples)
            ),
            ops=BATCH,
        )
    finally:
        assert loop.run_until_complete(bus.aclose()) == []
    assert [s.n for s in sinks] == [calls * BATCH] * E_CONSUMERS
    assert len(samples) == calls * BATCH
    _record_latency(bench, "e.bus", samples)
    for q in ("p50", "p99"):
        bench.compare(
            f"(e) publish-return latency {q}, 10 async consumers",
            subject=f"e.bus.{q}",
            floor=f"e.floor.{q}",
            target=5.0 if q == "p99" else None,
        )


# -- (f) routing cost does not grow with patterns that do not match ------------------------------

F_TOPIC = "svc.orders.created"
F_MATCHING = ["svc.orders.created", "svc.orders.*", "svc.**", "*.orders.created", "**"]


def _f_patterns(total_patterns: int) -> list[str]:
    """``F_MATCHING`` plus ``total_patterns - 5`` patterns, exact and wildcard, that miss."""
    misses = []
    shapes = ("svc.orders.x{i}", "svc.o{i}.*", "app{i}.**", "*.x{i}.created", "svc.*.y{i}")
    for i in range(total_patterns - len(F_MATCHING)):
        misses.append(shapes[i % len(shapes)].format(i=i))
    return F_MATCHING + misses


@pytest.mark.parametrize("n_patterns", [10, 1000])
def test_f_routing_scaling(
    bench: Recorder, new_bus: Callable[[], EventBus], n_patterns: int
) -> None:
    """``bus.publish(event)`` with ``n_patterns`` subscribed patterns, 5 of them matching."""
    bus = new_bus()
    patterns = _f_patterns(n_patterns)
    assert [matches(p, F_TOPIC) for p in patterns].count(True) == 5
    tallies = [Tally() for _ in patterns]
    for p, t in zip(patterns, tallies, strict=True):
        bus.subscribe(t.hit, topic=p)
    event = Event(topic=F_TOPIC, data=DATA)
    publish = bus.publish

    def run() -> None:
        for _ in range(BATCH):
            publish(event)

    calls = bench.measure(f"f{n_patterns}.bus", run, ops=BATCH, group="f")
    assert [t.n for t in tallies[:5]] == [calls * BATCH] * 5
    assert total(tallies[5:]) == 0
    if n_patterns == 1000:
        bench.compare(
            "(f) routing: 1,000 patterns (5 match) vs 10 patterns (5 match)",
            subject="f1000.bus",
            floor="f10.bus",
            target=2.0,
        )


# -- (g) the cost of creating an event -----------------------------------------------------------


def test_g_floor_dict(bench: Recorder) -> None:
    """Floor: a dict literal of the event's eight fields (id and timestamp made beforehand)."""
    topic, type_, data, source, cid = TOPIC, "one", DATA, "", None
    eid, ts = new_event_id(), datetime.now(UTC)
    made: list[dict[str, Any]] = []

    def run() -> None:
        out: Any = None
        for _ in range(BATCH):
            out = {
                "id": eid,
                "topic": topic,
                "type": type_,
                "timestamp": ts,
                "source": source,
                "data": data,
                "metadata": {},
                "correlation_id": cid,
            }
        made.append(out)

    calls = bench.measure("g.dict", run, ops=BATCH)
    assert len(made) == calls and made[-1]["topic"] == TOPIC


def test_g_floor_tuple(bench: Recorder) -> None:
    """Floor: a tuple of the event's eight fields (id and timestamp made beforehand)."""
    topic, type_, data, source, cid = TOPIC, "one", DATA, "", None
    eid, ts = new_event_id(), datetime.now(UTC)
    made: list[tuple[Any, ...]] = []

    def run() -> None:
        out: Any = None
        for _ in range(BATCH):
            out = (eid, topic, type_, ts, source, data, {}, cid)
        made.append(out)

    calls = bench.measure("g.tuple", run, ops=BATCH)
    assert len(made) == calls and made[-1][1] == TOPIC


def test_g_event_constructor(bench: Recorder) -> None:
    """``Event(topic=..., data=...)``: validated, with a fresh id and UTC timestamp."""
    made: list[Event] = []

    def run() -> None:
        out: Any = None
        for _ in range(BATCH):
            out = Event(topic=TOPIC, data=DATA)
        made.append(out)

    calls = bench.measure("g.event", run, ops=BATCH)
    assert len(made) == calls and len({e.id for e in made}) == calls
    assert made[-1].type == "one" and made[-1].timestamp.tzinfo is UTC
    for floor in ("dict", "tuple"):
        bench.compare(
            f"(g) Event(topic=..., data=...) vs {floor} of the same fields",
            subject="g.event",
            floor=f"g.{floor}",
        )


def test_g_event_trusted(bench: Recorder) -> None:
    """``Event._trusted(...)``: what ``publish`` uses after validating the arguments itself."""
    trusted = Event._trusted
    made: list[Event] = []

    def run() -> None:
        out: Any = None
        for _ in range(BATCH):
            out = trusted(TOPIC, "one", DATA, "", {}, None)
        made.append(out)

    calls = bench.measure("g.trusted", run, ops=BATCH)
    assert len(made) == calls and len({e.id for e in made}) == calls
    assert made[-1] == Event(topic=TOPIC, data=DATA, id=made[-1].id, timestamp=made[-1].timestamp)
    for floor in ("dict", "tuple"):
        bench.compare(
            f"(g) Event._trusted(...) vs {floor} of the same fields",
            subject="g.trusted",
            floor=f"g.{floor}",
        )


# -- (h) a consumer that raises on every event costs its publisher little more ---------------------


@pytest.mark.parametrize("fails", [False, True])
def test_h_publish_to_a_failing_consumer(
    bench: Recorder, new_bus: Callable[[], EventBus], fails: bool
) -> None:
    """``publish(event)`` to one sync consumer that returns (the floor) or raises every time:
    the dead letter keeps the exception and formats its traceback only when it is read."""
    bus = EventBus(name="h", history=0)
    event = Event(topic=TOPIC, data=DATA)
    tally = Tally()

    def raising(e: Event) -> None:
        tally.hit(e)
        raise ValueError("consumer failed")

    consumer = bus.subscribe(raising if fails else tally.hit, topic=TOPIC)
    publish = bus.publish

    def run() -> None:
        for _ in range(BATCH):
            publish(event)

    key = "h.raises" if fails else "h.returns"
    calls = bench.measure(key, run, ops=BATCH)
    assert tally.n == calls * BATCH
    s = consumer.stats
    assert (s.failed if fails else s.delivered) == calls * BATCH
    assert bus.metrics()["dead_lettered"] == (calls * BATCH if fails else 0)
    bus.close()
    bench.compare(
        "(h) a consumer that raises, vs one that returns",
        subject="h.raises",
        floor="h.returns",
        target=2.0,
    )
