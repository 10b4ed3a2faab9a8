"""A failing consumer hurts nobody: not the producer, not its neighbours, not its own future."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from reactivex import operators as rx_ops

from rxbus import DeadLetter, Event, EventBus

N = 700


def every_seventh(e: Event) -> None:
    if e.data["i"] % 7 == 6:
        raise RuntimeError(f"consumer rejects {e.data['i']}")


async def every_seventh_async(e: Event) -> None:
    every_seventh(e)


def failing_map(e: Event) -> int:
    every_seventh(e)
    return int(e.data["i"])


CASES: dict[str, tuple[Any, tuple[Any, ...], str]] = {
    "sync sink": (every_seventh, (), "sync"),
    "thread sink": (every_seventh, (), "thread"),
    "async def sink": (every_seventh_async, (), "async"),
    "operator chain": (lambda i: None, (rx_ops.map(failing_map),), "sync"),
    "operator chain in a thread": (lambda i: None, (rx_ops.map(failing_map),), "thread"),
    "operator chain on a loop": (lambda i: None, (rx_ops.map(failing_map),), "async"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_seventh_failure_is_a_dead_letter_and_nothing_else(case: str) -> None:
    sink, operators, mode = CASES[case]
    bus = EventBus(history=0)
    letters: list[DeadLetter] = []
    bus.dead_letters.subscribe(letters.append)
    healthy: list[int] = []
    bus.subscribe(lambda e: healthy.append(e.data["i"]), name="healthy")
    bus.subscribe(sink, *operators, mode=mode, name="flaky")
    tail: list[int] = []
    bus.subscribe(lambda e: tail.append(e.data["i"]), mode="thread", name="tail")

    for i in range(N):
        bus.publish("work.item", {"i": i})  # must never raise
    assert bus.close(timeout=30) == []

    expected_failures = [i for i in range(N) if i % 7 == 6]
    assert healthy == list(range(N)) and tail == list(range(N))
    assert sorted(letter.event.data["i"] for letter in letters) == expected_failures
    for letter in letters:
        assert letter.consumer == "flaky" and isinstance(letter.error, RuntimeError)
        assert "consumer rejects" in letter.traceback and letter.attempts == 1
    stats = bus.metrics()["consumers"]["flaky"]
    assert stats["received"] == N
    assert stats["failed"] == len(expected_failures)
    assert stats["delivered"] == N - len(expected_failures)
    assert stats["dead_lettered"] == len(expected_failures)


def test_a_failing_bus_stream_subscriber_keeps_receiving(bus: EventBus) -> None:
    """bus.topic(...).pipe(...).subscribe(...) gets the same isolation as bus.subscribe."""
    got: list[int] = []
    bus.topic("a.*").pipe(rx_ops.map(failing_map)).subscribe(got.append)
    for i in range(14):
        bus.publish("a.b", {"i": i})
    assert got == [i for i in range(14) if i % 7 != 6]
    assert len(bus.recent_dead_letters()) == 2


def test_a_failing_dead_letter_observer_does_not_break_publishing(bus: EventBus) -> None:
    def explode(_: DeadLetter) -> None:
        raise RuntimeError("observer of dead letters fails too")

    bus.dead_letters.subscribe(explode)
    bus.subscribe(every_seventh)
    for i in range(14):
        bus.publish("a", {"i": i})
    assert bus.metrics()["dead_lettered"] == 2


def test_a_slow_consumer_does_not_starve_a_fast_one() -> None:
    """A thread consumer stuck on its first event does not delay a sync one."""
    gate = threading.Event()
    with EventBus() as bus:
        fast: list[int] = []
        slow = bus.subscribe(lambda e: gate.wait(), mode="thread", name="slow", queue_size=1000)
        bus.subscribe(lambda e: fast.append(e.data["i"]), name="fast")
        for i in range(100):
            bus.publish("a", {"i": i})
        assert fast == list(range(100))
        s = slow.stats
        assert s.delivered == 0 and s.queued >= 99 and s.received == 100
        gate.set()
    assert slow.stats.delivered == 100
