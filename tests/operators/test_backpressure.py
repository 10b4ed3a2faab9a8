"""backpressure(capacity, overflow): a bounded queue, one drain loop, every drop counted."""

from __future__ import annotations

import threading

import pytest
import reactivex
from reactivex import abc
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

import rxbus.operators as ops
from rxbus import Overflow
from rxbus.errors import BufferOverflowError
from rxbus.metrics import MetricsRegistry
from rxbus.scheduling import TimerScheduler

on_next, on_error, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def burst(scheduler: TestScheduler, items: list[object], at: float = 210) -> Subject[object]:
    """A subject fed ``items`` in one virtual-time action, so the drain runs after them all."""
    subject: Subject[object] = Subject()

    def emit(_: abc.SchedulerBase, __: object = None) -> None:
        for item in items:
            subject.on_next(item)

    scheduler.schedule_absolute(at, emit)
    return subject


def run_burst(policy: Overflow, items: list[object], capacity: int = 3):
    clock = TestScheduler()
    subject = burst(clock, items)
    out: list[object] = []
    dropped: list[object] = []
    subject.pipe(ops.backpressure(capacity, policy, on_drop=dropped.append)).subscribe(
        out.append, scheduler=clock
    )
    clock.start()
    return out, dropped


def test_drop_oldest_keeps_the_newest() -> None:
    """DROP_OLDEST: a..f into 3 slots delivers d, e, f and reports a, b, c."""
    assert run_burst(Overflow.DROP_OLDEST, list("abcdef")) == (list("def"), list("abc"))


def test_drop_newest_keeps_the_first() -> None:
    """DROP_NEWEST: the queue keeps a, b, c; d, e, f are dropped."""
    assert run_burst(Overflow.DROP_NEWEST, list("abcdef")) == (list("abc"), list("def"))


def test_latest_keeps_only_the_newest_item_when_full() -> None:
    """LATEST: when full, everything queued is dropped and the new item kept."""
    out, dropped = run_burst(Overflow.LATEST, list("abcdefg"))
    # a,b,c fill; d clears them -> [d]; e, f fill -> [d,e,f]; g clears -> [g].
    assert (out, dropped) == (["g"], list("abcdef"))


def test_block_on_one_thread_delivers_itself_and_drops_nothing() -> None:
    """BLOCK with the drain on the producer's own thread: the producer makes room by
    delivering, in order, so nothing is lost and nothing deadlocks."""
    assert run_burst(Overflow.BLOCK, list("abcdefgh")) == (list("abcdefgh"), [])


def test_error_policy_ends_after_queued_items() -> None:
    """ERROR: queued items are delivered, then BufferOverflowError; the source is cut."""
    clock = TestScheduler()
    subject = burst(clock, list("abcde"))
    out: list[object] = []
    errors: list[Exception] = []
    dropped: list[object] = []
    subject.pipe(ops.backpressure(3, "error", on_drop=dropped.append)).subscribe(
        out.append, errors.append, scheduler=clock
    )
    clock.start()
    assert out == list("abc")
    assert dropped == ["d"]
    assert len(errors) == 1 and isinstance(errors[0], BufferOverflowError)
    assert not subject.observers, "the source subscription was disposed"


def terminal_after_items(terminal: str) -> list[object]:
    """Feed 1, 2 and a terminal notification in one action; return what downstream saw."""
    clock = TestScheduler()
    subject: Subject[int] = Subject()
    log: list[object] = []

    def feed(_: abc.SchedulerBase, __: object = None) -> None:
        subject.on_next(1)
        subject.on_next(2)
        if terminal == "completed":
            subject.on_completed()
        else:
            subject.on_error(RuntimeError("end"))

    clock.schedule_absolute(210, feed)
    subject.pipe(ops.backpressure(10)).subscribe(
        log.append,
        lambda e: log.append(f"error {e}"),
        lambda: log.append("done"),
        scheduler=clock,
    )
    clock.start()
    return log


def test_terminal_notifications_come_after_queued_items() -> None:
    """Completion queued behind items is delivered after them; likewise an error."""
    assert terminal_after_items("completed") == [1, 2, "done"]
    assert terminal_after_items("error") == [1, 2, "error end"]


def test_marble_timing_is_kept_when_not_overflowing(scheduler: TestScheduler) -> None:
    """With room to spare, items come out at their own virtual times."""
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(220, 2), on_completed(230))
    result = scheduler.start(lambda: xs.pipe(ops.backpressure(4, Overflow.DROP_NEWEST)))
    assert result.messages == [on_next(210, 1), on_next(220, 2), on_completed(230)]


