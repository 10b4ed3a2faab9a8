"""transform(fn): mapping that dead-letters a failing call and goes on."""

from __future__ import annotations

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus.deadletter import DeadLetter

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def twelve_over(x: int) -> int:
    return 12 // x


def test_emits_results_and_dead_letters_failures(
    scheduler: TestScheduler, letters: list[DeadLetter]
) -> None:
    """Each result is emitted at its item's time; the failing input is the dead letter."""
    xs = scheduler.create_hot_observable(
        on_next(210, 1), on_next(220, 0), on_next(230, 4), on_completed(240)
    )
    result = scheduler.start(
        lambda: xs.pipe(ops.transform(twelve_over, dead_letters=letters.append))
    )
    assert result.messages == [on_next(210, 12), on_next(230, 3), on_completed(240)]
    assert [(d.event, type(d.error), d.consumer) for d in letters] == [
        (0, ZeroDivisionError, "transform")
    ]


def test_source_error_passes(scheduler: TestScheduler) -> None:
    """on_error is forwarded."""
    err = OSError("gone")
    xs = scheduler.create_hot_observable(on_next(210, 2), on_error(220, err))
    result = scheduler.start(lambda: xs.pipe(ops.transform(twelve_over)))
    assert result.messages == [on_next(210, 6), on_error(220, err)]


def test_dispose(scheduler: TestScheduler) -> None:
    """Disposal unsubscribes from the source."""
    xs = scheduler.create_hot_observable(on_next(210, 2), on_next(300, 3))
    result = scheduler.start(lambda: xs.pipe(ops.transform(twelve_over)), disposed=250)
    assert result.messages == [on_next(210, 6)]
    assert xs.subscriptions == [subscribe(200, 250)]


def test_resubscription(scheduler: TestScheduler, letters) -> None:
    """A re-subscribed chain maps again and dead-letters again."""
    xs = scheduler.create_cold_observable(on_next(10, 0), on_next(20, 6), on_completed(30))
    result = scheduler.start(
        lambda: xs.pipe(ops.transform(twelve_over, dead_letters=letters.append), rx.repeat(2))
    )
    assert result.messages == [on_next(220, 2), on_next(250, 2), on_completed(260)]
    assert len(letters) == 2


def test_downstream_exception_is_not_taken_for_a_transform_failure(letters) -> None:
    """An exception raised by the observer is not the user's fn failing: it propagates."""

    def boom(_: int) -> None:
        raise KeyError("sink")

    with pytest.raises(KeyError):
        reactivex.of(1).pipe(ops.transform(str, dead_letters=letters.append)).subscribe(boom)
    assert letters == []


def test_not_callable_raises() -> None:
    """A non-callable fn fails at once."""
    with pytest.raises(TypeError, match="transform"):
        ops.transform("x")  # type: ignore[arg-type]
