"""topic(pattern): routing by topic, in virtual time."""

from __future__ import annotations

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import Event
from rxbus.errors import InvalidTopicError

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)

A = Event(topic="hook.tool")
B = Event(topic="build.error")
C = Event(topic="hook.tool.pre")
D = Event(topic="hook")


def run(scheduler: TestScheduler, pattern: str, *messages, disposed: int = 1000):
    xs = scheduler.create_hot_observable(*messages)
    result = scheduler.start(lambda: xs.pipe(ops.topic(pattern)), disposed=disposed)
    return xs, result


def test_single_wildcard_keeps_exactly_one_segment(scheduler: TestScheduler) -> None:
    """`hook.*` keeps hook.tool, not hook nor hook.tool.pre nor build.error."""
    _, result = run(
        scheduler,
        "hook.*",
        on_next(210, A),
        on_next(220, B),
        on_next(230, C),
        on_next(240, D),
        on_next(250, A),
        on_completed(300),
    )
    assert result.messages == [on_next(210, A), on_next(250, A), on_completed(300)]


def test_double_wildcard_keeps_zero_or_more_segments(scheduler: TestScheduler) -> None:
    """`hook.**` keeps hook, hook.tool and hook.tool.pre."""
    _, result = run(
        scheduler,
        "hook.**",
        on_next(210, A),
        on_next(220, B),
        on_next(230, C),
        on_next(240, D),
        on_completed(300),
    )
    assert result.messages == [
        on_next(210, A),
        on_next(230, C),
        on_next(240, D),
        on_completed(300),
    ]


def test_literal_pattern_matches_equal_topic_only(scheduler: TestScheduler) -> None:
    """A pattern without wildcards is an equality test."""
    _, result = run(
        scheduler, "hook.tool", on_next(210, A), on_next(220, C), on_next(230, B), on_completed(240)
    )
    assert result.messages == [on_next(210, A), on_completed(240)]


def test_match_everything_is_the_source_itself() -> None:
    """`**` adds no layer: the operator returns its source."""
    source = TestScheduler().create_cold_observable(on_next(10, A))
    assert ops.topic("**")(source) is source


def test_error_passes_through(scheduler: TestScheduler) -> None:
    """on_error of the source reaches the observer."""
    err = RuntimeError("boom")
    _, result = run(scheduler, "hook.*", on_next(210, B), on_next(220, A), on_error(230, err))
    assert result.messages == [on_next(220, A), on_error(230, err)]


def test_dispose_unsubscribes_from_source(scheduler: TestScheduler) -> None:
    """Disposal at 235 stops delivery and unsubscribes from the source."""
    xs, result = run(
        scheduler, "hook.*", on_next(210, A), on_next(240, A), on_completed(300), disposed=235
    )
    assert result.messages == [on_next(210, A)]
    assert xs.subscriptions == [subscribe(200, 235)]


def test_resubscription_starts_over(scheduler: TestScheduler) -> None:
    """Each subscription to a cold source gets the whole filtered sequence."""
    xs = scheduler.create_cold_observable(on_next(10, A), on_next(20, B), on_completed(30))
    result = scheduler.start(lambda: xs.pipe(ops.topic("hook.*"), rx.repeat(2)))
    assert result.messages == [
        on_next(210, A),
        on_next(240, A),
        on_completed(260),
    ]
    assert xs.subscriptions == [subscribe(200, 230), subscribe(230, 260)]


def test_many_distinct_topics_keep_matching_correctly(scheduler: TestScheduler) -> None:
    """The per-topic cache is bounded and answers stay right past its limit."""
    events = [Event(topic=f"hook.t{i}") for i in range(5000)] + [Event(topic="other.x")] * 3
    seen: list[Event] = []
    op = ops.topic("hook.*")
    for _ in range(2):
        seen.clear()
        reactivex.from_iterable(events).pipe(op).subscribe(seen.append)
        assert len(seen) == 5000


def test_item_without_topic_becomes_dead_letter(consumer_context) -> None:
    """Inside a bus consumer a non-Event item is a dead letter; the stream goes on."""
    dead, _ = consumer_context
    seen: list[object] = []
    reactivex.from_iterable([A, 42, A]).pipe(ops.topic("hook.*")).subscribe(seen.append)
    assert seen == [A, A]
    assert [d.event for d in dead] == [42]
    assert dead[0].consumer == "audit"
    assert isinstance(dead[0].error, TypeError)


@pytest.mark.parametrize("bad", ["", "hook..tool", "hook.*x", "a b", 7])
def test_invalid_pattern_raises_at_once(bad: object) -> None:
    """A malformed pattern fails when the operator is built, naming the pattern."""
    with pytest.raises(InvalidTopicError, match="pattern"):
        ops.topic(bad)  # type: ignore[arg-type]
