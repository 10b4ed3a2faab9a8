"""EventBus edges: argument checks, naming, metrics of odd sinks, the loop, close/aclose,
interpreter exit, replay seams, the route cache and guarded streams."""

from __future__ import annotations

import asyncio
import enum
import functools
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from reactivex import Observable, Observer, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.testing import TestScheduler

from rxbus import BusClosedError, DeadLetter, Event, EventBus, InvalidTopicError, PayloadError
from rxbus.bus._lifecycle import ExitGuard
from rxbus.bus._stream import _Guard
from tests.conftest import wait_until, wait_until_async
from tests.core.chains import fails_after_a_second

# a lambda at module level: its __qualname__ is plain '<lambda>'
_MODULE_LAMBDA = [lambda self, e: None][0]
_MODULE_SINK = [lambda e: None][0]


def conserved(bus: EventBus) -> None:
    for name, c in bus.metrics()["consumers"].items():
        assert c["received"] == c["delivered"] + c["failed"] + c["dropped"] + c["queued"], name


class TestConstruction:
    @pytest.mark.parametrize(
        ("kwargs", "needle"),
        [
            ({"history": -1}, "history must be an int >= 0, got -1"),
            ({"history": 1.5}, "history must be an int >= 0, got 1.5"),
            ({"max_event_bytes": 0}, "max_event_bytes must be an int >= 1, got 0"),
            ({"exit_timeout": -1}, "exit_timeout must be a number >= 0, got -1"),
            ({"exit_timeout": "3"}, "exit_timeout must be a number >= 0, got '3'"),
        ],
    )
    def test_bad_settings_raise_naming_the_value(self, kwargs: dict[str, Any], needle: str) -> None:
        """Each out-of-range constructor argument raises ValueError naming it and the rule."""
        with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
            EventBus(**kwargs)


class TestPublishArguments:
    def test_a_dict_subclass_payload_is_refused_and_nothing_is_published(
        self, bus: EventBus
    ) -> None:
        """data that is a dict subclass (it would not round-trip) raises PayloadError; no event."""
        got: list[Event] = []
        bus.subscribe(got.append)
        with pytest.raises(PayloadError, match="data is not JSON-serialisable"):
            bus.publish("a", OrderedDict(k=1))
        assert got == [] and bus.metrics()["published"] == 0

    def test_an_empty_dict_subclass_and_empty_metadata_cost_no_bytes(self) -> None:
        """An empty dict subclass and metadata={} are accepted and count 0 bytes of payload."""
        with EventBus(max_event_bytes=1) as bus:
            e = bus.publish("a", OrderedDict(), metadata={})
            assert (e.data, e.metadata, e.payload_size) == ({}, {}, 0)

    @pytest.mark.parametrize("topic", [123, None, b"a.b"])
    def test_a_topic_that_is_neither_str_nor_event_raises_invalid_topic(
        self, bus: EventBus, topic: Any
    ) -> None:
        """publish(non-str, non-Event) raises InvalidTopicError naming the type."""
        with pytest.raises(
            InvalidTopicError, match=f"topic must be a str, got {type(topic).__name__}"
        ):
            bus.publish(topic)
        assert bus.metrics()["published"] == 0

    def test_a_str_enum_topic_publishes_like_its_value(self, bus: EventBus) -> None:
        """A StrEnum member is a str: publish(Topic.X) publishes to its value."""

        class Topic(enum.StrEnum):
            BUILD_ERROR = "build.error"

        got: list[Event] = []
        bus.subscribe(got.append, topic="build.*")
        e = bus.publish(Topic.BUILD_ERROR)
        assert e.topic == "build.error" and e.type == "error" and got == [e]


