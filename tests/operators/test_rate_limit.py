"""rate_limit(per_second): a token bucket that drops or delays, in virtual time."""

from __future__ import annotations

import pytest
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def test_drop_mode_drops_above_the_rate(scheduler: TestScheduler) -> None:
    """At 0.2/s with burst 1: a passes, b and c (too soon) are dropped, d (6 s later) passes."""
    dropped: list[str] = []
    xs = scheduler.create_hot_observable(
        on_next(210, "a"),
        on_next(211, "b"),
        on_next(214, "c"),
        on_next(216, "d"),
        on_completed(220),
    )
    result = scheduler.start(
        lambda: xs.pipe(ops.rate_limit(0.2, mode="drop", on_drop=dropped.append))
    )
    assert result.messages == [on_next(210, "a"), on_next(216, "d"), on_completed(220)]
    assert dropped == ["b", "c"]


def test_delay_mode_spaces_items_and_completes_after_them(scheduler: TestScheduler) -> None:
    """At 0.2/s: a at 210, b and c wait their turn (215, 220); completion follows c."""
    xs = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(210, "b"), on_next(211, "c"), on_completed(212)
    )
    result = scheduler.start(lambda: xs.pipe(ops.rate_limit(0.2, mode="delay")))
    assert result.messages == [
        on_next(210, "a"),
        on_next(215, "b"),
        on_next(220, "c"),
        on_completed(220),
    ]


def test_burst_lets_that_many_through_back_to_back(scheduler: TestScheduler) -> None:
    """burst=3 passes three at once, then one per 1/rate."""
    xs = scheduler.create_hot_observable(*[on_next(210, i) for i in range(5)], on_completed(211))
    result = scheduler.start(lambda: xs.pipe(ops.rate_limit(1.0, mode="delay", burst=3)))
    assert [(m.time, m.value.value) for m in result.messages[:-1]] == [
        (210, 0),
        (210, 1),
        (210, 2),
        (211, 3),
        (212, 4),
    ]


def test_delay_mode_bounds_the_queue(scheduler: TestScheduler) -> None:
    """Beyond max_pending waiting items, new ones are dropped and reported."""
    dropped: list[int] = []
    xs = scheduler.create_hot_observable(*[on_next(210, i) for i in range(6)], on_completed(211))
    result = scheduler.start(
        lambda: xs.pipe(ops.rate_limit(1.0, mode="delay", max_pending=2, on_drop=dropped.append))
    )
    assert [m.value.value for m in result.messages[:-1]] == [0, 1, 2]
    assert dropped == [3, 4, 5]


def test_error_after_waiting_items(scheduler: TestScheduler) -> None:
    """An error waits behind delayed items, like completion."""
    err = RuntimeError("x")
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(210, 2), on_error(211, err))
    result = scheduler.start(lambda: xs.pipe(ops.rate_limit(0.5, mode="delay")))
    assert result.messages == [on_next(210, 1), on_next(212, 2), on_error(212, err)]


def test_dispose_cancels_waiting_items(scheduler: TestScheduler) -> None:
    """Disposal drops the waiting items and their timer."""
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(210, 2), on_completed(211))
    result = scheduler.start(lambda: xs.pipe(ops.rate_limit(0.1, mode="delay")), disposed=215)
    assert result.messages == [on_next(210, 1)]
    assert xs.subscriptions == [subscribe(200, 211)]


def test_resubscription_gets_a_full_bucket(scheduler: TestScheduler) -> None:
    """Each subscription has its own bucket."""
    xs = scheduler.create_cold_observable(on_next(1, "a"), on_next(2, "b"), on_completed(3))
    result = scheduler.start(lambda: xs.pipe(ops.rate_limit(0.01), rx.repeat(2)))
    assert [(m.time, m.value.value) for m in result.messages[:-1]] == [(201, "a"), (204, "a")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"per_second": 0},
        {"per_second": -1},
        {"per_second": 1, "mode": "queue"},
        {"per_second": 1, "burst": 0},
        {"per_second": 1, "max_pending": 0},
    ],
)
def test_bad_arguments(kwargs) -> None:
    """Bad rates, modes, bursts or queue bounds fail at once, naming them."""
    with pytest.raises(ValueError, match="rate_limit"):
        ops.rate_limit(**kwargs)


def test_drops_counted_in_bus_registry(scheduler: TestScheduler, consumer_context) -> None:
    """Inside a bus consumer, drops tick `<name>.dropped` in the bus's metrics."""
    _, registry = consumer_context
    xs = scheduler.create_hot_observable(*[on_next(210, i) for i in range(5)], on_completed(211))
    scheduler.start(lambda: xs.pipe(ops.rate_limit(1.0, name="api")))
    assert registry.snapshot()["api.dropped"]["count"] == 4


def test_drops_logged_when_nobody_listens(scheduler: TestScheduler) -> None:
    """With no on_drop and no registry, each drop is a warning on the rxbus logger."""
    from loguru import logger

    lines: list[str] = []
    logger.enable("rxbus.operators")  # in case the application (or rxbus) disabled "rxbus"
    handler = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(210, "b"))
        scheduler.start(lambda: xs.pipe(ops.rate_limit(1.0)))
    finally:
        logger.remove(handler)
    assert len(lines) == 1 and "dropped 'b'" in lines[0] and "rate_limit" in lines[0]
