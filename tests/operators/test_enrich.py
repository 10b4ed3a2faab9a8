"""enrich(**metadata): metadata added, everything else kept."""

from __future__ import annotations

import pytest
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import Event
from rxbus.errors import PayloadError

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def test_adds_metadata_and_keeps_identity_fields(scheduler: TestScheduler) -> None:
    """id, topic, type, time, data and correlation id are kept; metadata merged, ours win."""
    ev = Event(
        topic="build.done",
        data={"ok": True},
        metadata={"host": "old", "run": 3},
        correlation_id="c-1",
        source="ci",
    )
    xs = scheduler.create_hot_observable(on_next(210, ev), on_completed(220))
    result = scheduler.start(lambda: xs.pipe(ops.enrich(host="ci-7", region="eu")))
    out = result.messages[0].value.value
    assert isinstance(out, Event) and out is not ev
    assert (
        out.id,
        out.topic,
        out.type,
        out.timestamp,
        out.data,
        out.source,
        out.correlation_id,
    ) == (ev.id, ev.topic, ev.type, ev.timestamp, ev.data, ev.source, ev.correlation_id)
    assert out.metadata == {"host": "ci-7", "run": 3, "region": "eu"}
    assert ev.metadata == {"host": "old", "run": 3}, "the shared input event is not mutated"
    assert Event.from_json(out.to_json()) == out
    assert result.messages[1] == on_completed(220)


def test_metadata_dict_is_not_shared_between_events(scheduler: TestScheduler) -> None:
    """Two enriched events get separate metadata dicts."""
    a, b = Event(topic="a"), Event(topic="b")
    xs = scheduler.create_hot_observable(on_next(210, a), on_next(220, b))
    result = scheduler.start(lambda: xs.pipe(ops.enrich(k=1)))
    first, second = (m.value.value for m in result.messages)
    assert first.metadata == second.metadata == {"k": 1}
    assert first.metadata is not second.metadata


def test_non_event_is_dead_lettered(scheduler: TestScheduler, consumer_context) -> None:
    """An item that is not an Event becomes a dead letter; the stream goes on."""
    dead, _ = consumer_context
    ev = Event(topic="a")
    xs = scheduler.create_hot_observable(on_next(210, {"topic": "a"}), on_next(220, ev))
    result = scheduler.start(lambda: xs.pipe(ops.enrich(k=1)))
    assert [m.time for m in result.messages] == [220]
    assert isinstance(dead[0].error, TypeError) and dead[0].consumer == "audit"


def test_error_dispose_and_resubscribe(scheduler: TestScheduler) -> None:
    """Errors pass; disposal unsubscribes; a repeated cold chain enriches again."""
    err = RuntimeError("x")
    xs = scheduler.create_hot_observable(on_error(210, err))
    assert scheduler.start(lambda: xs.pipe(ops.enrich(k=1))).messages == [on_error(210, err)]

    ev = Event(topic="a")
    ys = scheduler.create_cold_observable(on_next(10, ev), on_completed(20))
    result = scheduler.start(lambda: ys.pipe(ops.enrich(k=1), rx.repeat(2)), 1000, 1001, 1035)
    assert [m.time for m in result.messages] == [1011, 1031]
    assert ys.subscriptions == [subscribe(1001, 1021), subscribe(1021, 1035)]


def test_bad_metadata_raises_at_once() -> None:
    """Non-JSON metadata or none at all fails when the operator is built."""
    with pytest.raises(PayloadError, match="enrich"):
        ops.enrich(when=object())
    with pytest.raises(ValueError, match="enrich"):
        ops.enrich()
