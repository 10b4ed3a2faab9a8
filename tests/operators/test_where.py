"""where(predicate): filtering that dead-letters a failing predicate and goes on."""

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


def tenth_positive(x: int) -> bool:
    return 10 // (x - 3) > 0


def test_keeps_items_where_predicate_is_true(scheduler: TestScheduler, letters) -> None:
    """True keeps, false drops, order and times are kept."""
    xs = scheduler.create_hot_observable(
        on_next(210, 1), on_next(220, 4), on_next(230, 5), on_completed(250)
    )
    result = scheduler.start(lambda: xs.pipe(ops.where(lambda x: x % 2 == 1)))
    assert result.messages == [on_next(210, 1), on_next(230, 5), on_completed(250)]


def test_failing_predicate_dead_letters_item_and_stream_goes_on(
    scheduler: TestScheduler, letters: list[DeadLetter]
) -> None:
    """A raising predicate makes that item a dead letter; later items still flow."""
    xs = scheduler.create_hot_observable(
        on_next(210, 2), on_next(220, 3), on_next(230, 4), on_next(240, 3), on_completed(250)
    )
    result = scheduler.start(
        lambda: xs.pipe(ops.where(tenth_positive, dead_letters=letters.append))
    )
    assert result.messages == [on_next(230, 4), on_completed(250)]
    assert [(d.event, type(d.error), d.attempts, d.consumer) for d in letters] == [
        (3, ZeroDivisionError, 1, "where"),
        (3, ZeroDivisionError, 1, "where"),
    ]
    assert "ZeroDivisionError" in letters[0].traceback


def test_plain_rx_filter_would_end_the_stream(scheduler: TestScheduler) -> None:
    """The contrast: reactivex.operators.filter ends the stream on the first exception."""
    xs = scheduler.create_hot_observable(on_next(210, 3), on_next(220, 4), on_completed(250))
    result = scheduler.start(lambda: xs.pipe(rx.filter(tenth_positive)))
    assert len(result.messages) == 1 and result.messages[0].value.kind == "E"


def test_source_error_and_completion_pass(scheduler: TestScheduler, letters) -> None:
    """on_error from the source is forwarded unchanged."""
    err = RuntimeError("source")
    xs = scheduler.create_hot_observable(on_next(210, 5), on_error(220, err))
    result = scheduler.start(lambda: xs.pipe(ops.where(bool, dead_letters=letters.append)))
    assert result.messages == [on_next(210, 5), on_error(220, err)]
    assert letters == []


def test_dispose(scheduler: TestScheduler) -> None:
    """Disposal unsubscribes from the source; nothing after it is delivered."""
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(260, 1), on_completed(300))
    result = scheduler.start(lambda: xs.pipe(ops.where(bool)), disposed=250)
    assert result.messages == [on_next(210, 1)]
    assert xs.subscriptions == [subscribe(200, 250)]


def test_resubscription_after_failure(scheduler: TestScheduler, letters) -> None:
    """A chain re-subscribed (rx.repeat) behaves the same each time, dead letters included."""
    xs = scheduler.create_cold_observable(on_next(10, 3), on_next(20, 5), on_completed(30))
    result = scheduler.start(
        lambda: xs.pipe(ops.where(tenth_positive, dead_letters=letters.append), rx.repeat(2))
    )
    assert result.messages == [on_next(220, 5), on_next(250, 5), on_completed(260)]
    assert [d.event for d in letters] == [3, 3]


def test_inside_bus_consumer_uses_its_dead_letters_and_name(consumer_context) -> None:
    """Without dead_letters=, a bus consumer's target and name are taken at subscribe time."""
    dead, _ = consumer_context
    out: list[int] = []
    reactivex.from_iterable([2, 3, 4]).pipe(ops.where(tenth_positive)).subscribe(out.append)
    assert out == [4]
    assert [(d.event, d.consumer) for d in dead] == [(3, "audit")]


def test_explicit_name_wins(letters) -> None:
    """name= labels the dead letters."""
    reactivex.of(3).pipe(
        ops.where(tenth_positive, dead_letters=letters.append, name="gate")
    ).subscribe()
    assert letters[0].consumer == "gate"


def test_not_callable_raises() -> None:
    """A non-callable predicate fails at once, naming it."""
    with pytest.raises(TypeError, match="where"):
        ops.where(3)  # type: ignore[arg-type]
