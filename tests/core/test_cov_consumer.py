"""Consumers: chain failures of every kind, completion and error of sinks, the sync emitter's
hand-over, overflow in each mode, async timers and completions, and refusal after disposal.

Every test checks the conservation law ``received == delivered + failed + dropped + queued``
where a consumer has received events."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import reactivex as rx
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.testing import TestScheduler

from rxbus import (
    BufferOverflowError,
    BusClosedError,
    Consumer,
    DeadLetter,
    Event,
    EventBus,
    Overflow,
)
from rxbus.testing import TestBus
from tests.conftest import wait_until, wait_until_async
from tests.core.chains import fails_after_a_second


def counts(c: Consumer) -> tuple[int, int, int, int, int]:
    """(received, delivered, failed, dropped, queued), after checking they are conserved."""
    s = c.stats
    assert s.received == s.delivered + s.failed + s.dropped + s.queued, s
    return (s.received, s.delivered, s.failed, s.dropped, s.queued)


def errors(bus: EventBus) -> list[str]:
    return [f"{type(d.error).__name__}: {d.error}" for d in bus.recent_dead_letters()]


class Recorder:
    """An observer sink that records what it gets."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.completed = 0
        self.errors: list[Exception] = []

    def on_next(self, item: Any) -> None:
        self.items.append(item)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def on_completed(self) -> None:
        self.completed += 1


def raw_operator(on_next: Any = None, on_completed: Any = None, on_dispose: Any = None) -> Any:
    """An operator written by hand that may raise from its callbacks (not via on_error)."""

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
            def next_(item: Any) -> None:
                if on_next is not None:
                    on_next(item)
                observer.on_next(item)

            def completed() -> None:
                if on_completed is not None:
                    on_completed()
                observer.on_completed()

            inner = source.subscribe(next_, observer.on_error, completed, scheduler=scheduler)

            def dispose() -> None:
                inner.dispose()
                if on_dispose is not None:
                    on_dispose()

            return Disposable(dispose)

        return Observable(subscribe)

    return operator


def fail(message: str) -> Any:
    def raiser(*_: Any) -> None:
        raise RuntimeError(message)

    return raiser


class TestArguments:
    def test_an_operator_that_is_not_callable_is_refused_naming_it(self, bus: EventBus) -> None:
        """subscribe(sink, 42) raises TypeError naming the value and what would be valid."""
        with pytest.raises(TypeError, match=r"operators must be callables .* got int: 42"):
            bus.subscribe(print, 42)  # type: ignore[arg-type]
        assert bus.consumers == ()

    def test_a_sink_that_binds_to_its_consumer_can_report_dead_letters(self, bus: EventBus) -> None:
        """A sink's bind_consumer(ctx) gets its consumer's name and a dead-letter reporter."""

        class Bound(Recorder):
            ctx: Any = None

            def bind_consumer(self, ctx: Any) -> None:
                self.ctx = ctx

        sink = Bound()
        c = bus.subscribe(sink, name="remote")
        assert sink.ctx.consumer == "remote"
        sink.ctx.report_dead_letter(DeadLetter("evt", "remote", ValueError("refused by server")))
        assert errors(bus) == ["ValueError: refused by server"] and c.stats.dead_lettered == 1


