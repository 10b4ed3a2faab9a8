"""rxbus.testing.record: notifications with their times, one lane per stream."""

from __future__ import annotations

import threading

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxbus.testing import Notification, record


def test_records_values_and_completion_of_a_cold_stream() -> None:
    """A synchronous stream is recorded in full, ending with a completion."""
    rec = record(reactivex.of(1, 2, 3))
    assert rec.values == [1, 2, 3]
    assert rec.completed
    assert rec.error is None
    assert [n.kind for n in rec["stream"].notifications] == ["next", "next", "next", "completed"]


def test_virtual_time_is_the_schedulers_clock() -> None:
    """Under a TestScheduler each notification carries its exact virtual time."""
    scheduler = TestScheduler()
    rec = record(reactivex.interval(10.0).pipe(rx.take(3)), scheduler=scheduler, name="ticks")
    scheduler.start()
    lane = rec["ticks"]
    assert lane.values == [0, 1, 2]
    assert lane.times == [10.0, 20.0, 30.0]
    assert lane.notifications[-1] == Notification(30.0, "completed")


def test_scheduler_is_passed_to_time_based_operators() -> None:
    """A debounce with no explicit scheduler still runs in the recording's virtual time."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        reactivex.testing.ReactiveTest.on_next(210, "a"),
        reactivex.testing.ReactiveTest.on_next(212, "b"),
        reactivex.testing.ReactiveTest.on_next(300, "c"),
        reactivex.testing.ReactiveTest.on_completed(400),
    )
    rec = record({"debounced": source.pipe(rx.debounce(5.0))}, scheduler=scheduler)
    scheduler.start()
    assert rec["debounced"].values == ["b", "c"]
    assert rec["debounced"].times == [217.0, 305.0]
    assert rec["debounced"].completed


def test_one_lane_per_stream_in_order() -> None:
    """A mapping records each stream in its own lane, in the mapping's order."""
    source = reactivex.of(1, 2, 3, 4)
    rec = record({"source": source, "even": source.pipe(rx.filter(lambda x: x % 2 == 0))})
    assert [lane.name for lane in rec] == ["source", "even"]
    assert rec["even"].values == [2, 4]
    with pytest.raises(ValueError, match="2 lanes"):
        _ = rec.values


def test_error_is_recorded_with_its_exception() -> None:
    """A failing stream ends its lane with the exception."""
    boom = ValueError("boom")
    rec = record(reactivex.concat(reactivex.of(1), reactivex.throw(boom)))
    assert rec.values == [1]
    assert rec.error is boom
    assert not rec.completed
    assert rec["stream"].ended


def test_hot_stream_from_another_thread_and_wait() -> None:
    """A subject fed from a thread is recorded; wait() polls until the count is reached."""
    subject: Subject[int] = Subject()
    rec = record(subject)

    def feed() -> None:
        for i in range(100):
            subject.on_next(i)
        subject.on_completed()

    thread = threading.Thread(target=feed)
    thread.start()
    assert rec.wait(101, timeout=5.0)
    thread.join()
    assert rec.values == list(range(100))
    times = rec["stream"].times
    assert times == sorted(times) and times[0] >= 0.0


def test_dispose_stops_recording() -> None:
    """After dispose() nothing more is recorded; the context manager disposes too."""
    subject: Subject[int] = Subject()
    with record(subject) as rec:
        subject.on_next(1)
    subject.on_next(2)
    assert rec.values == [1]


def test_bad_input_names_the_lane() -> None:
    """A non-Observable, an empty mapping, or a duplicate lane is one clear error."""
    with pytest.raises(TypeError, match="'x'"):
        record({"x": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="empty"):
        record({})
    rec = record(reactivex.of(1), name="a")
    with pytest.raises(ValueError, match="'a' already exists"):
        rec.add("a", reactivex.of(2))
    with pytest.raises(KeyError, match="lanes are"):
        rec["nope"]
