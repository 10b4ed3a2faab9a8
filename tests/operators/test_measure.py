"""measure(name): count, rate and latency percentiles, the stream unchanged."""

from __future__ import annotations

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import Event
from rxbus.metrics import MetricsRegistry

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def test_passes_items_and_counts_rate_in_virtual_time(scheduler: TestScheduler) -> None:
    """Five items over 4 virtual seconds: count 5, rate 1/s; the stream is unchanged."""
    registry = MetricsRegistry()
    xs = scheduler.create_hot_observable(
        *[on_next(210 + i, i) for i in range(5)], on_completed(300)
    )
    result = scheduler.start(lambda: xs.pipe(ops.measure("items", registry=registry)))
    assert result.messages == [*[on_next(210 + i, i) for i in range(5)], on_completed(300)]
    snap = registry.snapshot()["items"]
    assert snap["count"] == 5
    assert snap["rate_per_s"] == pytest.approx(1.0)
    assert snap["latency_ns"]["count"] == 5
    assert {"p50", "p90", "p99", "p99_9", "max"} <= set(snap["latency_ns"])


class FakeClock:
    """A nanosecond clock that moves only when the test says so."""

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_downstream_latency_is_what_the_rest_of_the_chain_takes() -> None:
    """Latency covers the work after measure(): exactly what the steps after it took."""
    registry = MetricsRegistry()
    clock = FakeClock()

    def slow(x: int) -> int:
        clock.now += 1_000 * (x + 1)  # item x takes (x + 1) µs in this step
        return x

    def sink(x: int) -> None:
        clock.now += 50

    reactivex.from_iterable(range(5)).pipe(
        ops.measure("before", registry=registry, clock=clock),
        ops.transform(slow),
        ops.measure("after", registry=registry, clock=clock),
    ).subscribe(sink)
    snap = registry.snapshot()
    assert snap["after"]["latency_ns"] | {} == {
        "count": 5, "p50": 50, "p90": 50, "p99": 50, "p99_9": 50, "max": 50,
    }  # fmt: skip
    before = snap["before"]["latency_ns"]
    assert (before["count"], before["p50"], before["max"]) == (5, 3_050, 5_050)


def test_age_latency_of_events() -> None:
    """latency="age" records how old each event is on arrival (never negative)."""
    registry = MetricsRegistry()
    events = [Event(topic="a") for _ in range(3)]
    published_ns = int(events[-1].timestamp.timestamp() * 1e9)
    clock = FakeClock(published_ns + 2_000_000)  # 2 ms after the last one was made
    reactivex.from_iterable(events).pipe(
        ops.measure("age", registry=registry, latency="age", clock=clock)
    ).subscribe()
    lat = registry.snapshot()["age"]["latency_ns"]
    assert lat["count"] == 3 and lat["p50"] >= 2_000_000
    assert lat["max"] == clock.now - int(events[0].timestamp.timestamp() * 1e9)

    early = MetricsRegistry()  # a clock behind the events' timestamps records 0, not < 0
    reactivex.from_iterable(events).pipe(
        ops.measure("age", registry=early, latency="age", clock=FakeClock(0))
    ).subscribe()
    assert early.snapshot()["age"]["latency_ns"]["max"] == 0


def test_bus_consumer_registry_is_the_default(consumer_context) -> None:
    """Inside a bus consumer, the measurement goes to the bus's registry."""
    _, registry = consumer_context
    reactivex.from_iterable(range(4)).pipe(ops.measure("in_bus")).subscribe()
    assert registry.snapshot()["in_bus"]["count"] == 4


def test_no_registry_outside_a_bus_fails_at_subscribe() -> None:
    """A measurement nobody can read is refused with a clear error."""
    errors: list[Exception] = []
    reactivex.of(1).pipe(ops.measure("lost")).subscribe(on_error=errors.append)
    assert len(errors) == 1 and "registry=" in str(errors[0])


def test_error_dispose_resubscribe(scheduler: TestScheduler) -> None:
    """Errors pass; disposal unsubscribes; re-subscriptions add to the same measurement."""
    registry = MetricsRegistry()
    err = RuntimeError("x")
    xs = scheduler.create_hot_observable(on_next(210, 1), on_error(220, err))
    result = scheduler.start(lambda: xs.pipe(ops.measure("m", registry=registry)))
    assert result.messages == [on_next(210, 1), on_error(220, err)]

    cold = TestScheduler()
    ys = cold.create_cold_observable(on_next(1, "a"), on_completed(2))
    result = cold.start(
        lambda: ys.pipe(ops.measure("m", registry=registry), rx.repeat(3)), disposed=205
    )
    assert [m.time for m in result.messages] == [201, 203]
    assert ys.subscriptions == [subscribe(200, 202), subscribe(202, 204), subscribe(204, 205)]
    assert registry.snapshot()["m"]["count"] == 3


def test_bad_arguments() -> None:
    """An empty name or unknown latency kind fails at once."""
    with pytest.raises(ValueError, match="name"):
        ops.measure("")
    with pytest.raises(ValueError, match="latency"):
        ops.measure("x", latency="p99")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"clock must be a function.*12"):
        ops.measure("x", clock=12)  # type: ignore[arg-type]
