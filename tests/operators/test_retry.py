"""retry(handler, policy): per-item retry on the scheduler; the stream never loses the item."""

from __future__ import annotations

from collections import Counter

import pytest
from reactivex import operators as rx
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import RetryPolicy
from rxbus.deadletter import DeadLetter

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


class Flaky:
    """Fails the first ``failures[item]`` calls for an item, recording every call time."""

    def __init__(self, scheduler: TestScheduler, failures: dict[object, int], exc=ConnectionError):
        self.scheduler = scheduler
        self.failures = dict(failures)
        self.exc = exc
        self.calls: list[tuple[object, float]] = []

    def __call__(self, item: object) -> str:
        self.calls.append((item, self.scheduler.clock))
        if self.failures.get(item, 0):
            self.failures[item] -= 1
            raise self.exc(f"{item} failed")
        return f"<{item}>"


CONTRACT = RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2, jitter=0)


def test_always_failing_item_tried_at_0_1_3_7_then_dead_lettered(
    scheduler: TestScheduler, letters: list[DeadLetter]
) -> None:
    """The contract's timing: tries at t=0, 1, 3, 7; a dead letter with attempts == 4; the
    stream goes on with the next item."""
    handler = Flaky(scheduler, {"x": 99})
    xs = scheduler.create_hot_observable(on_next(300, "x"), on_next(320, "y"), on_completed(400))
    result = scheduler.start(
        lambda: xs.pipe(ops.retry(handler, CONTRACT, dead_letters=letters.append))
    )
    assert [t for item, t in handler.calls if item == "x"] == [300, 301, 303, 307]
    assert [(d.event, d.attempts, type(d.error)) for d in letters] == [("x", 4, ConnectionError)]
    assert result.messages == [on_next(320, "<y>"), on_completed(400)]


def test_item_succeeding_on_retry_is_emitted_later_unordered(scheduler: TestScheduler) -> None:
    """Default ordering: later items are not held up; the retried result comes when it succeeds."""
    handler = Flaky(scheduler, {"b": 2})
    xs = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(220, "b"), on_next(221, "c"), on_completed(240)
    )
    result = scheduler.start(lambda: xs.pipe(ops.retry(handler, CONTRACT)))
    # b fails at 220 and 221 (after 1 s), succeeds at 223 (after 2 s more).
    assert result.messages == [
        on_next(210, "<a>"),
        on_next(221, "<c>"),
        on_next(223, "<b>"),
        on_completed(240),
    ]


def test_ordered_mode_holds_later_items_until_the_retry_resolves(scheduler: TestScheduler) -> None:
    """ordered=True: c is not even handled until b succeeded; results keep source order."""
    handler = Flaky(scheduler, {"b": 1})
    xs = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(220, "b"), on_next(220.5, "c"), on_completed(240)
    )
    result = scheduler.start(lambda: xs.pipe(ops.retry(handler, CONTRACT, ordered=True)))
    assert result.messages == [
        on_next(210, "<a>"),
        on_next(221, "<b>"),
        on_next(221, "<c>"),
        on_completed(240),
    ]
    assert [item for item, _ in handler.calls] == ["a", "b", "b", "c"]


def test_ordered_mode_moves_on_after_a_dead_letter(
    scheduler: TestScheduler, letters: list[DeadLetter]
) -> None:
    """ordered=True: the waiting items flow once the head item is dead-lettered."""
    handler = Flaky(scheduler, {"b": 99})
    policy = RetryPolicy(max_attempts=2, initial_delay=5)
    xs = scheduler.create_hot_observable(on_next(210, "b"), on_next(211, "c"), on_completed(212))
    result = scheduler.start(
        lambda: xs.pipe(ops.retry(handler, policy, ordered=True, dead_letters=letters.append))
    )
    assert result.messages == [on_next(215, "<c>"), on_completed(215)]
    assert [(d.event, d.attempts) for d in letters] == [("b", 2)]


def test_completion_waits_for_pending_retries(scheduler: TestScheduler) -> None:
    """The source completing does not lose an item waiting for its retry."""
    handler = Flaky(scheduler, {"a": 1})
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_completed(211))
    result = scheduler.start(lambda: xs.pipe(ops.retry(handler, RetryPolicy(initial_delay=10))))
    assert result.messages == [on_next(220, "<a>"), on_completed(220)]


