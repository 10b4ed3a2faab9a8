"""Operator benchmarks: each rxbus operator next to its plain reactivex counterpart, same run.

- ``where`` vs ``reactivex.operators.filter`` (same predicate)
- ``transform`` vs ``reactivex.operators.map`` (same function)
- ``topic("bench.*")`` vs ``filter`` with the same compiled pattern
- ``batch(seconds, max_size)`` vs ``buffer_with_time_or_count`` (same limits, same timer scheduler)
- the chain ``topic -> where -> transform -> batch`` over 100,000 events vs
  ``filter -> filter -> map -> buffer_with_time_or_count``

Each round pushes the same prebuilt events straight into the chain's source observer (no
Subject, whose per-item lock and observer copy would hide the operators' own cost), for the
subject and its counterpart alike, and every benchmark checks the exact number of items delivered, so a
broken operator cannot post a fast number. Ratios (rxbus / reactivex, target 1.5x) are printed
at the end of the session by ``tests/benchmarks/conftest.py``; no timing is asserted.

Run measured: ``python -m pytest tests/benchmarks/test_operators.py --benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from reactivex import Observable
from reactivex import operators as rx
from reactivex.disposable import Disposable

import rxbus.operators as ops
from rxbus import Event
from rxbus.scheduling import TimerScheduler
from rxbus.topics import compile_pattern
from tests.benchmarks.conftest import Recorder

SINGLE = 10_000  # events per round for the one-operator comparisons
CHAIN = 100_000  # events per round for the chain (the count)
TOPICS = ("bench.a", "bench.b", "other.c", "bench.d.e")  # "bench.*" keeps half
PATTERN = "bench.*"
BATCH_SECONDS = 60.0  # long enough that, in a round, batches close on size only
BATCH_SIZE = 100


def make_events(n: int) -> list[Event]:
    """``n`` events cycling over 1,000 distinct ones (topics and ``n`` spread evenly)."""
    distinct = [
        Event._trusted(TOPICS[i % 4], "bench", {"n": i // 4}, "", {}, None) for i in range(1000)
    ]
    return [distinct[i % 1000] for i in range(n)]


def is_even(e: Event) -> bool:
    return e.data["n"] % 2 == 0


def payload(e: Event) -> int:
    return e.data["n"]  # type: ignore[no-any-return]


class Count:
    """A sink counting items, and the items inside lists for batch outputs."""

    __slots__ = ("items", "n")

    def __init__(self) -> None:
        self.n = 0
        self.items = 0

    def hit(self, _: object) -> None:
        self.n += 1

    def hit_list(self, batch: list[Any]) -> None:
        self.n += 1
        self.items += len(batch)


@pytest.fixture(scope="module")
def timers() -> Any:
    """One timer thread for both batch implementations, stopped after the module."""
    scheduler = TimerScheduler("bench-operators")
    yield scheduler
    scheduler.stop()


def drive(
    bench: Recorder,
    key: str,
    build: Callable[[Observable[Event]], Observable[Any]],
    n: int,
    sink: Callable[[Any], None],
) -> int:
    """Subscribe ``build(source)`` with ``sink`` and measure pushing ``n`` events per round."""
    heads: list[Any] = []

    def inlet(observer: Any, scheduler: Any = None) -> Disposable:
        heads.append(observer)
        return Disposable()

    events = make_events(n)
    build(Observable(inlet)).subscribe(sink)
    (head,) = heads
    push = head.on_next

    def run() -> None:
        for e in events:
            push(e)

    return bench.measure(key, run, ops=n)


SINGLES: dict[str, tuple[Callable[[], Any], Callable[[], Any], int]] = {
    # name: (rxbus operator factory, reactivex counterpart factory, items out per round)
    "where": (lambda: ops.where(is_even), lambda: rx.filter(is_even), SINGLE // 2),
    "transform": (lambda: ops.transform(payload), lambda: rx.map(payload), SINGLE),
    "topic": (
        lambda: ops.topic(PATTERN),
        lambda: rx.filter(_topic_predicate(PATTERN)),
        SINGLE // 2,
    ),
}


def _topic_predicate(pattern: str) -> Callable[[Event], bool]:
    match = compile_pattern(pattern)
    return lambda e: match(e.topic)


@pytest.mark.parametrize("impl", ["reactivex", "rxbus"])
@pytest.mark.parametrize("name", list(SINGLES))
def test_single_operator(bench: Recorder, name: str, impl: str) -> None:
    """One rxbus operator, or its reactivex counterpart, over 10,000 events per round."""
    ours, theirs, out_per_round = SINGLES[name]
    sink = Count()
    factory = ours if impl == "rxbus" else theirs
    calls = drive(bench, f"{name}.{impl}", lambda s: s.pipe(factory()), SINGLE, sink.hit)
    assert sink.n == calls * out_per_round
    if impl == "rxbus":
        bench.compare(
            f"ops.{name} vs reactivex {'map' if name == 'transform' else 'filter'}",
            subject=f"{name}.rxbus",
            floor=f"{name}.reactivex",
            target=1.5,
        )


@pytest.mark.parametrize("impl", ["reactivex", "rxbus"])
def test_batch(bench: Recorder, timers: TimerScheduler, impl: str) -> None:
    """batch(60 s, 100) vs buffer_with_time_or_count(60 s, 100), 10,000 events per round."""
    sink = Count()
    if impl == "rxbus":
        op = ops.batch(BATCH_SECONDS, BATCH_SIZE, scheduler=timers)
    else:
        op = rx.buffer_with_time_or_count(BATCH_SECONDS, BATCH_SIZE, scheduler=timers)
    calls = drive(bench, f"batch.{impl}", lambda s: s.pipe(op), SINGLE, sink.hit_list)
    assert sink.items == calls * SINGLE
    if impl == "rxbus":
        assert sink.n == calls * SINGLE // BATCH_SIZE
        bench.compare(
            "ops.batch vs reactivex buffer_with_time_or_count",
            subject="batch.rxbus",
            floor="batch.reactivex",
            target=1.5,
        )


@pytest.mark.parametrize("impl", ["reactivex", "rxbus"])
def test_chain(bench: Recorder, timers: TimerScheduler, impl: str) -> None:
    """topic -> where -> transform -> batch over 100,000 events per round, vs the same chain
    built from reactivex filter, filter, map and buffer_with_time_or_count."""
    sink = Count()
    if impl == "rxbus":

        def build(s: Observable[Event]) -> Observable[Any]:
            return s.pipe(
                ops.topic(PATTERN),
                ops.where(is_even),
                ops.transform(payload),
                ops.batch(BATCH_SECONDS, BATCH_SIZE, scheduler=timers),
            )

    else:

        def build(s: Observable[Event]) -> Observable[Any]:
            return s.pipe(
                rx.filter(_topic_predicate(PATTERN)),
                rx.filter(is_even),
                rx.map(payload),
                rx.buffer_with_time_or_count(BATCH_SECONDS, BATCH_SIZE, scheduler=timers),
            )

    calls = drive(bench, f"chain.{impl}", build, CHAIN, sink.hit_list)
    assert sink.items == calls * CHAIN // 4  # half match the topic, half of those are even
    if impl == "rxbus":
        assert sink.n == calls * CHAIN // 4 // BATCH_SIZE
        bench.compare(
            "chain topic->where->transform->batch (100,000 events)",
            subject="chain.rxbus",
            floor="chain.reactivex",
            target=1.5,
        )
