"""Operators inside bus consumers: dead letters reach the bus, measure() reaches its metrics."""

from __future__ import annotations

import threading

import pytest

import rxbus.operators as ops
from rxbus import DeadLetter, Event, EventBus, RetryPolicy
from rxbus.testing import TestBus
from tests.conftest import wait_until


def number(e: Event) -> int:
    return int(e.data["n"])


def test_sync_consumer_dead_letters_go_to_the_bus_and_measure_to_its_metrics(
    bus: EventBus,
) -> None:
    """where/transform failures become bus dead letters named after the consumer; the
    consumer keeps receiving; measure() shows in bus.metrics()["measurements"]."""
    seen: list[int] = []
    streamed: list[DeadLetter] = []
    bus.dead_letters.subscribe(streamed.append)
    bus.subscribe(
        seen.append,
        ops.where(lambda e: 10 // (number(e) - 3) != 0),  # n == 3 raises
        ops.transform(lambda e: 100 // number(e)),  # n == 0 raises
        ops.measure("parsed"),
        topic="job.*",
        mode="sync",
        name="parser",
    )
    for n in range(6):
        bus.publish("job.step", {"n": n})
    assert seen == [100 // n for n in (1, 2, 4, 5)]
    letters = bus.recent_dead_letters()
    assert sorted(number(d.event) for d in letters) == [0, 3]
    assert {d.consumer for d in letters} == {"parser"}
    assert len(streamed) == 2
    metrics = bus.metrics()
    assert metrics["measurements"]["parsed"]["count"] == 4
    assert metrics["consumers"]["parser"]["dead_lettered"] == 2


def test_thread_consumer_batches_by_time_on_its_own_worker(bus: EventBus) -> None:
    """A batch closed by its timer is delivered on a pool worker running the consumer (never
    on the timer thread); all events counted."""
    batches: list[list[int]] = []
    threads: set[str] = set()

    def sink(items: list[int]) -> None:
        threads.add(threading.current_thread().name)
        batches.append(items)

    bus.subscribe(
        sink,
        ops.transform(number),
        ops.batch(seconds=0.05, max_size=100),
        topic="job.*",
        mode="thread",
        name="batcher",
    )
    for n in range(250):
        bus.publish("job.step", {"n": n})
    assert wait_until(lambda: sum(map(len, batches)) == 250)
    assert [x for b in batches for x in b] == list(range(250))
    assert all(batches) and max(map(len, batches)) <= 100
    assert threads and all(t.startswith("rxbus-worker-") for t in threads)


def test_async_consumer_retry_dead_letters_to_the_bus(testbus: TestBus) -> None:
    """retry in an async consumer: the flaky item succeeds on retry, the broken one is a bus
    dead letter with its attempt count, and the other events are untouched."""
    bus = testbus
    calls: dict[int, int] = {}
    done: list[int] = []

    def send(e: Event) -> int:
        n = number(e)
        calls[n] = calls.get(n, 0) + 1
        if n == 1 and calls[n] < 2:
            raise ConnectionError("flaky")
        if n == 2:
            raise ConnectionError("broken")
        return n

    bus.subscribe(
        done.append,
        ops.retry(send, RetryPolicy(max_attempts=3, initial_delay=0.01)),
        topic="job.*",
        mode="async",
        name="sender",
    )
    for n in range(4):
        bus.publish("job.step", {"n": n})
    bus.advance(1)  # the retry delays (0.01 s, 0.02 s) pass in virtual time
    assert len(done) == 3 and len(bus.recent_dead_letters()) == 1
    assert sorted(done) == [0, 1, 3]
    (letter,) = bus.recent_dead_letters()
    assert (number(letter.event), letter.attempts, letter.consumer) == (2, 3, "sender")


@pytest.mark.parametrize("mode", ["sync", "thread", "async"])
def test_circuit_breaker_rejections_reach_bus_dead_letters(testbus: TestBus, mode: str) -> None:
    """An open circuit's refusals are bus dead letters; every event is accounted for."""
    bus = testbus

    def down(e: Event) -> None:
        raise ConnectionError("down")

    breaker = ops.circuit_breaker(down, failure_threshold=2, recovery_timeout=60.0)
    bus.subscribe(lambda _: None, breaker, topic="job.*", mode=mode, name=f"cb-{mode}")
    for n in range(5):
        bus.publish("job.step", {"n": n})
    bus.drain()
    assert len(bus.recent_dead_letters()) == 5
    kinds = [type(d.error).__name__ for d in bus.recent_dead_letters()]
    assert kinds.count("ConnectionError") == 2 and kinds.count("CircuitOpenError") == 3
    assert breaker.stats["rejected"] == 3