def test_source_error_delivered_after_pending_retries(scheduler: TestScheduler) -> None:
    """on_error also waits for the pending retry, then ends the stream."""
    err = RuntimeError("source")
    handler = Flaky(scheduler, {"a": 1})
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_error(212, err))
    result = scheduler.start(lambda: xs.pipe(ops.retry(handler, RetryPolicy(initial_delay=10))))
    assert result.messages == [on_next(220, "<a>"), on_error(220, err)]


def test_exceptions_outside_retry_on_are_dead_lettered_at_once(
    scheduler: TestScheduler, letters: list[DeadLetter]
) -> None:
    """retry_on filters: a ValueError is not retried when only ConnectionError is."""
    handler = Flaky(scheduler, {"a": 1}, exc=ValueError)
    policy = RetryPolicy(max_attempts=5, initial_delay=1, retry_on=(ConnectionError,))
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_completed(250))
    result = scheduler.start(
        lambda: xs.pipe(ops.retry(handler, policy, dead_letters=letters.append))
    )
    assert handler.calls == [("a", 210)]
    assert [(d.event, d.attempts, type(d.error)) for d in letters] == [("a", 1, ValueError)]
    assert result.messages == [on_completed(250)]


def test_max_delay_caps_and_jitter_spreads(scheduler: TestScheduler) -> None:
    """Delays 2, 3 (capped), 3 with jitter 0.5 at random 0.0 become 1, 1.5, 1.5."""
    handler = Flaky(scheduler, {"a": 3})
    policy = RetryPolicy(max_attempts=4, initial_delay=2, multiplier=4, max_delay=3, jitter=0.5)
    xs = scheduler.create_hot_observable(on_next(210, "a"))
    scheduler.start(lambda: xs.pipe(ops.retry(handler, policy, random=lambda: 0.0)))
    assert [t for _, t in handler.calls] == [210, 211, 212.5, 214]


def test_dispose_cancels_pending_retries(scheduler: TestScheduler) -> None:
    """After disposal a scheduled retry never calls the handler."""
    handler = Flaky(scheduler, {"a": 5})
    xs = scheduler.create_hot_observable(on_next(210, "a"))
    result = scheduler.start(
        lambda: xs.pipe(ops.retry(handler, RetryPolicy(max_attempts=5, initial_delay=10))),
        disposed=215,
    )
    assert handler.calls == [("a", 210)]
    assert result.messages == []
    assert xs.subscriptions == [subscribe(200, 215)]


def test_resubscription_has_fresh_state(scheduler: TestScheduler) -> None:
    """A repeated cold chain retries within each subscription."""
    handler = Flaky(scheduler, {"a": 2})
    xs = scheduler.create_cold_observable(on_next(10, "a"), on_completed(11))
    result = scheduler.start(
        lambda: xs.pipe(ops.retry(handler, RetryPolicy(initial_delay=1)), rx.repeat(2))
    )
    # First subscription: fails at 210, 211, succeeds at 213; second: a at 223, first try.
    assert result.messages == [on_next(213, "<a>"), on_next(223, "<a>"), on_completed(224)]


def test_plain_rx_retry_on_a_hot_subject_loses_the_item_ours_does_not() -> None:
    """reactivex's retry re-subscribes after the error: the failed item is gone. Ours keeps it."""
    calls: Counter[int] = Counter()

    def flaky(x: int) -> int:
        calls[x] += 1
        if x == 2 and calls[x] == 1:
            raise ConnectionError("transient")
        return x * 10

    plain_out: list[int] = []
    hot: Subject[int] = Subject()
    hot.pipe(rx.map(flaky), rx.retry(3)).subscribe(plain_out.append)
    for x in (1, 2, 3):
        hot.on_next(x)
    assert plain_out == [10, 30], "plain Rx retry lost item 2"

    calls.clear()
    clock = TestScheduler()
    ours_out: list[int] = []
    hot2: Subject[int] = Subject()
    hot2.pipe(ops.retry(flaky, RetryPolicy(max_attempts=3, initial_delay=1))).subscribe(
        ours_out.append, scheduler=clock
    )
    for x in (1, 2, 3):
        hot2.on_next(x)
    clock.advance_by(1)
    assert sorted(ours_out) == [10, 20, 30]
    assert calls[2] == 2


def test_bad_arguments_raise() -> None:
    """A non-callable handler or a non-RetryPolicy policy fails at once."""
    with pytest.raises(TypeError, match="handler"):
        ops.retry(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RetryPolicy"):
        ops.retry(str, {"max_attempts": 3})  # type: ignore[arg-type]