class TestSubscribe:
    def test_a_chain_that_completes_at_subscribe_is_never_routed(self, bus: EventBus) -> None:
        """take(0) completes the chain at once: the sink is completed and never receives events."""
        got: list[Event] = []
        completed: list[bool] = []

        class Sink:
            def on_next(self, e: Event) -> None:
                got.append(e)

            def on_completed(self) -> None:
                completed.append(True)

        c = bus.subscribe(Sink(), ops.take(0), topic="a")
        bus.publish("a")
        assert c.finished and c not in bus.consumers
        assert completed == [True] and got == [] and c.stats.received == 0

    def test_retiring_a_consumer_twice_folds_its_counts_once(self, bus: EventBus) -> None:
        """A consumer handed back twice (two threads disposing it at once) is counted once."""
        c = bus.subscribe(lambda e: None, topic="a", name="once")
        bus.publish("a")
        c.dispose()
        # ConsumerHost.retire is the narrowest way to replay the second of two racing disposals
        c.host.retire(c)
        m = bus.metrics()
        assert m["delivered"] == 1 and "once" not in m["consumers"]


class TestNaming:
    def test_a_sink_with_a_name_attribute_gives_its_name(self, bus: EventBus) -> None:
        """A sink's own non-empty ``name`` attribute names its consumer."""

        class Named:
            name = "archive"

            def on_next(self, e: Event) -> None:
                pass

        assert bus.subscribe(Named()).name == "archive"

    def test_a_lambda_bound_as_a_method_is_named_after_its_object(self, bus: EventBus) -> None:
        """A lambda bound to an object is named '<Class>.<lambda>'."""

        class Holder:
            pass

        method = types.MethodType(_MODULE_LAMBDA, Holder())
        assert bus.subscribe(method).name == "Holder.<lambda>"

    def test_anonymous_callables_and_observers_get_generic_names(self, bus: EventBus) -> None:
        """A lambda or partial is 'consumer' (numbered when repeated); an observer its class."""

        class Watcher:
            def on_next(self, e: Event) -> None:
                pass

        names = [
            bus.subscribe(_MODULE_SINK).name,
            bus.subscribe(functools.partial(print, end="")).name,
            bus.subscribe(Watcher()).name,
        ]
        assert names == ["consumer", "consumer#2", "Watcher"]


class TestMetrics:
    def test_a_sink_stats_that_is_not_a_mapping_is_left_out(self, bus: EventBus) -> None:
        """A sink's non-callable ``stats`` shows under 'sink' only when it converts to a dict."""

        def sink_with(stats: Any) -> Any:
            class Sink:
                def __call__(self, e: Event) -> None:
                    pass

            s = Sink()
            s.stats = stats  # type: ignore[attr-defined]
            return s

        bus.subscribe(sink_with(5), name="number")
        bus.subscribe(sink_with("ab"), name="text")
        bus.subscribe(sink_with({"written": 3}), name="mapping")
        consumers = bus.metrics()["consumers"]
        assert "sink" not in consumers["number"] and "sink" not in consumers["text"]
        assert consumers["mapping"]["sink"] == {"written": 3}


class _RaceFirst:
    """Wraps a lock: the first time it is taken, ``before`` runs first (another thread wins)."""

    def __init__(self, inner: Any, before: Any) -> None:
        self._inner = inner
        self._before = before

    def __enter__(self) -> Any:
        before, self._before = self._before, None
        if before is not None:
            before()
        return self._inner.__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self._inner.__exit__(*exc)