def test_dispose_drops_queue_and_unsubscribes(scheduler: TestScheduler) -> None:
    """Disposal unsubscribes from the source and delivers nothing more."""
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(260, 2), on_completed(300))
    result = scheduler.start(lambda: xs.pipe(ops.backpressure(4)), disposed=250)
    assert result.messages == [on_next(210, 1)]
    assert xs.subscriptions == [subscribe(200, 250)]


def test_resubscription_gets_its_own_queue(scheduler: TestScheduler) -> None:
    """Each subscription has its own queue, drain and drop count."""
    dropped: list[int] = []
    chain = reactivex.from_iterable(range(5)).pipe(
        ops.backpressure(2, Overflow.DROP_NEWEST, on_drop=dropped.append)
    )
    a: list[int] = []
    b: list[int] = []
    chain.subscribe(a.append, scheduler=scheduler)
    chain.subscribe(b.append, scheduler=scheduler)
    scheduler.start()
    # from_iterable emits its burst within one action, before either drain runs.
    assert a == b == [0, 1]
    assert dropped == [2, 3, 4, 2, 3, 4]


def test_drops_counted_in_registry_and_bus_context(consumer_context) -> None:
    """Without on_drop, drops tick `<name>.dropped` in the registry (the bus's by default)."""
    _, bus_registry = consumer_context
    clock = TestScheduler()
    subject = burst(clock, list(range(10)))
    subject.pipe(ops.backpressure(4, Overflow.DROP_OLDEST, name="bp")).subscribe(
        lambda _: None, scheduler=clock
    )
    clock.start()
    assert bus_registry.snapshot()["bp.dropped"]["count"] == 6

    explicit = MetricsRegistry()
    clock2 = TestScheduler()
    subject2 = burst(clock2, list(range(10)))
    subject2.pipe(ops.backpressure(4, "drop_newest", registry=explicit)).subscribe(
        lambda _: None, scheduler=clock2
    )
    clock2.start()
    assert explicit.snapshot()["backpressure.dropped"]["count"] == 6


def test_real_threads_block_counts_every_event_and_never_overlaps() -> None:
    """Four producer threads, a drain on a timer thread, BLOCK: all 20,000 items arrive, in
    per-producer order, and downstream never runs concurrently."""
    timer = TimerScheduler("bp-test")
    subject: Subject[tuple[int, int]] = Subject()
    received: list[tuple[int, int]] = []
    active = [0]
    overlap = [False]
    done = threading.Event()

    def sink(item: tuple[int, int]) -> None:
        active[0] += 1
        if active[0] != 1:
            overlap[0] = True
        received.append(item)
        active[0] -= 1

    subject.pipe(ops.backpressure(64, Overflow.BLOCK)).subscribe(
        sink, on_completed=done.set, scheduler=timer
    )
    per_thread = 5_000

    def produce(k: int) -> None:
        for i in range(per_thread):
            subject.on_next((k, i))

    try:
        producers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for t in producers:
            t.start()
        for t in producers:
            t.join(timeout=60)
        subject.on_completed()
        assert done.wait(timeout=60)
    finally:
        timer.stop()
    assert len(received) == 4 * per_thread
    assert not overlap[0]
    for k in range(4):
        assert [i for kk, i in received if kk == k] == list(range(per_thread))


def test_real_threads_drop_policy_counts_add_up() -> None:
    """DROP_OLDEST under real threads: delivered + dropped == produced, exactly."""
    timer = TimerScheduler("bp-test-drop")
    subject: Subject[int] = Subject()
    received: list[int] = []
    dropped: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def on_drop(item: int) -> None:
        with lock:
            dropped.append(item)

    subject.pipe(ops.backpressure(8, Overflow.DROP_OLDEST, on_drop=on_drop)).subscribe(
        received.append, on_completed=done.set, scheduler=timer
    )

    def produce(k: int) -> None:
        for i in range(5_000):
            subject.on_next(k * 10_000 + i)

    try:
        producers = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
        for t in producers:
            t.start()
        for t in producers:
            t.join(timeout=60)
        subject.on_completed()
        assert done.wait(timeout=60)
    finally:
        timer.stop()
    assert len(received) + len(dropped) == 15_000
    assert sorted(received + dropped) == sorted(
        k * 10_000 + i for k in range(3) for i in range(5_000)
    )


@pytest.mark.parametrize(("capacity", "overflow"), [(0, "block"), (2.5, "block"), (3, "spill")])
def test_bad_arguments(capacity, overflow) -> None:
    """Bad capacity or overflow names fail at once."""
    with pytest.raises(ValueError, match=r"capacity|overflow"):
        ops.backpressure(capacity, overflow)
