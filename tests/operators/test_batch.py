"""batch(seconds, max_size): lists by size at once, by time after the first item, never empty."""

from __future__ import annotations

import asyncio
import threading

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def test_emits_at_once_on_size(scheduler: TestScheduler) -> None:
    """The third item fills the batch, which is emitted at that item's time."""
    xs = scheduler.create_hot_observable(
        on_next(210, 1), on_next(211, 2), on_next(212, 3), on_next(213, 4), on_completed(400)
    )
    result = scheduler.start(lambda: xs.pipe(ops.batch(seconds=50, max_size=3)))
    assert result.messages == [on_next(212, [1, 2, 3]), on_next(263, [4]), on_completed(400)]


def test_time_window_starts_with_first_item_and_no_empty_batches(scheduler: TestScheduler) -> None:
    """A batch closes `seconds` after its first item; quiet periods emit nothing."""
    xs = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(230, "b"), on_next(500, "c"), on_completed(900)
    )
    result = scheduler.start(lambda: xs.pipe(ops.batch(seconds=50, max_size=10)))
    assert result.messages == [on_next(260, ["a", "b"]), on_next(550, ["c"]), on_completed(900)]


def test_flushes_on_completion(scheduler: TestScheduler) -> None:
    """What is held is emitted before on_completed, at completion time."""
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(220, 2), on_completed(230))
    result = scheduler.start(lambda: xs.pipe(ops.batch(seconds=100, max_size=10)))
    assert result.messages == [on_next(230, [1, 2]), on_completed(230)]


def test_flushes_on_error(scheduler: TestScheduler) -> None:
    """What is held is emitted before on_error; the pending timer does not fire later."""
    err = RuntimeError("source failed")
    xs = scheduler.create_hot_observable(on_next(210, 1), on_error(220, err))
    result = scheduler.start(lambda: xs.pipe(ops.batch(seconds=100, max_size=10)))
    assert result.messages == [on_next(220, [1]), on_error(220, err)]


def test_empty_source_emits_no_batch(scheduler: TestScheduler) -> None:
    """Completion with nothing held emits only on_completed."""
    xs = scheduler.create_hot_observable(on_completed(300))
    result = scheduler.start(lambda: xs.pipe(ops.batch(seconds=10, max_size=2)))
    assert result.messages == [on_completed(300)]


def test_size_only_and_time_only(scheduler: TestScheduler) -> None:
    """seconds=None batches by size alone; max_size=None by time alone."""
    xs = scheduler.create_hot_observable(
        *[on_next(210 + i, i) for i in range(5)], on_completed(600)
    )
    by_size = scheduler.start(lambda: xs.pipe(ops.batch(None, 2)))
    assert by_size.messages == [
        on_next(211, [0, 1]),
        on_next(213, [2, 3]),
        on_next(600, [4]),
        on_completed(600),
    ]
    scheduler2 = TestScheduler()
    ys = scheduler2.create_hot_observable(
        *[on_next(210 + i, i) for i in range(5)], on_completed(600)
    )
    by_time = scheduler2.start(lambda: ys.pipe(ops.batch(3.0)))
    assert by_time.messages == [on_next(213, [0, 1, 2, 3]), on_next(217, [4]), on_completed(600)]


def test_dispose_cancels_timer_and_drops_open_batch(scheduler: TestScheduler) -> None:
    """After disposal no batch is emitted, not even by the pending timer."""
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(220, 2), on_completed(400))
    result = scheduler.start(lambda: xs.pipe(ops.batch(seconds=50, max_size=10)), disposed=230)
    assert result.messages == []
    assert xs.subscriptions == [subscribe(200, 230)]


def test_resubscription_gets_fresh_state(scheduler: TestScheduler) -> None:
    """Each subscription has its own buffer and timer."""
    xs = scheduler.create_cold_observable(on_next(10, 1), on_next(20, 2), on_completed(30))
    result = scheduler.start(lambda: xs.pipe(ops.batch(seconds=5, max_size=10), rx.repeat(2)))
    assert result.messages == [
        on_next(215, [1]),
        on_next(225, [2]),
        on_next(245, [1]),
        on_next(255, [2]),
        on_completed(260),
    ]