class TestChainFailures:
    def test_an_operator_raising_instead_of_on_error_fails_the_event_only(
        self, bus: EventBus
    ) -> None:
        """An operator that raises from on_next: the event fails, the chain is rebuilt."""
        sink = Recorder()
        c = bus.subscribe(sink, raw_operator(on_next=lambda e: e.data["bad"] and fail("raw")(e)))
        bus.publish("a", {"bad": False})
        bad = bus.publish("a", {"bad": True})
        bus.publish("a", {"bad": False})
        assert [e.data["bad"] for e in sink.items] == [False, False]
        assert counts(c) == (3, 2, 1, 0, 0)
        [letter] = bus.recent_dead_letters()
        assert letter.event is bad and str(letter.error) == "raw"

    def test_a_chain_failing_from_its_timer_again_and_again_gives_up(self, bus: EventBus) -> None:
        """A chain whose timer fails it one second after every subscription, with no event in
        between: rebuilt twice, then, on the third failure in a row, the consumer finishes and
        the sink gets the error (building it again cannot help)."""
        ts = TestScheduler()
        sink = Recorder()

        c = bus.subscribe(sink, fails_after_a_second, scheduler=ts)
        ts.advance_to(2.0)
        assert not c.finished and sink.errors == []  # failed twice, rebuilt each time
        ts.advance_to(3.0)
        assert c.finished and [str(e) for e in sink.errors] == ["timer"]
        assert [str(d.error) for d in bus.recent_dead_letters()] == ["timer"] * 3
        assert c not in bus.consumers

    def test_a_chain_whose_disposal_raises_is_still_rebuilt(self, bus: EventBus) -> None:
        """A failed chain whose disposal raises is replaced anyway; later events are delivered."""
        sink = Recorder()

        def mapper(e: Event) -> Event:
            if e.data["n"] == 1:
                raise ValueError("n=1")
            return e

        c = bus.subscribe(sink, raw_operator(on_dispose=fail("dispose")), ops.map(mapper))
        for n in range(3):
            bus.publish("a", {"n": n})
        assert [e.data["n"] for e in sink.items] == [0, 2]
        assert counts(c) == (3, 2, 1, 0, 0) and errors(bus) == ["ValueError: n=1"]

    def test_a_chain_failing_at_its_first_subscription_is_built_again(self, bus: EventBus) -> None:
        """A chain that errors while first subscribed is dead-lettered and built again."""
        calls = [0]

        def fail_first(source: Observable[Any]) -> Observable[Any]:
            def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
                calls[0] += 1
                if calls[0] == 1:
                    observer.on_error(ValueError("first subscription"))
                    return Disposable()
                return source.subscribe(observer, scheduler=scheduler)

            return Observable(subscribe)

        sink = Recorder()
        c = bus.subscribe(sink, fail_first)
        e = bus.publish("a")
        assert sink.items == [e] and calls[0] == 2
        assert counts(c) == (1, 1, 0, 0, 0) and errors(bus) == ["ValueError: first subscription"]

    def test_a_chain_failing_while_it_completes_is_not_rebuilt(self) -> None:
        """An operator erroring at completion (close) is dead-lettered; no new chain is built."""
        bus = EventBus()
        sink = Recorder()
        c = bus.subscribe(sink, ops.concat(rx.throw(ValueError("at the end"))))
        bus.publish("a")
        assert bus.close() == []
        assert errors(bus) == ["ValueError: at the end"]
        assert counts(c) == (1, 1, 0, 0, 0) and c.finished and c.done
        assert sink.completed == 0 and sink.errors == []

    def test_an_operator_raising_at_completion_is_dead_lettered(self) -> None:
        """An operator whose on_completed raises at close gives a dead letter; close succeeds."""
        bus = EventBus()
        c = bus.subscribe(Recorder(), raw_operator(on_completed=fail("completion")))
        assert bus.close() == [] and errors(bus) == ["RuntimeError: completion"] and c.done

    def test_a_non_compliant_chain_completing_twice_completes_the_sink_once(self) -> None:
        """A hand-made operator calling on_completed twice: the sink is completed once."""

        class TwiceCompleting:
            def __init__(self, source: Observable[Any]) -> None:
                self.source = source

            def subscribe(self, observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
                def completed() -> None:
                    observer.on_completed()
                    observer.on_completed()

                return self.source.subscribe(
                    observer.on_next, observer.on_error, completed, scheduler=scheduler
                )

        bus = EventBus()
        sink = Recorder()
        c = bus.subscribe(sink, TwiceCompleting)
        bus.publish("a")
        assert bus.close() == []
        assert sink.completed == 1 and len(sink.items) == 1 and counts(c) == (1, 1, 0, 0, 0)

    def test_a_timer_action_that_raises_is_dead_lettered(self, bus: EventBus) -> None:
        """A timer action posted to the consumer that raises gives a dead letter with no event."""
        ts = TestScheduler()

        def timer_that_raises(source: Observable[Any]) -> Observable[Any]:
            def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
                scheduler.schedule_relative(1.0, fail("timer action"))
                return source.subscribe(observer, scheduler=scheduler)

            return Observable(subscribe)

        sink = Recorder()
        c = bus.subscribe(sink, timer_that_raises, scheduler=ts)
        ts.advance_by(1.0)
        e = bus.publish("a")
        [letter] = bus.recent_dead_letters()
        assert letter.event is None and str(letter.error) == "timer action"
        assert sink.items == [e] and counts(c) == (1, 1, 0, 0, 0)


class TestSinkCompletion:
    def test_a_sink_on_completed_that_raises_is_dead_lettered(self) -> None:
        """A sink's on_completed raising at close gives a dead letter; close still returns []."""
        bus = EventBus()

        class Sink(Recorder):
            def on_completed(self) -> None:
                raise RuntimeError("cannot flush")

        c = bus.subscribe(Sink())
        bus.publish("a")
        assert bus.close() == [] and errors(bus) == ["RuntimeError: cannot flush"]
        assert counts(c) == (1, 1, 0, 0, 0)


def overflowing_sink(bus: EventBus, sink_cls: type = Recorder, *operators: Any) -> Any:
    """A sync sink that, handling 'a.first', publishes two more events to itself: with
    queue_size=1 and Overflow.ERROR the second overflows the hand-over queue."""

    class Reentrant(sink_cls):  # type: ignore[misc, valid-type]
        def on_next(self, e: Event) -> None:
            super().on_next(e)
            if e.topic == "a.first":
                bus.publish("a.queued")
                bus.publish("a.overflow")

    sink = Reentrant()
    c = bus.subscribe(sink, *operators, topic="a.*", queue_size=1, overflow=Overflow.ERROR)
    return sink, c


class TestSyncOverflow:
    def test_overflow_error_ends_the_consumer_after_what_was_handed_over(
        self, bus: EventBus
    ) -> None:
        """Sync overflow with ERROR: what was queued is delivered, then on_error, then nothing."""
        sink, c = overflowing_sink(bus)
        bus.publish("a.first")
        bus.publish("a.later")
        assert [e.topic for e in sink.items] == ["a.first", "a.queued"]
        assert [type(e) for e in sink.errors] == [BufferOverflowError] and sink.completed == 0
        assert "1 events waiting for a busy sync consumer" in str(sink.errors[0])
        assert counts(c) == (3, 2, 0, 1, 0) and c.finished and c.done
        [letter] = bus.recent_dead_letters()
        assert letter.event.topic == "a.overflow"
        assert bus.close() == []  # closing after the error ending changes nothing
        assert sink.completed == 0

    def test_a_plain_callable_sink_just_stops_on_overflow(self, bus: EventBus) -> None:
        """A callable sink (no on_error) overflowing with ERROR: a dead letter, the consumer ends."""
        got: list[str] = []

        def sink(e: Event) -> None:
            got.append(e.topic)
            if e.topic == "a.first":
                bus.publish("a.queued")
                bus.publish("a.overflow")

        c = bus.subscribe(sink, topic="a.*", queue_size=1, overflow="error", name="sink")
        bus.publish("a.first")
        assert got == ["a.first", "a.queued"] and c.done
        assert counts(c) == (3, 2, 0, 1, 0)
        assert errors(bus)[0].startswith("BufferOverflowError: consumer 'sink': 1 events")

    def test_an_async_on_error_runs_on_the_bus_loop(self, testbus: TestBus) -> None:
        """A sync consumer's async def on_error is awaited on the bus loop when it errors."""
        bus = testbus
        loops: list[asyncio.AbstractEventLoop] = []
        caught: list[Exception] = []

        class AsyncError(Recorder):
            async def on_error(self, error: Exception) -> None:  # type: ignore[override]
                caught.append(error)
                loops.append(asyncio.get_running_loop())

        _, c = overflowing_sink(bus, AsyncError)
        assert c.mode == "sync"
        bus.publish("a.first")
        bus.drain()
        assert loops == [bus.loop]
        assert [type(e) for e in caught] == [BufferOverflowError] and counts(c) == (3, 2, 0, 1, 0)

    def test_an_on_error_that_raises_is_dead_lettered(self, bus: EventBus) -> None:
        """A sink's on_error raising gives a second dead letter after the overflow's."""

        class BadError(Recorder):
            def on_error(self, error: Exception) -> None:
                raise RuntimeError("on_error broke")

        _, c = overflowing_sink(bus, BadError)
        bus.publish("a.first")
        assert [m.split(":")[0] for m in errors(bus)] == ["BufferOverflowError", "RuntimeError"]
        assert errors(bus)[1] == "RuntimeError: on_error broke" and counts(c) == (3, 2, 0, 1, 0)

    def test_an_error_after_the_chain_completed_is_not_sent_to_the_sink(
        self, bus: EventBus
    ) -> None:
        """take(1) completes the sink; an overflow in the same turn does not call on_error after."""
        sink, c = overflowing_sink(bus, Recorder, ops.take(1))
        bus.publish("a.first")
        assert [e.topic for e in sink.items] == ["a.first"]
        assert sink.completed == 1 and sink.errors == []
        assert counts(c) == (3, 1, 0, 2, 0) and c.done


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt without disturbing pytest."""


class TestSyncEmitter:
    def test_a_base_exception_in_a_sink_reaches_the_publisher_and_the_next_publish_works(
        self, bus: EventBus
    ) -> None:
        """A BaseException from a sink propagates out of publish; the consumer stays usable."""
        got: list[int] = []

        def sink(e: Event) -> None:
            if e.data["n"] == 1:
                raise _Interrupt
            got.append(e.data["n"])

        c = bus.subscribe(sink)
        with pytest.raises(_Interrupt):
            bus.publish("a", {"n": 1})
        bus.publish("a", {"n": 2})
        assert got == [2] and c.stats.delivered == 1 and c.stats.received == 2

    def test_an_event_interrupted_by_a_base_exception_is_still_counted(self, bus: EventBus) -> None:
        """The conservation law holds after a BaseException in a sink (the event counts failed)."""

        def sink(e: Event) -> None:
            if e.data["n"] == 1:
                raise _Interrupt

        c = bus.subscribe(sink)
        with pytest.raises(_Interrupt):
            bus.publish("a", {"n": 1})
        bus.publish("a", {"n": 2})
        assert counts(c) == (2, 1, 1, 0, 0)

    def test_a_base_exception_through_a_chain_leaves_the_consumer_usable(
        self, bus: EventBus
    ) -> None:
        """A BaseException from the sink of a consumer with operators propagates out of
        publish, and the consumer is not left busy: the next publish is delivered."""
        got: list[int] = []

        def sink(n: int) -> None:
            if n == 1:
                raise _Interrupt
            got.append(n)

        c = bus.subscribe(sink, ops.map(lambda e: e.data["n"]))
        with pytest.raises(_Interrupt):
            bus.publish("a", {"n": 1})
        bus.publish("a", {"n": 2})
        assert got == [2] and c.stats.received == 2

    def test_a_handed_over_event_that_fails_is_counted_and_dead_lettered(
        self, bus: EventBus
    ) -> None:
        """A sink publishing to itself hands the event over; when that one raises in the drain,
        it is counted as failed and dead-lettered, and the consumer goes on."""
        seen: list[int] = []

        def sink(e: Event) -> None:
            seen.append(e.data["n"])
            if e.data["n"] == 0:
                bus.publish("a", {"n": 1})  # handed over: this consumer is busy
                bus.publish("a", {"n": 2})
            elif e.data["n"] == 1:
                raise ValueError("one")

        c = bus.subscribe(sink)
        bus.publish("a", {"n": 0})
        assert seen == [0, 1, 2]
        assert counts(c) == (3, 2, 1, 0, 0)
        [letter] = bus.recent_dead_letters()
        assert letter.event.data == {"n": 1} and str(letter.error) == "one"

    def test_a_base_exception_in_the_drain_reaches_the_publisher_and_frees_the_consumer(
        self, bus: EventBus
    ) -> None:
        """A handed-over event whose sink raises a BaseException: it reaches the publisher that
        drains, is counted, and the consumer is not left busy."""
        seen: list[int] = []

        def sink(e: Event) -> None:
            seen.append(e.data["n"])
            if e.data["n"] == 0:
                bus.publish("a", {"n": 1})  # handed over, delivered after this returns
            elif e.data["n"] == 1:
                raise _Interrupt

        c = bus.subscribe(sink)
        with pytest.raises(_Interrupt):
            bus.publish("a", {"n": 0})
        bus.publish("a", {"n": 2})
        assert seen == [0, 1, 2]
        assert counts(c) == (3, 2, 1, 0, 0)

    def test_a_busy_sync_consumer_with_drop_newest_drops_what_does_not_fit(
        self, bus: EventBus
    ) -> None:
        """Events handed to a busy sync consumer past its queue_size are dropped and counted
        under Overflow.DROP_NEWEST; the one that fit is delivered after the sink returns."""
        seen: list[int] = []

        def sink(e: Event) -> None:
            seen.append(e.data["n"])
            if e.data["n"] == 0:
                bus.publish("a", {"n": 1})  # handed over: fits (queue_size=1)
                bus.publish("a", {"n": 2})  # does not fit: dropped

        c = bus.subscribe(sink, queue_size=1, overflow=Overflow.DROP_NEWEST)
        bus.publish("a", {"n": 0})
        assert seen == [0, 1]
        assert counts(c) == (3, 2, 0, 1, 0)

    def test_a_timer_due_while_the_sink_runs_is_run_after_it(self, bus: EventBus) -> None:
        """A timer action falling due inside the sink is queued and run once the sink returns."""
        ts = TestScheduler()
        got: list[str] = []

        def sink(item: str) -> None:
            got.append(item)
            if item == "a":
                ts.advance_by(1.0)  # the timer fires now, while this consumer is busy
                got.append("sink returns")

        def tick_after(seconds: float) -> Any:
            def operator(source: Observable[Any]) -> Observable[Any]:
                def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
                    scheduler.schedule_relative(seconds, lambda *_: observer.on_next("tick"))
                    return source.subscribe(observer, scheduler=scheduler)

                return Observable(subscribe)

            return operator

        c = bus.subscribe(sink, ops.map(lambda e: e.topic), tick_after(1.0), scheduler=ts)
        bus.publish("a")
        assert got == ["a", "sink returns", "tick"]
        assert counts(c) == (1, 1, 0, 0, 0)

    def test_its_attributes_outside_the_slots_stay_few_enough_to_be_kept_inline(
        self, bus: EventBus
    ) -> None:
        """CPython 3.11 keeps at most 29 instance attributes inline; past that the instance dict
        is a plain one, on which no ``self.x`` or ``self.method()`` of the delivery path
        specialises (measured: ~940 instructions more a delivery through one operator). The
        counts and what a delivery reads are slots (``Consumer.__slots__``); the rest must stay
        under the limit."""
        for c in (bus.subscribe(print), bus.subscribe(print, ops.map(lambda e: e))):
            assert len(vars(c)) <= 29, sorted(vars(c))


class TestRefusal:
    def test_a_thread_consumer_disposed_during_a_publish_refuses_its_event(
        self, bus: EventBus
    ) -> None:
        """A thread consumer disposed earlier in the same publish drops and dead-letters it."""
        later: list[Consumer] = []
        bus.subscribe(lambda e: later[0].dispose(), topic="r", name="disposer")
        later.append(bus.subscribe(lambda e: None, topic="r", name="late", mode="thread"))
        e = bus.publish("r")
        assert counts(later[0]) == (1, 0, 0, 1, 0) and later[0].is_disposed
        [letter] = bus.recent_dead_letters()
        assert letter.event is e and letter.attempts == 0
        assert str(letter.error) == "consumer 'late' stopped accepting events"

    def test_a_consumer_whose_chain_completed_refuses_silently(self, bus: EventBus) -> None:
        """After take(1) completed it, a disposed consumer drops a late event without a letter."""
        late: list[Consumer] = []

        def disposer(e: Event) -> None:
            bus.publish("r.done")  # completes the late consumer's take(1)
            late[0].dispose()

        bus.subscribe(disposer, topic="r.go", name="disposer")
        late.append(bus.subscribe(lambda e: None, ops.take(1), topic="r.*", name="late"))
        bus.publish("r.go")
        assert counts(late[0]) == (2, 1, 0, 1, 0)
        assert bus.recent_dead_letters() == []


class TestLifecycleAttributes:
    def test_queued_processed_is_disposed_and_repr_describe_a_busy_thread_consumer(
        self, bus: EventBus
    ) -> None:
        """A blocked thread consumer shows its queue; disposal drops it and disposes its chain."""
        gate, inside = threading.Event(), threading.Event()
        chain_disposed: list[bool] = []

        def sink(e: Event) -> None:
            inside.set()
            gate.wait(10)

        c = bus.subscribe(
            sink,
            raw_operator(on_dispose=lambda: chain_disposed.append(True)),
            topic="q",
            mode="thread",
            name="busy",
        )
        for _ in range(3):
            bus.publish("q")
        assert inside.wait(10)
        assert (c.queued, c.processed, c.is_disposed) == (2, 0, False)
        assert repr(c) == (
            "<Consumer 'busy' topic='q' mode=thread received=3 delivered=0 failed=0 "
            "dropped=0 queued=2>"
        )
        c.dispose()
        gate.set()
        wait_until(lambda: c.done, what="the worker to stop")
        assert c.is_disposed and chain_disposed == [True] and c.queued == 0
        assert counts(c) == (3, 1, 0, 2, 0) and c.processed == 3

    def test_disposing_an_idle_pooled_thread_consumer_schedules_its_stop(
        self, bus: EventBus
    ) -> None:
        """Disposing a pooled thread consumer with nothing queued schedules it once, to stop."""
        c = bus.subscribe(lambda e: None, mode="thread")
        bus.publish("a")
        wait_until(lambda: not c._scheduled and c.stats.delivered == 1, what="it to be idle")  # type: ignore[attr-defined]
        c.dispose()
        wait_until(lambda: c.done, what="it to stop")
        assert counts(c) == (1, 1, 0, 0, 0) and c.is_disposed

    def test_disposing_an_idle_thread_consumer_wakes_its_worker(self, bus: EventBus) -> None:
        """Disposing a dedicated thread consumer whose worker sleeps stops the worker at once."""
        c = bus.subscribe(lambda e: None, mode="thread", dedicated=True)
        bus.publish("a")
        # the worker's sleeping flag is the only sign that it waits for work
        wait_until(lambda: c._waiting and c.stats.delivered == 1, what="the worker to sleep")  # type: ignore[attr-defined]
        c.dispose()
        wait_until(lambda: c.done, what="the worker to stop")
        assert counts(c) == (1, 1, 0, 0, 0) and c.is_disposed


class _AsyncSink:
    """An ``async def`` observer that sets ``done`` when it completes."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done

    async def on_next(self, e: Event) -> None:
        pass

    async def on_completed(self) -> None:
        self.done.set()


class TestAsyncConsumers:
    def test_a_posted_timer_feeds_an_async_sink(self, testbus: TestBus) -> None:
        """With a scheduler, an async consumer's timer actions are posted to its task, in turn."""
        bus = testbus
        ts = TestScheduler()
        got: list[str] = []

        async def sink(topic: str) -> None:
            got.append(topic)

        c = bus.subscribe(sink, ops.map(lambda e: e.topic), ops.delay(1.0), scheduler=ts)
        assert c.mode == "async"
        bus.publish("a")
        bus.drain()
        assert c.stats.received == 1 and c.stats.queued == 0 and got == []
        ts.advance_by(1.0)
        bus.drain()
        assert got == ["a"]
        assert counts(c) == (1, 1, 0, 0, 0)

    def test_an_item_a_loop_timer_emits_is_awaited_by_the_drain_task(self, bus: EventBus) -> None:
        """Without a scheduler, a delay emits on the loop; the async sink awaits it in turn."""
        got: list[str] = []

        async def sink(topic: str) -> None:
            got.append(topic)

        c = bus.subscribe(sink, ops.map(lambda e: e.topic), ops.delay(0.01))
        bus.publish("a")
        bus.publish("b")
        wait_until(lambda: got == ["a", "b"], what="the delayed events")
        assert counts(c) == (2, 2, 0, 0, 0)

    def test_an_async_on_completed_of_a_chain_done_at_subscribe_runs_on_the_loop(
        self, testbus: TestBus
    ) -> None:
        """A chain completing while subscribed (off the loop): the async on_completed still runs."""
        bus = testbus
        done = threading.Event()

        def completes_at_once(source: Observable[Any]) -> Observable[Any]:
            def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
                observer.on_completed()
                return Disposable()

            return Observable(subscribe)

        c = bus.subscribe(_AsyncSink(done), completes_at_once)
        assert c.mode == "async" and c.finished and c not in bus.consumers
        bus.drain()
        assert done.is_set()

    def test_take_zero_on_an_async_sink_subscribes_at_once(self, testbus: TestBus) -> None:
        """subscribe(async_sink, take(0)) returns a finished consumer and completes the sink."""
        bus = testbus
        done = threading.Event()

        c = bus.subscribe(_AsyncSink(done), ops.take(0))
        assert c.finished
        bus.drain()
        assert done.is_set()

    def test_an_async_on_completed_that_raises_is_dead_lettered(self) -> None:
        """An async on_completed raising at close gives a dead letter; close returns []."""
        bus = EventBus()

        class Sink:
            async def on_next(self, e: Event) -> None:
                pass

            async def on_completed(self) -> None:
                raise RuntimeError("async flush failed")

        c = bus.subscribe(Sink())
        bus.publish("a")
        assert bus.close() == [] and errors(bus) == ["RuntimeError: async flush failed"]
        assert counts(c) == (1, 1, 0, 0, 0)

    def test_an_event_queued_behind_a_completed_chain_is_dropped(self) -> None:
        """take(1) on an async sink: an event already queued behind the first is dropped."""

        async def main() -> tuple[list[str], Any]:
            bus = EventBus()
            got: list[str] = []

            async def sink(e: Event) -> None:
                got.append(e.topic)

            c = bus.subscribe(sink, ops.take(1))
            bus.publish("a")  # both queued before the drain task runs: no await in between
            bus.publish("b")
            await wait_until_async(lambda: c.processed == 2)
            await bus.aclose()
            return got, c

        got, c = asyncio.run(main())
        assert got == ["a"] and counts(c) == (2, 1, 0, 1, 0)

    def test_an_async_consumer_disposed_by_its_own_chain_is_retired(self) -> None:
        """A chain disposing its async consumer mid-event: the consumer is then retired."""
        bus = TestBus(record=False)  # the bus totals must hold this consumer's counts alone
        me: list[Consumer] = []

        async def sink(e: Event) -> None:
            pass

        me.append(bus.subscribe(sink, ops.do_action(lambda e: me[0].dispose()), name="once"))
        bus.publish("a")
        bus.drain()
        assert me[0].done
        counts(me[0])
        assert "once" not in bus.metrics()["consumers"]
        m = bus.metrics()
        assert m["delivered"] + m["dropped"] == 1
        assert bus.close() == []


def _interrupted_at_one(got: list[int]) -> Any:
    def sink(e: Event) -> None:
        if e.data["n"] == 1:
            raise _Interrupt
        got.append(e.data["n"])

    return sink


def _async_interrupted_at_one(got: list[int]) -> Any:
    async def sink(e: Event) -> None:
        if e.data["n"] == 1:
            raise _Interrupt
        got.append(e.data["n"])

    return sink


class TestInterruptedDelivery:
    """A sink raising a BaseException that is not an Exception (KeyboardInterrupt): the event
    counts as failed and is dead-lettered, and the consumer goes on with the next events.
    Regression: thread, dedicated and chained sync consumers counted it nowhere (received 3,
    delivered 2, failed 0), and an async consumer's drain task died, leaving the events queued
    behind it undelivered while close() reported nothing."""

    @pytest.mark.parametrize(
        ("mode", "make_sink", "extra"),
        [
            ("sync", _interrupted_at_one, {}),
            ("thread", _interrupted_at_one, {}),
            ("thread", _interrupted_at_one, {"dedicated": True}),
            ("async", _interrupted_at_one, {}),
            ("async", _async_interrupted_at_one, {}),
        ],
        ids=["sync", "pool", "dedicated", "async-plain-sink", "async-def-sink"],
    )
    @pytest.mark.parametrize("chained", [False, True], ids=["sink", "chain"])
    def test_the_event_is_counted_failed_and_later_events_are_delivered(
        self, bus: EventBus, mode: str, make_sink: Any, extra: dict[str, Any], chained: bool
    ) -> None:
        """Three events, the second interrupted: (3, 2, 1, 0, 0) and one dead letter naming it;
        a sync publisher gets the BaseException, the other modes' publishers do not."""
        got: list[int] = []
        chain = (ops.map(lambda e: e),) if chained else ()
        c = bus.subscribe(make_sink(got), *chain, mode=mode, **extra)
        for n in range(3):
            if mode == "sync" and n == 1:
                with pytest.raises(_Interrupt):
                    bus.publish("a", {"n": n})
            else:
                bus.publish("a", {"n": n})
        wait_until(lambda: c.processed == 3, what="three events processed")
        assert got == [0, 2] and counts(c) == (3, 2, 1, 0, 0)
        [letter] = bus.recent_dead_letters()
        assert letter.event.data == {"n": 1} and isinstance(letter.error, _Interrupt)
        assert bus.close() == []

    def test_an_event_given_up_by_aclose_then_interrupted_is_counted_once(self) -> None:
        """aclose() gives up on the event an async sink awaits (dropped, dead-lettered); when
        the sink then raises a BaseException for it, it is not counted a second time."""

        async def main() -> tuple[list[DeadLetter], Consumer, EventBus]:
            bus = EventBus(name="given-up")
            resume: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            started = asyncio.Event()

            async def sink(e: Event) -> None:
                started.set()
                await resume

            c = bus.subscribe(sink, name="stuck")
            bus.publish("a")
            await started.wait()
            letters = await bus.aclose(timeout=0.05)
            resume.set_exception(_Interrupt())
            await wait_until_async(lambda: c.done)
            return letters, c, bus

        letters, c, bus = asyncio.run(main())
        assert [type(d.error) for d in letters] == [TimeoutError]
        assert counts(c) == (1, 0, 0, 1, 0)
        assert [type(d.error) for d in bus.recent_dead_letters()] == [TimeoutError]


class TestCancelledDrainTask:
    """An async consumer whose drain task is cancelled from outside can never deliver again:
    what it holds is dropped and dead-lettered, never left queued for ever. Regression: an
    event queued when the asyncio.run that made the bus ended stayed ``queued`` for good, and
    close() returned [] (nothing reported)."""

    def test_events_held_when_asyncio_run_ends_are_dropped_and_reported(self) -> None:
        """asyncio.run ends while an async sink awaits one event and another is queued: its
        cancellation of the drain task drops both, each with a dead letter saying why."""

        async def main() -> tuple[EventBus, Consumer, list[Event]]:
            bus = EventBus(name="run-ended")
            started = asyncio.Event()

            async def sink(e: Event) -> None:
                started.set()
                await asyncio.Event().wait()  # never set: still awaiting when the run ends

            c = bus.subscribe(sink)
            published = [bus.publish("a"), bus.publish("b")]
            await started.wait()
            return bus, c, published

        bus, c, published = asyncio.run(main())
        assert counts(c) == (2, 0, 0, 2, 0) and c.done
        letters = bus.recent_dead_letters()
        assert [d.event for d in letters] == published
        assert all(isinstance(d.error, BusClosedError) for d in letters)
        assert "drain task was cancelled" in str(letters[0].error)
        assert bus.close(timeout=1) == [] and counts(c) == (2, 0, 0, 2, 0)

    def test_a_publish_racing_the_cancellation_does_not_raise(self) -> None:
        """A publish on the loop between the cancellation of the drain task (which cancels the
        future it waits on) and the task seeing it returns normally; its event is dropped and
        dead-lettered, and later publishes no longer reach the consumer."""

        async def main() -> tuple[EventBus, Consumer, Event]:
            bus = EventBus(name="cancelled")

            async def sink(e: Event) -> None:
                pass

            c = bus.subscribe(sink)
            await asyncio.sleep(0)  # one turn of the loop: the drain task waits for work
            assert c.task is not None
            c.task.cancel()
            e = bus.publish("a")
            await wait_until_async(lambda: c.done)
            bus.publish("b")
            await bus.aclose()
            return bus, c, e

        bus, c, e = asyncio.run(main())
        assert counts(c) == (1, 0, 0, 1, 0)
        assert [d.event for d in bus.recent_dead_letters()] == [e]


class TestDedicatedThread:
    def test_an_async_def_sink_is_refused_naming_it(self, bus: EventBus) -> None:
        """dedicated=True with an async def sink raises ValueError naming the sink and the
        mode to use; no consumer is left behind and the name is free again."""

        async def handler(e: Event) -> None:
            pass

        with pytest.raises(ValueError, match=r"sink 'handler' is an async def .* mode='async'"):
            bus.subscribe(handler, mode="thread", dedicated=True, name="handler")
        assert bus.consumers == ()
        assert bus.subscribe(lambda e: None, name="handler").name == "handler"

    def test_a_timer_action_runs_on_the_consumers_own_thread(self, bus: EventBus) -> None:
        """A time-based operator's timer is posted to the dedicated thread and run there, in
        turn with the events: the window closes there and the sink gets the events of it."""
        ts = TestScheduler()
        got: list[tuple[list[str], str]] = []

        def sink(window: list[Event]) -> None:
            got.append(([e.topic for e in window], threading.current_thread().name))

        c = bus.subscribe(
            sink,
            ops.buffer_with_time(1.0),
            mode="thread",
            dedicated=True,
            name="windows",
            scheduler=ts,
        )
        bus.publish("a")
        bus.publish("b")
        wait_until(lambda: c.stats.delivered == 2, what="both events in the window")
        assert got == []
        ts.advance_to(1.0)
        wait_until(lambda: got, what="the window to close on the consumer's thread")
        assert got == [(["a", "b"], "rxbus-windows")]
        assert counts(c) == (2, 2, 0, 0, 0)


class TestChainDisposedByItself:
    def test_an_operator_that_disposes_its_consumer_then_raises_is_not_rebuilt(
        self, testbus: TestBus
    ) -> None:
        """An operator disposing its own consumer, then raising: the event fails and is
        dead-lettered, and no new chain is built for a consumer that is gone."""
        bus = testbus
        me: list[Consumer] = []
        subscriptions = [0]
        sink = Recorder()

        def counting(source: Observable[Any]) -> Observable[Any]:
            def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
                subscriptions[0] += 1
                return source.subscribe(observer, scheduler=scheduler)

            return Observable(subscribe)

        def leave_then_raise(_: Event) -> None:
            me[0].dispose()
            raise RuntimeError("left")

        me.append(
            bus.subscribe(sink, counting, raw_operator(on_next=leave_then_raise), mode="thread")
        )
        bus.publish("a")
        bus.drain()
        assert sink.items == [] and subscriptions == [1]
        assert counts(me[0]) == (1, 0, 1, 0, 0) and me[0].done and me[0] not in bus.consumers
        assert errors(bus) == ["RuntimeError: left"]
        assert bus.metrics()["failed"] == 1  # retired: folded into the bus totals


def test_an_event_still_being_handed_out_when_close_runs_is_refused_and_counted() -> None:
    """close() called from the sink of the first consumer a publish reaches: the consumers
    after it in the same publish have stopped accepting (and are not retired); they drop the
    event, count it, and dead-letter it."""
    bus = EventBus(name="closing")
    results: list[list[DeadLetter]] = []
    bus.subscribe(lambda e: results.append(bus.close(timeout=5)), name="closer")
    later = bus.subscribe(lambda e: None, mode="thread", name="later")
    e = bus.publish("a")
    assert results == [[]] and bus.closed
    assert counts(later) == (1, 0, 0, 1, 0) and not later.retired
    [letter] = bus.recent_dead_letters()
    assert letter.event is e and letter.consumer == "later"
    assert str(letter.error) == "consumer 'later' stopped accepting events"
