"""Every reactivex operator a consumer chain can hold gives, inside the bus, the output it gives
over a plain Subject fed the same events, in virtual time (TestScheduler)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import reactivex
import reactivex.operators as rx
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from rxbus import Event, EventBus

# (virtual time, i): events published to "t.x" (and one to "u.x" that no chain may see)
SCHEDULE = [(1.0, 0), (2.0, 1), (2.5, 2), (4.0, 3), (7.0, 4), (7.2, 5), (9.0, 6), (12.0, 7)]
END = 20.0


def _fails_once_on(i: int) -> Callable[[Any], Any]:
    failed: list[bool] = []

    def fn(v: int) -> int:
        if v == i and not failed:
            failed.append(True)
            raise ValueError(f"first try of {v}")
        return v

    return fn


# Each case builds its operators fresh for each run (operators with state must not be shared).
CASES: dict[str, Callable[[TestScheduler], tuple[Any, ...]]] = {
    "retry": lambda ts: (rx.map(_fails_once_on(2)), rx.retry(3)),
    "catch": lambda ts: (rx.map(_fails_once_on(3)), rx.catch(reactivex.of(-1))),
    "start_with": lambda ts: (rx.start_with(-1, -2),),
    "repeat": lambda ts: (rx.take(2), rx.repeat(2)),
    "subscribe_on": lambda ts: (rx.subscribe_on(ts),),
    "observe_on": lambda ts: (rx.observe_on(ts),),
    "delay_subscription": lambda ts: (rx.delay_subscription(2.2, scheduler=ts),),
    "delay": lambda ts: (rx.delay(1.5),),
    "scan": lambda ts: (rx.scan(lambda a, x: a + x, 0),),
    "distinct": lambda ts: (rx.map(lambda x: x % 3), rx.distinct()),
    "distinct_until_changed": lambda ts: (rx.map(lambda x: x // 2), rx.distinct_until_changed()),
    "buffer_with_count": lambda ts: (rx.buffer_with_count(3),),
    "buffer_with_time": lambda ts: (rx.buffer_with_time(3.0),),
    "buffer_with_time_or_count": lambda ts: (rx.buffer_with_time_or_count(5.0, 3),),
    "window_with_count": lambda ts: (
        rx.window_with_count(2),
        rx.flat_map(lambda w: w.pipe(rx.to_list())),
    ),
    "group_by_flat_map": lambda ts: (
        rx.group_by(lambda x: x % 2),
        rx.flat_map(lambda g: g.pipe(rx.to_list(), rx.map(lambda xs, k=g.key: (k, xs)))),
    ),
    "take": lambda ts: (rx.take(3),),
    "skip": lambda ts: (rx.skip(2),),
    "take_until": lambda ts: (rx.take_until(reactivex.timer(5.0, scheduler=ts)),),
    "pairwise": lambda ts: (rx.pairwise(),),
    "debounce": lambda ts: (rx.debounce(1.0),),
    "throttle_first": lambda ts: (rx.throttle_first(2.0),),
    "sample": lambda ts: (rx.sample(3.0),),
    "share": lambda ts: (rx.share(),),
    "take_last": lambda ts: (rx.take_last(2),),
    "to_list": lambda ts: (rx.to_list(),),
    "merge_with_timer": lambda ts: (
        rx.merge(reactivex.timer(3.0, scheduler=ts).pipe(rx.map(lambda _: 99))),
    ),
    "timeout_with_fallback": lambda ts: (rx.timeout(2.9, reactivex.of(-9)),),
}


def _ops(case: str, ts: TestScheduler) -> tuple[Any, ...]:
    return (rx.map(lambda e: e.data["i"]), *CASES[case](ts))


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _over_subject(case: str) -> list[tuple[float, Any]]:
    ts = TestScheduler()
    subject: Subject[Event] = Subject()
    out: list[tuple[float, Any]] = []
    subject.pipe(*_ops(case, ts)).subscribe(
        lambda v: out.append((ts.clock, _plain(v))),
        lambda e: out.append((ts.clock, f"error {e}")),
        lambda: out.append((ts.clock, "|")),
        scheduler=ts,
    )
    for t, i in SCHEDULE:
        event = Event(topic="t.x", data={"i": i})
        ts.schedule_absolute(t, lambda *_, e=event: subject.on_next(e))
    ts.schedule_absolute(END, lambda *_: subject.on_completed())
    ts.start()
    return out


def _over_bus(case: str) -> tuple[list[tuple[float, Any]], EventBus]:
    ts = TestScheduler()
    bus = EventBus(name="table")
    out: list[tuple[float, Any]] = []

    class Sink:
        def on_next(self, v: Any) -> None:
            out.append((ts.clock, _plain(v)))

        def on_error(self, e: Exception) -> None:
            out.append((ts.clock, f"error {e}"))

        def on_completed(self) -> None:
            out.append((ts.clock, "|"))

    bus.subscribe(Sink(), *_ops(case, ts), topic="t.*", scheduler=ts, name="chain")
    for t, i in SCHEDULE:
        ts.schedule_absolute(t, lambda *_, i=i: bus.publish("t.x", {"i": i}))
        ts.schedule_absolute(t, lambda *_, i=i: bus.publish("u.x", {"i": i}))
    ts.schedule_absolute(END, lambda *_: bus.close())
    ts.start()
    return out, bus


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_chain_in_the_bus_gives_what_it_gives_over_a_subject(case: str) -> None:
    expected = _over_subject(case)
    got, bus = _over_bus(case)
    assert got == expected
    m = bus.metrics()
    assert m["dead_lettered"] == 0, bus.recent_dead_letters()
    c = m["consumers"]["chain"]
    assert c["received"] <= len(SCHEDULE)  # fewer once a chain completed itself (take)
    assert c["received"] == c["delivered"] + c["failed"] + c["dropped"] + c["queued"]


def test_the_table_covers_the_operators_the_issue_names() -> None:
    named = {
        "retry", "catch", "start_with", "repeat", "subscribe_on", "observe_on",
        "delay_subscription", "scan", "distinct", "buffer_with_count",
        "buffer_with_time_or_count", "window_with_count", "group_by_flat_map", "take", "skip",
        "take_until", "pairwise", "debounce", "throttle_first", "sample", "share",
    }  # fmt: skip
    assert named <= set(CASES)


def test_an_event_no_chain_subscription_hears_is_dropped_not_delivered() -> None:
    """Before ``subscribe_on`` has subscribed, a Subject loses the event: so does the chain,
    and it is counted as dropped."""
    ts = TestScheduler()
    bus = EventBus()
    got: list[Event] = []
    c = bus.subscribe(got.append, rx.subscribe_on(ts), scheduler=ts)
    bus.publish("a.b")
    ts.advance_by(1.0)
    later = bus.publish("a.c")
    assert got == [later]
    assert c.stats.dropped == 1 and c.stats.delivered == 1
    bus.close()