class TestLoop:
    def test_two_threads_asking_for_the_loop_start_only_one(self) -> None:
        """When another thread starts the bus loop while this one waits, both get that loop."""
        bus = EventBus(name="race")
        seen: list[asyncio.AbstractEventLoop] = []

        def other_thread_first() -> None:
            t = threading.Thread(target=lambda: seen.append(bus.loop))
            t.start()
            t.join(10)

        # the bus lock is the narrowest place to order the two threads deterministically
        bus._lock = _RaceFirst(bus._lock, other_thread_first)  # type: ignore[assignment]
        try:
            mine = bus.loop
            assert seen == [mine]
            loops = [t for t in threading.enumerate() if t.name == "rxbus-loop-race"]
            assert len(loops) == 1
        finally:
            bus.close()
        wait_until(lambda: mine.is_closed(), what="the owned loop to close")

    def test_async_subscribe_on_a_loop_that_is_not_running_raises_naming_the_bus(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An async consumer needs the bus's loop running; otherwise subscribe raises once
        ``AsyncConsumer.loop_start_timeout`` (10 s for users, shortened here) has passed."""
        from rxbus.consumer._async import AsyncConsumer

        assert AsyncConsumer.loop_start_timeout == 10.0  # what users get
        monkeypatch.setattr(AsyncConsumer, "loop_start_timeout", 0.2)
        loop = asyncio.new_event_loop()

        async def make() -> EventBus:
            return EventBus(name="idle")

        bus = loop.run_until_complete(make())

        async def sink(e: Event) -> None:
            pass

        try:
            with pytest.raises(RuntimeError, match="the asyncio loop of bus 'idle' is not running"):
                bus.subscribe(sink)
            assert bus.consumers == ()
        finally:
            assert bus.close() == []
            loop.close()


class TestClose:
    def test_close_from_an_async_sink_returns_and_the_owned_loop_stops_after_the_drain(
        self,
    ) -> None:
        """close() on the bus's own loop returns at once; the loop stops once its consumers end."""
        bus = EventBus(name="selfclose")
        returned: list[list[DeadLetter]] = []
        completed = threading.Event()

        class Sink:
            async def on_next(self, e: Event) -> None:
                returned.append(bus.close())
                # let the loop's stopper look while this consumer is still busy
                await asyncio.sleep(0)

            def on_completed(self) -> None:
                completed.set()

        c = bus.subscribe(Sink())
        loop = bus.loop
        bus.publish("a")
        wait_until(loop.is_closed, what="the owned loop to stop and close")
        assert returned == [[]] and completed.is_set() and c.done
        assert c.stats.as_dict() == {
            "received": 1,
            "delivered": 1,
            "failed": 0,
            "dropped": 0,
            "queued": 0,
            "dead_lettered": 0,
        }

    def test_a_bus_made_inside_asyncio_run_closes_after_the_run_ended(self) -> None:
        """close() outside the loop a bus was made in, after that loop closed, returns promptly."""
        got: list[str] = []

        async def main() -> tuple[EventBus, Any]:
            bus = EventBus(name="ran")

            async def sink(e: Event) -> None:
                got.append(e.topic)

            c = bus.subscribe(sink)
            bus.publish("a")
            await wait_until_async(lambda: c.stats.delivered == 1)
            return bus, c

        bus, c = asyncio.run(main())
        assert bus.close(timeout=1) == [] and bus.closed
        assert got == ["a"] and c.done
        assert c.stats.received == c.stats.delivered == 1

    def test_aclose_gives_up_on_a_stuck_async_sink_after_its_timeout(self) -> None:
        """aclose(timeout) dead-letters the event an async sink still awaits; counted once."""

        async def main() -> tuple[list[DeadLetter], Any, EventBus, Event]:
            bus = EventBus(name="slow")
            gate = asyncio.Event()
            started = asyncio.Event()

            async def sink(e: Event) -> None:
                started.set()
                await gate.wait()

            c = bus.subscribe(sink, name="stuck")
            e = bus.publish("a")
            await started.wait()
            letters = await bus.aclose(timeout=0.05)
            gate.set()  # the sink resumes after the bus gave up on its event
            await wait_until_async(lambda: c.done)
            return letters, c, bus, e

        letters, c, _, e = asyncio.run(main())
        assert [(d.event, d.consumer, str(d.error)) for d in letters] == [
            (e, "stuck", "not delivered within close timeout 0.05s")
        ]
        s = c.stats
        assert (s.received, s.delivered, s.failed, s.dropped, s.queued) == (1, 0, 0, 1, 0)

    def test_a_second_aclose_waits_for_the_first(self) -> None:
        """Two concurrent aclose() calls: the second returns [] once the first has drained."""

        async def main() -> tuple[list[DeadLetter], list[DeadLetter], Any]:
            bus = EventBus(name="twice")
            gate = asyncio.Event()

            async def sink(e: Event) -> None:
                await gate.wait()

            c = bus.subscribe(sink)
            bus.publish("a")
            first = asyncio.create_task(bus.aclose())
            second = asyncio.create_task(bus.aclose())
            await wait_until_async(lambda: bus.closed)
            assert not first.done() and not second.done()
            gate.set()
            return await first, await second, c

        first, second, c = asyncio.run(main())
        assert first == [] and second == []
        assert c.stats.delivered == 1 and c.done

    def test_exit_guard_reports_a_bus_it_cannot_close_and_goes_on(self) -> None:
        """At exit, a bus whose close() raises is reported on one line; the others still close."""
        # a private ExitGuard: the process-wide one runs at interpreter exit only
        guard = ExitGuard()
        lines: list[str] = []

        async def main() -> EventBus:
            stuck = EventBus(name="stuck")

            async def sink(e: Event) -> None:
                pass

            stuck.subscribe(sink)
            fine = EventBus(name="fine")
            guard.watch(stuck)
            guard.watch(fine)
            guard.run(write=lines.append)  # on the loop: stuck.close() refuses to block it
            assert fine.closed and not stuck.closed
            await stuck.aclose()
            return stuck

        stuck = asyncio.run(main())
        assert stuck.closed
        assert lines == [
            "rxbus: bus 'stuck' could not be closed at exit: RuntimeError(\"close() would block "
            "the loop its async consumers run on; use 'await bus.aclose()' inside the loop\")\n"
        ]


class _ListStore:
    """A ReplayStore without ``flush``: it answers queries from a list."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events

    def query(
        self, pattern: str = "**", since: Any = None, until: Any = None, limit: int | None = None
    ) -> list[Event]:
        return list(self.events)


class TestReplay:
    def test_a_store_without_flush_is_joined_with_the_ring_events_it_lacks(self) -> None:
        """replay(store) yields the store's events, then the ring's events the store has not got."""
        with EventBus() as bus:
            old = Event(topic="a", data={"n": 0}, timestamp=datetime.now(UTC) - timedelta(hours=2))
            e1 = bus.publish("a", {"n": 1})
            e2 = bus.publish("a", {"n": 2})
            store = _ListStore([old, e1])  # e2 has not reached the store yet
            past: list[Event] = []
            bus.replay(store=store).subscribe(past.append)
            assert past == [old, e1, e2]

            live: list[Event] = []
            bus.replay(store=store, live=True).subscribe(live.append)
            e3 = bus.publish("a", {"n": 3})
            assert live == [old, e1, e2, e3]

    def test_a_store_replay_waits_for_the_consumer_feeding_the_store(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no ring, replay(store) waits until the store's busy consumer has handled its events."""
        import rxbus.bus._bus as bus_module

        gate = threading.Event()
        inside = threading.Event()

        class Store(_ListStore):
            def on_next(self, e: Event) -> None:
                inside.set()
                gate.wait(10)
                self.events.append(e)

        class Clock:
            """The bus's clock; its first sleep (the replay waiting) lets the store go on."""

            def __getattr__(self, name: str) -> Any:
                return getattr(time, name)

            @staticmethod
            def sleep(seconds: float) -> None:
                gate.set()
                time.sleep(seconds)

        with EventBus(history=0) as bus:
            store = Store([])
            bus.subscribe(store, mode="thread")
            sent = [bus.publish("a", {"n": n}) for n in range(3)]
            assert inside.wait(10)
            # the module's clock is the one seam that shows the replay is waiting
            monkeypatch.setattr(bus_module, "time", Clock())
            got: list[Event] = []
            bus.replay(store=store).subscribe(got.append)
            assert gate.is_set() and got == sent

    def test_a_failing_replay_subscriber_is_dead_lettered_and_keeps_receiving(
        self, bus: EventBus
    ) -> None:
        """A live replay's subscriber raising on a past event yields a dead letter, not an error."""
        e1 = bus.publish("a", {"n": 1})
        got: list[Event] = []

        def observer(e: Event) -> None:
            if e is e1:
                raise ValueError("cannot take n=1")
            got.append(e)

        bus.replay("a", live=True).subscribe(observer)
        e2 = bus.publish("a", {"n": 2})
        assert got == [e2]
        [letter] = bus.recent_dead_letters()
        assert (letter.event, letter.consumer, str(letter.error)) == (
            e1,
            "replay:a",
            "cannot take n=1",
        )

    def test_an_event_in_flight_while_the_past_is_emitted_is_emitted_once(
        self, bus: EventBus
    ) -> None:
        """An event both in the ring snapshot and pushed late to the replay reaches it once."""
        blocker_in, blocker_go = threading.Event(), threading.Event()

        def blocker(e: Event) -> None:  # holds the publisher after its ring append
            if e.data["n"] == 1:
                blocker_in.set()
                blocker_go.wait(10)

        bus.subscribe(blocker, topic="a")
        publisher = threading.Thread(target=lambda: bus.publish("a", {"n": 1}))
        publisher.start()
        assert blocker_in.wait(10)
        got: list[Event] = []

        def observer(e: Event) -> None:
            got.append(e)
            if len(got) == 1:  # the past copy: now let the publisher push its live twin
                blocker_go.set()
                publisher.join(10)

        bus.replay("a", live=True).subscribe(observer)
        assert not publisher.is_alive()
        bus.publish("a", {"n": 2})
        assert [e.data["n"] for e in got] == [1, 2]
        conserved(bus)


class TestRouteCache:
    def test_routing_stays_right_past_the_route_cache_limit(self, bus: EventBus) -> None:
        """Publishing to more distinct topics than the route cache holds still reaches everyone."""
        # the limits are constants of the routing module; the test is sized from them
        from rxbus.bus._routing import OTHER_TOPICS, ROUTE_CACHE_LIMIT, TOPIC_METRICS_LIMIT

        count = [0]
        bus.subscribe(lambda e: count.__setitem__(0, count[0] + 1), topic="r.*")
        n = ROUTE_CACHE_LIMIT + 5
        for i in range(n):
            bus.publish(f"r.t{i}")
        bus.publish("r.t0")  # a topic whose cached route was forgotten
        assert count[0] == n + 1
        m = bus.metrics()
        assert m["published"] == n + 1 and len(m["topics"]) == TOPIC_METRICS_LIMIT + 1
        assert m["topics"][OTHER_TOPICS]["published"] == n - TOPIC_METRICS_LIMIT


def _fail_first_subscription(source: Observable[Any]) -> Observable[Any]:
    """An operator whose first subscription errors at once; later ones pass through."""
    calls = [0]

    def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> abc.DisposableBase:
        calls[0] += 1
        if calls[0] == 1:
            observer.on_error(ValueError("first subscription fails"))
            return Disposable()
        return source.subscribe(observer, scheduler=scheduler)

    return Observable(subscribe)


def _fail_on(n: int) -> Any:
    def mapper(e: Event) -> int:
        if e.data["n"] == n:
            raise ValueError(f"n={n} refused")
        return int(e.data["n"])

    return ops.map(mapper)


class TestGuardedStreams:
    def test_a_failing_subscriber_is_dead_lettered_and_keeps_receiving(self, bus: EventBus) -> None:
        """A piped stream's subscriber raising becomes a dead letter holding the value."""
        got: list[int] = []

        def on_next(n: int) -> None:
            if n == 1:
                raise ValueError("one is bad")
            got.append(n)

        bus.events.pipe(ops.map(lambda e: e.data["n"])).subscribe(on_next)
        bus.publish("a", {"n": 1})
        bus.publish("a", {"n": 2})
        assert got == [2]
        [letter] = bus.recent_dead_letters()
        assert letter.event == 1 and str(letter.error) == "one is bad"

    def test_a_chain_failing_at_subscribe_is_resubscribed(self, bus: EventBus) -> None:
        """A chain that errors during its first subscription is dead-lettered and started again."""
        got: list[Event] = []
        bus.events.pipe(_fail_first_subscription).subscribe(got.append)
        e = bus.publish("a")
        assert got == [e]
        [letter] = bus.recent_dead_letters()
        assert letter.event is None and str(letter.error) == "first subscription fails"

    def test_disposing_from_the_dead_letter_observer_stops_the_restart(self, bus: EventBus) -> None:
        """A subscription disposed while its chain's failure is reported is not started again."""
        got: list[int] = []
        sub = bus.events.pipe(_fail_on(1)).subscribe(got.append)
        bus.dead_letters.subscribe(lambda letter: sub.dispose())
        bus.publish("a", {"n": 1})
        bus.publish("a", {"n": 2})
        assert got == [] and bus.consumers == ()
        assert [str(d.error) for d in bus.recent_dead_letters()] == ["n=1 refused"]

    def test_disposing_during_the_restart_leaves_no_consumer(self, bus: EventBus) -> None:
        """A subscription disposed while its chain is being subscribed again ends cleanly."""
        holder: dict[str, abc.DisposableBase] = {}
        calls = [0]

        def dispose_on_resubscribe(source: Observable[Any]) -> Observable[Any]:
            def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Any:
                calls[0] += 1
                if calls[0] == 2:
                    holder["sub"].dispose()
                return source.subscribe(observer, scheduler=scheduler)

            return Observable(subscribe)

        got: list[int] = []
        holder["sub"] = bus.events.pipe(dispose_on_resubscribe, _fail_on(1)).subscribe(got.append)
        bus.publish("a", {"n": 1})
        bus.publish("a", {"n": 2})
        assert calls[0] == 2 and got == [] and bus.consumers == ()
        assert bus.metrics()["dead_lettered"] == 1

    def test_a_subscriber_failing_at_completion_is_dead_lettered_at_close(self) -> None:
        """A piped stream's on_completed raising at close becomes a dead letter; close succeeds."""
        bus = EventBus()

        def on_completed() -> None:
            raise RuntimeError("cannot complete")

        bus.events.pipe(ops.map(lambda e: e.topic)).subscribe(
            lambda t: None, on_completed=on_completed
        )
        assert bus.close() == []
        [letter] = bus.recent_dead_letters()
        assert letter.event is None and str(letter.error) == "cannot complete"


_LOOPING_CHAIN = """
import threading, reactivex as rx
from reactivex import operators as ops
from rxbus import EventBus
bus = EventBus()
{subscribe}
bus.publish("a")
print("dead_lettered", bus.metrics()["dead_lettered"])
"""


@pytest.mark.parametrize(
    "subscribe",
    [
        'bus.subscribe(print, ops.merge(rx.throw(ValueError("always"))))',
        'bus.events.pipe(ops.merge(rx.throw(ValueError("always")))).subscribe(print)',
    ],
    ids=["consumer", "stream"],
)
def test_a_chain_that_always_fails_at_subscribe_does_not_hang(subscribe: str) -> None:
    """Subscribing a chain that errors on every subscription returns, with bounded dead letters."""
    code = textwrap.dedent(_LOOPING_CHAIN.format(subscribe=subscribe))
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        pytest.fail("subscribe did not return within 5 s")
    assert done.returncode == 0, done.stderr[-500:]
    dead = int(done.stdout.split()[-1])
    assert 1 <= dead < 100


def test_an_event_refused_after_disposal_is_counted_in_the_bus_totals(bus: EventBus) -> None:
    """A late event refused by a consumer disposed during the same publish is counted dropped."""
    late: list[Any] = []

    def disposer(e: Event) -> None:
        late[0].dispose()

    bus.subscribe(disposer, topic="r", name="disposer")
    late.append(bus.subscribe(lambda e: None, topic="r", name="late", mode="thread"))
    bus.publish("r")
    assert late[0].stats.dropped == 1 and bus.metrics()["dead_lettered"] == 1
    assert bus.metrics()["dropped"] == 1


def test_publishing_and_subscribing_after_close_are_refused(bus: EventBus) -> None:
    """After close, publish and subscribe raise BusClosedError naming the bus."""
    bus.close()
    with pytest.raises(BusClosedError, match="bus 'test' is closed; publish refused"):
        bus.publish("a")
    with pytest.raises(BusClosedError, match="bus 'test' is closed; subscribe refused"):
        bus.subscribe(print)


def test_a_stream_that_fails_at_every_subscribe_gives_its_error_to_the_subscriber(
    bus: EventBus,
) -> None:
    """A piped stream whose chain errors each time it is subscribed is tried START_ATTEMPTS
    times (a dead letter each), then its subscriber gets the error; a subscriber whose own
    on_error raises adds one dead letter, and nothing reaches the caller."""
    errors: list[Exception] = []

    def fail_at_subscribe(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: Any = None) -> Disposable:
            observer.on_error(ValueError("always"))  # while being subscribed, synchronously
            return Disposable()

        return Observable(subscribe)

    always = bus.events.pipe(fail_at_subscribe)
    always.subscribe(print, on_error=errors.append)
    assert [str(e) for e in errors] == ["always"]
    assert [str(d.error) for d in bus.recent_dead_letters()] == ["always"] * 3

    def raising(err: Exception) -> None:
        raise RuntimeError("observer")

    always.subscribe(print, on_error=raising)
    assert [str(d.error) for d in bus.recent_dead_letters()][3:] == ["always"] * 3 + ["observer"]


def test_a_stream_failed_by_its_timer_again_and_again_gives_up_and_disposes_harmlessly(
    bus: EventBus,
) -> None:
    """A piped stream whose timer fails it one second after each subscription, with no event
    between: resubscribed twice, then the subscriber gets the error and its consumer is gone;
    disposing the subscription afterwards does nothing more."""
    ts = TestScheduler()
    errors: list[Exception] = []

    sub = bus.events.pipe(fails_after_a_second).subscribe(
        print, on_error=errors.append, scheduler=ts
    )
    ts.advance_to(2.0)
    assert errors == [] and len(bus.consumers) == 1  # failed twice, resubscribed each time
    ts.advance_to(3.0)
    assert [str(e) for e in errors] == ["timer"] and bus.consumers == ()
    sub.dispose()
    assert bus.consumers == () and [str(e) for e in errors] == ["timer"]
    assert [str(d.error) for d in bus.recent_dead_letters()] == ["timer"] * 3


def test_a_dead_letter_observer_failing_at_close_does_not_stop_the_others() -> None:
    """close() completes every dead-letter observer even when one raises from on_completed."""
    bus = EventBus()
    completed: list[str] = []

    def fail() -> None:
        completed.append("first")
        raise RuntimeError("cannot complete")

    bus.dead_letters.subscribe(on_completed=fail)
    bus.dead_letters.subscribe(on_completed=lambda: completed.append("second"))
    assert bus.close() == []
    assert completed == ["first", "second"] and bus.closed


class _LockWithRace:
    """A lock whose first acquisition first runs ``race`` on another thread, to completion:
    what another thread did just before this one took the lock, made deterministic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.race: Any = None

    def __enter__(self) -> None:
        race, self.race = self.race, None
        if race is not None:
            other = threading.Thread(target=race)
            other.start()
            other.join(10)
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_piped_chain_failing_on_another_thread_while_it_starts_is_not_kept_twice(
    bus: EventBus,
) -> None:
    """The chain fails on another thread between its subscription and the moment the guard
    keeps it: the other thread starts a fresh chain, and the failed one is disposed, not kept
    beside it. Regression: both stayed subscribed, each event reached the subscriber twice,
    and dispose() left one consumer on the bus for ever."""
    got: list[str] = []
    lock = _LockWithRace()
    chain = ops.map(lambda e: e.topic)(bus.events)
    guard = _Guard(chain, Observer(got.append), bus, bus._dead_letter, None)
    guard._lock = lock  # type: ignore[assignment]
    lock.race = lambda: guard.on_error(ValueError("failed meanwhile"))
    guard.start()
    assert len(bus.consumers) == 1
    bus.publish("a")
    assert got == ["a"]
    assert [str(d.error) for d in bus.recent_dead_letters()] == ["failed meanwhile"]
    guard.dispose()
    assert bus.consumers == ()