def test_operator_scheduler_used_when_subscribe_gives_none() -> None:
    """scheduler= on the operator drives the timer when subscribe passes none."""
    clock = TestScheduler()
    subject: Subject[int] = Subject()
    out: list[list[int]] = []
    subject.pipe(ops.batch(seconds=5, max_size=10, scheduler=clock)).subscribe(out.append)
    subject.on_next(1)
    assert out == []
    clock.advance_by(5)
    assert out == [[1]]


def test_subscribe_scheduler_wins_over_operator_scheduler() -> None:
    """The scheduler given to subscribe drives the timer even if the operator has one."""
    given, at_subscribe = TestScheduler(), TestScheduler()
    subject: Subject[int] = Subject()
    out: list[list[int]] = []
    subject.pipe(ops.batch(seconds=5, scheduler=given)).subscribe(
        out.append, scheduler=at_subscribe
    )
    subject.on_next(1)
    given.advance_by(10)
    assert out == []
    at_subscribe.advance_by(5)
    assert out == [[1]]


def test_reentrant_feed_does_not_deadlock() -> None:
    """A downstream that pushes into the source while receiving a batch is handled."""
    subject: Subject[int] = Subject()
    out: list[list[int]] = []

    def sink(items: list[int]) -> None:
        out.append(items)
        if items[0] == 1:
            subject.on_next(99)

    subject.pipe(ops.batch(seconds=None, max_size=2)).subscribe(sink)
    for i in (1, 2, 3):
        subject.on_next(i)
    assert out == [[1, 2], [99, 3]]


@pytest.fixture
def thread_starts(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """Every thread started while the test runs (threads of earlier tests may end meanwhile)."""
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    return started


def test_ten_thousand_timed_batches_on_asyncio_start_no_thread(
    thread_starts: list[threading.Thread],
) -> None:
    """10,000 batches, each closed by its timer, run on the loop's thread and start no thread."""

    async def main() -> tuple[int, set[int], int]:
        loop = asyncio.get_running_loop()
        subject: Subject[int] = Subject()
        batches = 0
        emitted_on: set[int] = set()
        total = 0
        ready = asyncio.Event()

        def on_batch(items: list[int]) -> None:
            nonlocal batches, total
            batches += 1
            total += len(items)
            emitted_on.add(threading.get_ident())
            ready.set()

        subject.pipe(ops.batch(seconds=1e-6, max_size=1000)).subscribe(
            on_batch, scheduler=AsyncIOScheduler(loop)
        )
        for i in range(10_000):
            ready.clear()
            subject.on_next(i)
            subject.on_next(i)
            await ready.wait()  # the batch's timer fires on the loop
        subject.on_completed()
        return batches, emitted_on, total

    batches, emitted_on, total = asyncio.run(main())
    assert batches == 10_000
    assert total == 20_000
    assert emitted_on == {threading.get_ident()}
    assert thread_starts == []


def test_ten_thousand_size_batches_on_asyncio_start_no_thread(
    thread_starts: list[threading.Thread],
) -> None:
    """Size-closed batches on an AsyncIOScheduler: every item counted, no thread started."""

    async def main() -> list[list[int]]:
        out: list[list[int]] = []
        done = asyncio.Event()
        reactivex.from_iterable(range(50_000)).pipe(ops.batch(seconds=60, max_size=5)).subscribe(
            out.append,
            on_completed=done.set,
            scheduler=AsyncIOScheduler(asyncio.get_running_loop()),
        )
        await done.wait()
        return out

    out = asyncio.run(main())
    assert len(out) == 10_000
    assert [x for b in out for x in b] == list(range(50_000))
    assert thread_starts == []


@pytest.mark.parametrize(
    ("seconds", "max_size", "match"),
    [
        (0, 5, "seconds"),
        (-1, 5, "seconds"),
        (1, 0, "max_size"),
        (1, 2.5, "max_size"),
        (None, None, "neither"),
    ],
)
def test_bad_arguments_raise_naming_them(seconds, max_size, match: str) -> None:
    """Non-positive sizes or times, or neither limit, fail at once."""
    with pytest.raises(ValueError, match=match):
        ops.batch(seconds, max_size)
