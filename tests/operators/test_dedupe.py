"""dedupe(key, window, ttl): drop repeats within a bounded window."""

from __future__ import annotations

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import Event

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def test_events_dedupe_by_id(scheduler: TestScheduler) -> None:
    """The same event delivered twice (same id) passes once; equal payloads with new ids pass."""
    a = Event(topic="x", data={"n": 1})
    a_again = Event.from_dict(a.to_dict())
    b = Event(topic="x", data={"n": 1})
    xs = scheduler.create_hot_observable(
        on_next(210, a), on_next(220, a_again), on_next(230, b), on_completed(240)
    )
    result = scheduler.start(lambda: xs.pipe(ops.dedupe()))
    assert result.messages == [on_next(210, a), on_next(230, b), on_completed(240)]


def test_key_function_and_count_window(scheduler: TestScheduler) -> None:
    """With window=2 a key pushed out by two newer keys passes again; a duplicate does not
    refresh its key."""
    xs = scheduler.create_hot_observable(
        *[on_next(210 + i, v) for i, v in enumerate(["a", "B", "A", "c", "b", "a"])],
        on_completed(300),
    )
    result = scheduler.start(lambda: xs.pipe(ops.dedupe(key=str.upper, window=2)))
    # a, B kept; A dup; c pushes out a; b still remembered (dup); a forgotten, kept again.
    assert [m.value.value for m in result.messages[:-1]] == ["a", "B", "c", "a"]


def test_ttl_forgets_keys_in_virtual_time(scheduler: TestScheduler) -> None:
    """With ttl=10 a key seen at 210 is a duplicate at 219 and new again at 220."""
    xs = scheduler.create_hot_observable(
        on_next(210, "a"),
        on_next(219, "a"),
        on_next(220, "a"),
        on_next(225, "a"),
        on_completed(300),
    )
    result = scheduler.start(lambda: xs.pipe(ops.dedupe(ttl=10.0)))
    assert [m.time for m in result.messages] == [210, 220, 300]


def test_memory_is_bounded_by_window() -> None:
    """100,000 distinct keys through window=1000 keep the set small: later repeats of early
    keys pass again (they were forgotten), recent ones do not."""
    out: list[int] = []
    reactivex.from_iterable([*range(100_000), 0, 99_999]).pipe(ops.dedupe(window=1000)).subscribe(
        out.append
    )
    assert len(out) == 100_001 and out[-1] == 0


def test_failing_key_is_dead_lettered(letters) -> None:
    """A key function that raises (or returns an unhashable) makes a dead letter, not an end."""
    out: list[object] = []
    reactivex.from_iterable([{"k": 1}, {}, {"k": [1]}, {"k": 2}]).pipe(
        ops.dedupe(key=lambda d: d["k"], dead_letters=letters.append)
    ).subscribe(out.append)
    assert out == [{"k": 1}, {"k": 2}]
    assert [type(d.error) for d in letters] == [KeyError, TypeError]


def test_duplicates_reported(scheduler: TestScheduler) -> None:
    """on_duplicate sees each dropped item."""
    dupes: list[str] = []
    reactivex.from_iterable("abab").pipe(ops.dedupe(on_duplicate=dupes.append)).subscribe()
    assert dupes == ["a", "b"]


def test_error_dispose_resubscribe(scheduler: TestScheduler) -> None:
    """Errors pass; disposal unsubscribes; each subscription has its own memory."""
    err = RuntimeError("x")
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(215, 1), on_error(220, err))
    assert scheduler.start(lambda: xs.pipe(ops.dedupe())).messages == [
        on_next(210, 1),
        on_error(220, err),
    ]
    cold = TestScheduler()
    ys = cold.create_cold_observable(on_next(1, "a"), on_next(2, "a"), on_completed(3))
    result = cold.start(lambda: ys.pipe(ops.dedupe(), rx.repeat(2)), disposed=205)
    assert [m.time for m in result.messages] == [201, 204]
    assert ys.subscriptions == [subscribe(200, 203), subscribe(203, 205)]


@pytest.mark.parametrize(("window", "ttl"), [(0, None), (1.5, None), (10, 0), (10, -1.0)])
def test_bad_arguments(window, ttl) -> None:
    """Bad window or ttl fails at once, naming it."""
    with pytest.raises(ValueError, match=r"window|ttl"):
        ops.dedupe(window=window, ttl=ttl)
