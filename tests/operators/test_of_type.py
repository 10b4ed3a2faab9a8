"""of_type(*types): by event type (str) or by Python class."""

from __future__ import annotations

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import Event

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)

PRE = Event(topic="hook.tool", type="PreToolUse")
POST = Event(topic="hook.tool", type="PostToolUse")
STOP = Event(topic="hook.stop", type="Stop")


def test_keeps_listed_event_types(scheduler: TestScheduler) -> None:
    """Only events whose .type is listed pass, in order."""
    xs = scheduler.create_hot_observable(
        on_next(210, PRE), on_next(220, STOP), on_next(230, POST), on_completed(240)
    )
    result = scheduler.start(lambda: xs.pipe(ops.of_type("PreToolUse", "PostToolUse")))
    assert result.messages == [on_next(210, PRE), on_next(230, POST), on_completed(240)]


def test_classes_filter_by_isinstance(scheduler: TestScheduler) -> None:
    """With classes, items that are instances pass (bool is an int)."""
    xs = scheduler.create_hot_observable(
        on_next(210, 1), on_next(220, "a"), on_next(230, 2.5), on_next(240, True), on_completed(250)
    )
    result = scheduler.start(lambda: xs.pipe(ops.of_type(int)))
    assert result.messages == [on_next(210, 1), on_next(240, True), on_completed(250)]


def test_error_passes_and_dispose_unsubscribes(scheduler: TestScheduler) -> None:
    """Errors reach the observer; disposal ends the source subscription."""
    err = ValueError("x")
    xs = scheduler.create_hot_observable(on_next(210, PRE), on_error(220, err))
    result = scheduler.start(lambda: xs.pipe(ops.of_type("PreToolUse")))
    assert result.messages == [on_next(210, PRE), on_error(220, err)]

    ys = scheduler.create_hot_observable(on_next(1010, PRE), on_next(1030, PRE))
    result = scheduler.start(lambda: ys.pipe(ops.of_type("PreToolUse")), 1000, 1001, 1020)
    assert result.messages == [on_next(1010, PRE)]
    assert ys.subscriptions == [subscribe(1001, 1020)]


def test_resubscription(scheduler: TestScheduler) -> None:
    """Two subscriptions to one cold chain each see the filtered sequence."""
    xs = scheduler.create_cold_observable(on_next(5, PRE), on_next(6, STOP), on_completed(7))
    chain = xs.pipe(ops.of_type("PreToolUse"))
    a: list[Event] = []
    b: list[Event] = []
    chain.subscribe(a.append, scheduler=scheduler)
    chain.subscribe(b.append, scheduler=scheduler)
    scheduler.start()
    assert a == b == [PRE]


@pytest.mark.parametrize(
    ("args", "error"),
    [((), ValueError), (("Stop", int), ValueError), ((3,), TypeError)],
)
def test_bad_arguments_raise_naming_them(args: tuple, error: type[Exception]) -> None:
    """No types, mixed str and classes, or a non-type all fail when the operator is built."""
    with pytest.raises(error, match="of_type"):
        ops.of_type(*args)
